"""One owned source partition at work: its records applied in order, its retry copies held until due, its
work committed, and an error boundary around all of it. One asyncio task per partition (Kafka
Streams' `StreamTask`), so nothing one partition waits for holds up another.

- **Inboxes.** The agents put the partition's records of `orders` and of
  `orders-retry` into its two inboxes and go on; the task applies them.
- **Retry copies wait only for themselves.** The copy at the head of the
  retry inbox is applied when due (`OrderHandler.due_in_ms`: its not-before,
  bounded by the retry policy; a copy judged at once never waits); until
  then the retry partition is paused in the consumer and the task sleeps.
  `orders` keeps flowing.
- **Commits.** The partition commits once its first uncommitted record is
  COMMIT_INTERVAL_SECONDS old (or when it holds as many records as it may
  after an error, below), in the worker's next transaction, together with
  the other partitions that commit then (processing/commit.py). It seals
  its work for that transaction and goes on applying records while the
  transaction is on its way (one at a time); the next step takes its
  outcome.
- **The error boundary.** Any exception while applying or committing drops
  the partition's uncommitted work (its outbox; a transaction it was in is
  aborted), puts the committed state back and returns the records applied
  since to the front of the inboxes, to be applied again after a backoff.
  The records before the failing one then commit on their own first, so a
  fault that recurs cannot hold the others back, and the partition's
  commits grow again after each one. An error no rule classifies
  that strikes the same record RECORD_STRIKES times in a row dead-letters it
  (`processing-error`); an outside cause (registry, broker) is retried as
  long as it lasts. After ATTEMPTS_BEFORE_BLOCKED failures in a row the
  partition is *blocked*: one ERROR line names the record, the topic and the
  reason, `orders_partition_blocked` says so, its partitions stay paused,
  and it keeps trying every few seconds until it gets through.
- **Lost.** A commit the group coordinator refuses because the group moved
  on (this worker's membership is stale), or through a producer that was
  fenced, loses the partition: the uncommitted work is dropped and the group
  asked to rebalance; the owner applies the records again.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaException

from avro_codec.errors import RegistryUnavailable

from ..backoff import Backoff
from ..domain.headers import describe
from ..domain.partition_state import PartitionState
from ..kafka.records import SourceRecord, coordinates
from ..kafka.transactions import Failure, TransactionError
from .commit import Committer, KeepTrying, LastCommits
from .flow import Flow
from .handler import OrderHandler
from .partition import Partition
from .reporting import Reporter

log = logging.getLogger("orders")

#: Times this close count as equal (float sums of a clock's readings are not exact).
CLOCK_SLACK_S = 1e-6
#: Errors whose cause lies outside the record (a service that does not answer): retried as long as they last.
OUTSIDE_CAUSES: tuple[type[BaseException], ...] = (RegistryUnavailable, TransactionError, KafkaException, OSError)


@dataclass(frozen=True)
class TaskLimits:
    #: most records applied in one go before the task lets the others run
    chunk: int = 1000
    #: longest a transaction stays open while records come
    commit_interval_s: float = 0.25
    #: failures in a row after which the partition reports itself blocked
    attempts_before_blocked: int = 5
    #: times in a row an unclassified error may strike the same record before it is dead-lettered
    record_strikes: int = 3
    #: the backoff between attempts after a failure: first delay and cap (with jitter)
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    #: how long taking the partition over waits for an earlier owner's open transaction before that counts as a
    #: failure (the broker aborts one a dead worker left after the transaction timeout, within its next check)
    settle_patience_s: float = 30.0


@dataclass(frozen=True)
class Blocked:
    """Why a partition cannot make progress: what failed, on which record, since when (epoch seconds)."""

    reason: str
    record: str | None
    since: float
    attempts: int

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "record": self.record, "since": round(self.since, 3),
                "attempts": self.attempts}


class StillSettling(RuntimeError):
    """An earlier owner's transaction is still open on the partition's changelog: its committed state is not
    known yet."""


class PartitionOwner(Protocol):
    """What a partition task asks of the worker that owns it (`PartitionTasks`)."""

    async def take_over(self, number: int) -> Partition:
        """Read the committed state once no earlier owner's transaction is open on it: StillSettling after a short
        wait while one is; other errors when the broker does not answer."""

    async def request_rebalance(self) -> None:
        """Ask the group to settle who owns what (after a commit found the group moved on)."""

    def blocked_changed(self, number: int, blocked: Blocked | None) -> None:
        """The partition became blocked (or unblocked: None)."""


class StateStore(Protocol):
    """Where a partition's state is published for its readers (the `order-stats` table)."""

    def publish(self, partition: int, state: PartitionState, uncommitted: int,
                changelog_offset: int | None = None) -> None: ...


