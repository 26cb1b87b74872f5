"""Runs the agents' records through the handler, partition by partition, and commits each partition's
transaction: the live state written to the changelog together with the retry copies and dead letters
its records caused.

- A partition is taken over (`on_assigned`, before Faust's table recovery
  reads the changelog) by starting its transactional producer, which fences
  any earlier owner, and reading its last committed state.
- Records are applied under the partition's lock; the retry agent waits for
  a copy's not-before time before it takes the lock, so it never holds up
  `orders`.
- A partition's transaction commits once it has been open for
  COMMIT_INTERVAL_SECONDS (after a batch, or from the commit timer when no
  more records come). A commit the broker refuses for the moment is tried
  again with backoff; one that cannot commit is aborted, the committed state
  is put back and the records since are read again and applied again; a
  producer fenced by another worker loses the partition, and the worker asks
  for a rebalance so the group settles who owns it.
- On revocation and at shutdown, open transactions are committed within a
  bound, then the producers are closed.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from avro_codec.backoff import Backoff

from ..domain.partition_state import PartitionState
from ..ops.activity_log import ActivityLog
from ..ops.metrics import OrderMetrics
from .handler import OrderHandler
from .partition import DEAD_LETTERED, PROCESSED, RETRIED, Outcome, Partition
from .transactions import Failure, TransactionError

log = logging.getLogger("orders")

#: How long revocation or shutdown waits for a partition's last commit before leaving it to the next owner.
FINAL_COMMIT_TIMEOUT_S = 10.0


def group_by_partition(messages: Iterable[Any]) -> dict[int, list[Any]]:
    """Messages per partition, each list in delivery order."""
    groups: dict[int, list[Any]] = {}
    for msg in messages:
        groups.setdefault(msg.partition, []).append(msg)
    return groups


class Processor:
    def __init__(self, *, handler: OrderHandler, new_output: Callable[[int], Any],
                 load_states: Callable[[list[int]], Awaitable[Mapping[int, PartitionState]]],
                 write_store: Callable[[int, dict, int | None], None], changelog_topic: str,
                 orders_topic: str, retry_topic: str, metrics: OrderMetrics, activity: ActivityLog,
                 summary: Callable[[], dict], request_rebalance: Callable[[], Awaitable[None]],
                 commit_interval_s: float, max_retries: int, retry_delay_s: float,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.handler = handler
        self.new_output = new_output
        self.load_states = load_states
        self.write_store = write_store
        self.changelog_topic = changelog_topic
        self.orders_topic = orders_topic
        self.retry_topic = retry_topic
        self.metrics = metrics
        self.activity = activity
        self.summary = summary
        self.request_rebalance = request_rebalance
        self.commit_interval_s = commit_interval_s
        self.max_retries = max_retries
        self.retry_delay_s = retry_delay_s
        self.monotonic = monotonic
        self.sleep = sleep
        self.partitions: dict[int, Partition] = {}
        #: assigned partitions whose producer or state could not be set up yet (retried before their records)
        self._unready: set[int] = set()

    # -- ownership --------------------------------------------------------------

    async def on_assigned(self, numbers: Iterable[int]) -> None:
        """Take over partitions: fence earlier owners, then read the committed states.

        Never raises: a partition that cannot be set up now (the broker is
        unreachable) is set up again, with backoff, before its first record.
        """
        new = sorted(set(numbers) - set(self.partitions))
        if new:
            try:
                await self._take_over(new)
            except Exception as exc:  # retried by _ready before the partitions' records are applied
                log.warning("partitions %s: cannot take them over yet (%s); trying again before their records",
                            new, exc)
                self._unready.update(new)

    async def _take_over(self, numbers: list[int]) -> None:
        started = self.monotonic()
        outputs = {number: self.new_output(number) for number in numbers}
        try:
            await asyncio.gather(*(output.start() for output in outputs.values()))
            fenced = self.monotonic()
            states = await self.load_states(numbers)
        except BaseException:
            for output in outputs.values():
                output.close()
            raise
        for number in numbers:
            self.partitions[number] = Partition(number, states.get(number) or PartitionState(), outputs[number])
            self._unready.discard(number)
        log.info("took over partitions %s in %.2f s: their producers fenced any earlier owner (%.2f s), then "
                 "their committed states were read", numbers, self.monotonic() - started, fenced - started)

    async def _ready(self, number: int) -> Partition | None:
        """The partition, set up if it was not; None when this worker does not own it (or lost it)."""
        if number in self._unready:
            backoff = Backoff(0.5, 10.0)
            while number in self._unready:
                try:
                    await self._take_over([number])
                except Exception as exc:
                    delay = backoff.next_delay()
                    log.warning("partition %d: cannot take it over (%s); retrying in %.1fs", number, exc, delay)
                    await self.sleep(delay)
        part = self.partitions.get(number)
        return None if part is None or part.lost else part

    async def on_revoked(self, numbers: Iterable[int]) -> None:
        """Commit what the partitions applied (within a bound, all at once) and let them go."""
        self._unready.difference_update(numbers)
        parts = [part for part in (self.partitions.pop(number, None) for number in set(numbers)) if part]
        await asyncio.gather(*(self._let_go(part) for part in parts))

    async def stop(self) -> None:
        """At shutdown: the same as losing every partition in a rebalance."""
        await self.on_revoked(list(self.partitions))

    async def _let_go(self, part: Partition) -> None:
        try:
            await asyncio.wait_for(self.commit(part), FINAL_COMMIT_TIMEOUT_S)
        except TimeoutError:
            log.warning("partition %d: last commit took over %.0fs; leaving it to the next owner (its open "
                        "transaction is aborted and its records applied again)", part.number,
                        FINAL_COMMIT_TIMEOUT_S)
        finally:
            part.lost = True  # a record still on its way to this object must not be applied
            part.output.close()

    def resume_offsets(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> the next offset after the committed state, for every owned source partition
        that has one: where the consumer resumes after a rebalance, and the group's offset."""
        offsets = {}
        for number, part in self.partitions.items():
            for topic in (self.orders_topic, self.retry_topic):
                expected = part.committed.next_offset(topic)
                if expected is not None:
                    offsets[(topic, number)] = expected
        return offsets

    def live_states(self) -> dict[int, tuple[PartitionState, int]]:
        """Partition -> (its live state, the records applied since its last commit), for every partition this
        worker owns and has set up."""
        return {number: (part.state, part.uncommitted) for number, part in self.partitions.items()
                if not part.lost}

    # -- records ----------------------------------------------------------------

    async def process(self, messages: Sequence[Any], *, is_retry: bool) -> None:
        """Apply the records of one batch, in order per partition; then commit the partitions whose
        transaction has been open long enough."""
        touched = []
        for number, group in group_by_partition(messages).items():
            part = await self._ready(number)
            if part is None:
                log.debug("skip %d record(s) of partition %d: not owned here (any more)", len(group), number)
                continue
            if is_retry:
                for msg in group:
                    if not self.handler.is_replay(part, msg):
                        wait_s = self.handler.due_in_s(msg)
                        if wait_s > 0:
                            await self.sleep(wait_s)
                    async with part.lock:
                        await self._apply(part, msg, is_retry=True)
            else:
                async with part.lock:
                    apply_next = self.handler.apply_next
                    for msg in group:
                        if part.lost:
                            break
                        if apply_next(part, msg):
                            part.changed(self.monotonic())
                        else:
                            await self._apply(part, msg, is_retry=False)
            touched.append(part)
        await asyncio.gather(*(self.commit(part) for part in touched if self._commit_due(part)))

    async def _apply(self, part: Partition, msg: Any, *, is_retry: bool) -> None:
        if not part.lost and await self.handler.apply(part, msg, is_retry=is_retry):
            part.changed(self.monotonic())

    def _commit_due(self, part: Partition) -> bool:
        return part.changed_at is not None and self.monotonic() - part.changed_at >= self.commit_interval_s

    async def commit_due(self) -> None:
        """Commit every partition whose transaction has been open long enough (the commit task), all at once:
        each partition has a producer of its own."""
        due = [part for part in self.partitions.values() if self._commit_due(part) and not part.lock.locked()]
        await asyncio.gather(*(self.commit(part) for part in due))

    # -- committing -------------------------------------------------------------

    async def commit(self, part: Partition) -> None:
        async with part.lock:
            await self._commit_locked(part)

    async def _commit_locked(self, part: Partition) -> None:
        backoff = Backoff(0.2, 5.0)
        while part.changed_at is not None and not part.lost:
            value = part.state.to_value()
            written: dict[str, int] = {}

            def on_delivery(err: Any, msg: Any, written: dict[str, int] = written) -> None:
                if err is None:
                    written["offset"] = msg.offset()

            try:
                part.output.produce(self.changelog_topic, key=json.dumps(part.number).encode(),
                                    value=json.dumps(value).encode(), partition=part.number, on_delivery=on_delivery)
                await self._persist(part.output.commit, backoff, part, "commit")
            except TransactionError as exc:
                if exc.failure is Failure.FATAL:
                    await self._lose(part, exc)
                    return
                await self._abort_and_redo(part, exc, backoff)
                continue
            self.write_store(part.number, value, written.get("offset"))
            self._report(part.mark_committed())

    async def _persist(self, call: Callable[[], Awaitable[None]], backoff: Backoff, part: Partition,
                       what: str) -> None:
        """Run `call` until it succeeds; a refusal for the moment (RETRY) is tried again with backoff."""
        while True:
            try:
                await call()
                return
            except TransactionError as exc:
                if exc.failure is not Failure.RETRY:
                    raise
                delay = backoff.next_delay()
                log.warning("partition %d: %s not done yet (%s); retrying in %.1fs", part.number, what, exc, delay)
                await self.sleep(delay)

    async def _abort_and_redo(self, part: Partition, exc: TransactionError, backoff: Backoff) -> None:
        """Abort the open transaction, go back to the committed state and apply its records again."""
        log.warning("partition %d: transaction failed (%s); aborting it and applying its records again",
                    part.number, exc)
        try:
            await self._persist(part.output.abort, backoff, part, "abort")
        except TransactionError as fatal:
            await self._lose(part, fatal)
            return
        live = dict(part.state.applied)
        part.restore()
        await self.sleep(backoff.next_delay())
        for topic in (self.orders_topic, self.retry_topic):
            if topic not in live:
                continue
            start = part.state.next_offset(topic)
            if start is None:
                start = await self.handler.earliest_offset(topic, part.number)
            for record in await self.handler.read_missed(topic, part.number, start, live[topic] + 1):
                await self._apply(part, record, is_retry=topic == self.retry_topic)

    async def _lose(self, part: Partition, exc: Exception) -> None:
        """Our producer is fenced (another worker took the partition) or broken: drop the uncommitted work and
        ask the group to settle who owns the partition; its owner applies the records again."""
        log.error("partition %d: %s; dropping %d uncommitted outcome(s) and asking the group to rebalance",
                  part.number, exc, len(part.outcomes))
        part.restore()
        part.lost = True
        await self.request_rebalance()

    # -- reporting --------------------------------------------------------------

    def _report(self, outcomes: list[Outcome]) -> None:
        """Metrics and console lines for a committed transaction."""
        summary = None
        processed = resolved_copies = 0
        for outcome in outcomes:
            if outcome.msg.topic == self.retry_topic:
                resolved_copies += 1
            if outcome.kind == PROCESSED:
                processed += 1
                self.metrics.observe_latency(outcome.latency_s)
                if self.activity.record(PROCESSED):
                    summary = summary or self.summary()
                    order = outcome.order or {}
                    log.info("processed %s %s %.2f %s x%s (attempt %d) | orders=%d average=%.2f",
                             order.get("orderId"), order.get("product"), order.get("price", 0.0),
                             order.get("currency", "?"), order.get("quantity", "?"), outcome.attempt,
                             summary["orders"], summary["average"])
            elif outcome.kind == RETRIED:
                self.metrics.retried()
                if self.activity.record(RETRIED):
                    log.warning("retry %s: attempt %d of %d failed (%s); next in %.1fs", outcome.label,
                                outcome.attempt, self.max_retries + 1, outcome.detail, self.retry_delay_s)
            else:
                self.metrics.dead_lettered(outcome.reason)
                if self.activity.record(DEAD_LETTERED):
                    log.error("dead-letter %s after %d attempt(s): %s (%s)", outcome.label, outcome.attempt,
                              outcome.reason, outcome.detail)
        self.metrics.processed(processed)
        self.metrics.retry_copies_resolved(resolved_copies)