class PartitionTask:
    def __init__(self, number: int, *, orders_topic: str, retry_topic: str, handler: OrderHandler,
                 committer: Committer, reporter: Reporter, flow: Flow, owner: PartitionOwner, store: StateStore,
                 limits: TaskLimits, part: Partition | None = None,
                 monotonic: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 fault: Callable[[str], None] | None = None) -> None:
        self.number = number
        self.orders_tp = (orders_topic, number)
        self.retry_tp = (retry_topic, number)
        self.retry_topic = retry_topic
        self.handler = handler
        self.committer = committer
        self.reporter = reporter
        self.flow = flow
        self.owner = owner
        self.store = store
        self.limits = limits
        self.part = part
        self.monotonic = monotonic
        self.wall = wall
        self.fault = fault
        self.orders: deque[SourceRecord] = deque()
        self.retries: deque[SourceRecord] = deque()
        #: offset of a record on the retry inbox -> epoch ms it first arrived here (bounds its wait)
        self._first_seen: dict[int, int] = {}
        #: highest offset delivered per topic (the watchdog's measure of delivery)
        self.received: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None
        # -- the error boundary's state
        self._current: SourceRecord | None = None
        self._backoff = self._new_backoff()
        self._retry_at = 0.0  # monotonic time before which the task only waits (after a failure)
        #: monotonic time taking over first found an earlier owner's transaction open (None: it has not)
        self._settling_since: float | None = None
        self._failures = 0
        self._last_error: str = ""
        self._last_record: str | None = None
        #: most records the next transaction may hold (None: no limit); set after a failure
        self._cap: int | None = None
        #: (topic, offset) -> unclassified errors in a row on that record
        self._strikes: dict[tuple[str, int], int] = {}
        #: (topic, offset) -> the error to dead-letter it with, once it struck RECORD_STRIKES times
        self._give_up: dict[tuple[str, int], Exception] = {}
        self.blocked: Blocked | None = None
        #: monotonic time the head of the retry inbox is due (inf: no head waiting)
        self._head_due = math.inf
        #: the live state changed since it was last published
        self._changed = part is not None
        #: the commit on its way (Committer.submit): the task applies the next records meanwhile
        self._committing: asyncio.Future | None = None
        #: while stopping: the partitions let go with this one, whose last commits go in one transaction with its
        self._last_commits: LastCommits | None = None

    def _new_backoff(self) -> Backoff:
        return Backoff(self.limits.backoff_initial_s, self.limits.backoff_max_s)

    # -- what the owner and the agents call ----------------------------------------

    def start(self) -> None:
        """Publish the committed state the partition was taken over with, then run the task."""
        if self.part is not None:
            self._publish_taken_over()
        self._spawn()

    def _publish_taken_over(self) -> None:
        """Readers see the committed state as soon as the partition is set up, whether records come or not."""
        self.store.publish(self.number, self.part.state, 0)
        self._changed = False

    def _spawn(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name=f"partition-{self.number}")

    @property
    def lost(self) -> bool:
        return self.part is not None and self.part.lost

    def receive(self, topic: str, records: list[SourceRecord]) -> None:
        """Records of this partition of one topic, in offset order."""
        if self.lost or self._stopping or not records:
            return
        if topic == self.retry_topic:
            now_ms = int(self.wall() * 1000)
            for msg in records:
                self._first_seen.setdefault(msg.offset, now_ms)
            self.retries.extend(records)
        else:
            self.orders.extend(records)
        last = records[-1].offset
        if last > self.received.get(topic, -1):
            self.received[topic] = last
        self._update_flow()
        self._wake.set()

    def backlog(self) -> int:
        """Records of this partition that count against the flow's budget: those waiting in its inboxes (none
        while the partition is held: not set up, recovering, blocked; none of a retry inbox whose head waits
        for its time), and those it applied while its commit is on its way, which are kept (to be applied
        again if that commit fails) as they would have waited in the inbox had the commit held the partition."""
        part = self.part
        if part is None or self._retry_at > 0 or self.lost:
            return 0
        waiting = len(self.orders)
        if self._head_due == math.inf:
            waiting += len(self.retries)
        if part.sealed is not None:
            waiting += part.uncommitted - part.sealed.records
        return waiting

    def holding(self) -> dict[tuple[str, int], str]:
        """Source partitions this task keeps paused on purpose, and why (the watchdog leaves them alone)."""
        held = {}
        for tp in (self.orders_tp, self.retry_tp):
            if self.flow.is_paused(tp):
                held[tp] = self._hold_reason(tp)
        return held

    async def stop(self, timeout_s: float, last_commits: LastCommits | None = None) -> None:
        """Finish the record at hand, commit what was applied (within `timeout_s`) and end; past the bound
        the task is cancelled and its uncommitted records left to the next owner (applied again there).
        `last_commits`: the partitions let go at the same time, whose last commits go together."""
        self._last_commits = last_commits
        self._stopping = True
        self._wake.set()
        task = self._task
        try:
            if task is not None and not task.done():
                try:
                    await asyncio.wait_for(asyncio.shield(task), timeout_s)
                except TimeoutError:
                    log.warning("partition %d: did not finish within %.0fs; leaving its uncommitted records to the "
                                "next owner (applied again there)", self.number, timeout_s)
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    if self._committing is not None:
                        self._committing.cancel()  # left out of the next transaction, if it has not begun
        finally:
            self._count_in_without_last_commit()  # a no-op once it has sent its last commit
        self._release()

    def _release(self) -> None:
        if self.part is not None and not self.part.lost:
            self.part.lost = True  # a record still on its way to this object must not be applied
        self.orders.clear()
        self.retries.clear()
        self._first_seen.clear()
        self.flow.forget((self.orders_tp, self.retry_tp))
        self.flow.progressed()
        if self.blocked is not None:
            self.blocked = None
            self.owner.blocked_changed(self.number, None)

    # -- the loop -------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping and not self.lost:
            # Cleared before the step, not after: a stop or a record that comes while the step waits (for a
            # commit, say) must wake the wait below, not be forgotten by it.
            self._wake.clear()
            await self.step()
            if self._stopping or self.lost:
                break
            delay = self.next_wake_s()
            if delay <= 0:
                await asyncio.sleep(0)  # between chunks: let the agents and the other partitions run
                continue
            timer = None if delay == math.inf else loop.call_later(delay, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                if timer is not None:
                    timer.cancel()
        await self._final_commit()

    def next_wake_s(self) -> float:
        """Seconds until the task has something to do (0: now; inf: only when records come)."""
        now = self.monotonic()
        if self._retry_at - now > CLOCK_SLACK_S:
            return self._retry_at - now
        if self.part is None:
            return 0.0
        part = self.part
        committing = self._committing
        if committing is not None and committing.done():
            return 0.0
        if self._cap is not None and part.uncommitted >= self._cap:
            return 0.0 if committing is None else math.inf  # the commit's end wakes the task
        if self.orders:
            return 0.0
        if self.retries and self._head_due == math.inf:
            return 0.0  # copies not looked at yet (the last step ran out of room): they may be due
        wake = self._head_due - now if self.retries else math.inf
        if part.changed_at is not None and committing is None:
            wake = min(wake, part.changed_at + self.limits.commit_interval_s - now)
        return 0.0 if wake <= CLOCK_SLACK_S else wake

    async def step(self) -> None:
        """Do what can be done now: set the partition up, apply records, apply due copies, commit when due.
        Never raises: a failure is handled by the error boundary (`_recover`)."""
        if self.monotonic() < self._retry_at - CLOCK_SLACK_S:
            return
        self._retry_at = 0.0
        if self.part is None:
            await self._take_over()
            return
        part = self.part
        try:
            if self._committing is not None and self._committing.done():
                self._take_commit(part)
            if self.orders:
                await self._apply_orders(part)
            if self.retries:
                await self._apply_due_copies(part)
            if self._commit_due(part):
                self._commit(part)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._recover(part, await self._after_commit_on_its_way(part, exc))
        if not self.lost:
            self._update_flow()
            if self._changed:
                self._changed = False
                self.store.publish(self.number, part.state, part.uncommitted)
        self.flow.progressed()

    # -- applying -------------------------------------------------------------------

    def _room(self, part: Partition) -> int:
        room = self.limits.chunk
        if self._cap is not None:
            room = min(room, self._cap - part.uncommitted)
        return room

    async def _apply_orders(self, part: Partition) -> None:
        """Up to a chunk of `orders` records. Most take the hot path (`apply_next`: the next offset, a cached
        schema) without awaiting; the rest (a gap before them, a schema to fetch, a replay) await `apply`."""
        inbox, applied = self.orders, part.applied
        apply_next, apply = self.handler.apply_next, self.handler.apply
        before = len(applied)
        for _ in range(min(self._room(part), len(inbox))):
            msg = inbox.popleft()
            self._current = msg
            if self._give_up and self._gives_up(part, msg):
                pass
            elif not apply_next(part, msg) and not await apply(part, msg, is_retry=False):
                continue  # a replay: nothing changed
            applied.append(msg)
        self._current = None
        if len(applied) > before:
            part.changed(self.monotonic())
            self._changed = True

    async def _apply_due_copies(self, part: Partition) -> None:
        inbox, applied = self.retries, part.applied
        room = self._room(part)
        before = len(applied)
        self._head_due = math.inf
        while inbox and room > 0:
            msg = inbox[0]
            now_ms = int(self.wall() * 1000)
            wait_ms = self.handler.due_in_ms(part, msg, self._first_seen.get(msg.offset, now_ms))
            if wait_ms > 0:
                self._head_due = self.monotonic() + wait_ms / 1000
                break
            inbox.popleft()
            self._current = msg
            if self._give_up and self._gives_up(part, msg):
                pass
            elif not await self.handler.apply(part, msg, is_retry=True):
                self._first_seen.pop(msg.offset, None)
                continue
            applied.append(msg)
            room -= 1
        self._current = None
        if len(applied) > before:
            part.changed(self.monotonic())
            self._changed = True

    def _gives_up(self, part: Partition, msg: SourceRecord) -> bool:
        """Dead-letter `msg` as `processing-error` if it struck too often; False when it did not."""
        error = self._give_up.pop((msg.topic, msg.offset), None)
        if error is None:
            return False
        expected = part.state.next_offset(msg.topic)
        if expected is not None and msg.offset < expected:
            return False
        log.error("%s: %s struck %d times in a row while it was applied; dead-lettering it as processing-error",
                  coordinates(msg), describe(error), self.limits.record_strikes)
        self.handler.give_up(part, msg, error)
        return True

    # -- committing -------------------------------------------------------------------

    def _commit_due(self, part: Partition) -> bool:
        if part.changed_at is None or self._committing is not None:
            return False
        if self._cap is not None and part.uncommitted >= self._cap:
            return True
        return self.monotonic() - part.changed_at >= self.limits.commit_interval_s - CLOCK_SLACK_S

    def _commit(self, part: Partition) -> None:
        if self.fault:
            self.fault("commit")
        self._send_commit(part, self._keep_trying)

    def _send_commit(self, part: Partition, keep_trying: KeepTrying) -> None:
        """Seal the work applied so far and send it on its way; the next step takes the outcome."""
        self._committing = self.committer.submit(part, keep_trying)
        self._committing.add_done_callback(lambda _done: self._wake.set())

    def _take_commit(self, part: Partition) -> None:
        """The commit on its way has ended: report it, or raise its error (for the error boundary)."""
        done, self._committing = self._committing, None
        committed = done.result()
        self.store.publish(self.number, part.state, part.uncommitted, committed.changelog_offset)
        self._changed = False
        for msg in committed.records:
            if msg.topic == self.retry_topic:
                self._first_seen.pop(msg.offset, None)
        self.reporter.report(committed.outcomes)
        self._succeeded(part)

    async def _finish_commit(self, part: Partition) -> None:
        """Wait for the commit on its way and take its outcome (its error is raised)."""
        await asyncio.wait([self._committing])
        self._take_commit(part)

    async def _after_commit_on_its_way(self, part: Partition, exc: Exception) -> Exception:
        """Before the error boundary puts the committed state back: wait for a commit on its way and take its
        outcome. The error to recover from: `exc`, or the commit's when it lost the partition."""
        if self._committing is None:
            return exc
        try:
            await self._finish_commit(part)
        except Exception as commit_error:
            if isinstance(commit_error, TransactionError) and commit_error.failure in (Failure.LOST, Failure.FATAL):
                return commit_error
            log.warning("partition %d: its commit on its way failed too (%s); putting the committed state back "
                        "covers its records", self.number, describe(commit_error))
        return exc

    def _keep_trying(self, error: TransactionError) -> bool:
        """A commit refused for the moment: count the attempt (a partition can be blocked by it too)."""
        self._note_failure(error, None)
        return not self._stopping

    def _succeeded(self, part: Partition) -> None:
        self._failures = 0
        self._backoff = self._new_backoff()
        if self._cap is not None:
            self._cap = None if self._cap * 2 >= self.limits.chunk * 8 else self._cap * 2
        if self._strikes:
            self._strikes = {key: n for key, n in self._strikes.items()
                             if key[1] >= (part.committed.next_offset(key[0]) or 0)}
        if self.blocked is not None:
            log.warning("partition %d: resumed; it was blocked for %.0f s and its records flow again", self.number,
                        self.wall() - self.blocked.since)
            self.blocked = None
            self.owner.blocked_changed(self.number, None)

    async def _final_commit(self) -> None:
        part = self.part
        if part is None or part.lost:
            return
        try:
            if self._committing is not None:
                if self.committer.withdraw(self._committing):  # not begun: folded into the last commit
                    self._committing = None
                    part.unseal(self.monotonic())
                else:
                    await self._finish_commit(part)
            if part.changed_at is None:
                return
            # asked again while the broker refuses, up to stop's bound
            await self._send_last_commit(lambda: self._send_commit(part, lambda _error: True))
            await self._finish_commit(part)
        except Exception as exc:
            log.warning("partition %d: last commit failed (%s); the next owner applies its %d record(s) again",
                        self.number, exc, part.uncommitted)

    def _count_in_without_last_commit(self) -> None:
        """Let the partitions let go with this one go on without it (it has no last commit to send)."""
        last_commits, self._last_commits = self._last_commits, None
        if last_commits is not None:
            last_commits.arrive()

    async def _send_last_commit(self, send: Callable[[], None]) -> None:
        """Send the last commit with those of the partitions let go with this one (one transaction)."""
        last_commits, self._last_commits = self._last_commits, None
        if last_commits is None:
            send()
        else:
            await last_commits.send(send)

    # -- the error boundary -----------------------------------------------------------

    async def _recover(self, part: Partition, exc: Exception) -> None:
        """Put the committed state back (dropping the outbox), return the records applied since to the
        inboxes, and try again after a backoff; a commit that found the group moved on, or the producer
        fenced, loses the partition."""
        failing, self._current = self._current, None
        if isinstance(exc, TransactionError) and exc.failure in (Failure.LOST, Failure.FATAL):
            if failing is not None:
                self._put_back([failing])
            await self._lose(part, exc)
            return
        redo = part.restore()
        self._changed = True
        before_failing = len(redo)
        refusal = getattr(exc, "refusal", None)
        if failing is not None:
            redo.append(failing)
        elif refusal is not None and refusal.source is not None:
            source = refusal.source
            failing = source
            before_failing = next((i for i, msg in enumerate(redo)
                                   if msg.topic == source.topic and msg.offset == source.offset), before_failing)
        self._put_back(redo)
        self._cap = max(1, before_failing)
        if failing is not None and not isinstance(exc, OUTSIDE_CAUSES):
            key = (failing.topic, failing.offset)
            strikes = self._strikes[key] = self._strikes.get(key, 0) + 1
            if strikes >= self.limits.record_strikes:
                self._give_up[key] = exc
                self._strikes.pop(key, None)
        delay = self._note_failure(exc, failing)
        self._retry_at = self.monotonic() + delay
        log.warning("partition %d: %s%s; dropped its uncommitted work, put its committed state back, and "
                    "applies its %d record(s) again in %.1fs", self.number, describe(exc),
                    f" while applying {coordinates(failing)}" if failing is not None else "", len(redo), delay)

    def _note_failure(self, exc: Exception, failing: SourceRecord | None) -> float:
        """Count a failure in a row; report the partition blocked once there were enough. The next delay."""
        self._failures += 1
        self._last_error = describe(exc)
        if failing is not None:
            self._last_record = coordinates(failing)
        if self.blocked is None and self._failures >= self.limits.attempts_before_blocked:
            self.blocked = Blocked(self._last_error, self._last_record, self.wall(), self._failures)
            log.error("partition %d: blocked after %d failed attempts in a row%s: %s; its records wait (its "
                      "source partitions are paused) and it tries again every %.0f s at most", self.number,
                      self._failures, f" at {self._last_record}" if self._last_record else "", self._last_error,
                      self.limits.backoff_max_s)
            self.owner.blocked_changed(self.number, self.blocked)
        elif self.blocked is not None:
            self.blocked = Blocked(self._last_error, self._last_record, self.blocked.since, self._failures)
        return self._backoff.next_delay() or self.limits.backoff_max_s

    def _put_back(self, records: Iterable[SourceRecord]) -> None:
        """Return records to the front of their inboxes, in the order they had."""
        retry_topic = self.retry_topic
        orders = [msg for msg in records if msg.topic != retry_topic]
        copies = [msg for msg in records if msg.topic == retry_topic]
        self.orders.extendleft(reversed(orders))
        self.retries.extendleft(reversed(copies))
        if copies:
            self._head_due = math.inf  # a new head: judged at the next step

    async def _lose(self, part: Partition, exc: Exception) -> None:
        log.error("partition %d: %s; dropping %d uncommitted record(s) and asking the group to rebalance",
                  self.number, exc, part.uncommitted)
        part.restore()
        part.lost = True
        self.orders.clear()
        self.retries.clear()
        self.flow.forget((self.orders_tp, self.retry_tp))
        await self.owner.request_rebalance()

    async def _take_over(self) -> None:
        try:
            self.part = await self.owner.take_over(self.number)
            self._publish_taken_over()
        except asyncio.CancelledError:
            raise
        except StillSettling as exc:
            if not self._settling(exc):
                self._retry_at = self.monotonic() + self._note_failure(exc, None)
            return
        except Exception as exc:
            delay = self._note_failure(exc, None)
            self._retry_at = self.monotonic() + delay
            log.warning("partition %d: cannot take it over yet (%s); trying again in %.1fs", self.number, exc, delay)
            return
        self._failures = 0
        self._settling_since = None
        self._backoff = self._new_backoff()
        if self.blocked is not None:
            self.blocked = None
            self.owner.blocked_changed(self.number, None)
        self._update_flow()

    def _settling(self, exc: StillSettling) -> bool:
        """Whether an earlier owner's open transaction is still within its expected lifetime (the next attempt
        then comes at once: each waits a moment for it); past the patience it counts as a failure."""
        now = self.monotonic()
        if self._settling_since is None:
            self._settling_since = now
            log.info("%s; the partition is taken over once it has ended (the broker aborts one a dead worker "
                     "left within %.0fs)", exc, self.limits.settle_patience_s)
        if now - self._settling_since < self.limits.settle_patience_s:
            return True
        log.warning("%s, %.0fs after it was first found", exc, now - self._settling_since)
        return False

    # -- flow ---------------------------------------------------------------------------

    def _hold_reason(self, tp: tuple[str, int]) -> str:
        if self.part is None:
            return "not set up yet"
        if self.blocked is not None:
            return "blocked"
        if self._retry_at > 0:
            return "recovering from an error"
        if tp == self.retry_tp and self.retries and self._head_due != math.inf:
            return "next retry copy not due"
        return "inbox full"

    def _update_flow(self) -> None:
        held = self.part is None or self._retry_at > 0
        limit = self.flow.partition_limit
        self.flow.hold(self.orders_tp, held or len(self.orders) > limit)
        waiting = bool(self.retries) and self._head_due != math.inf
        self.flow.hold(self.retry_tp, held or waiting or len(self.retries) > limit)
