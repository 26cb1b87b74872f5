"""Commits the partitions' work through the worker's one transactional producer, several partitions per
transaction (a group commit).

A partition task whose commit is due seals its work (`submit(part)`) and
goes on applying the next records while the transaction is on its way.
Requests that arrive while a transaction is being committed go together into
the next one, so a worker commits as often as the broker answers, not once
per partition. One transaction, for every partition in it: the retry copies and
dead letters in its outbox, then its live state on the changelog; then a
flush (every record acknowledged, so it is in the log before the offsets
count); then the source offsets, sent with the group membership the
partitions were assigned under, which the group coordinator checks; then the
commit. Partitions assigned under different memberships (around a
rebalance) go in separate transactions.

A call the broker refuses for the moment (`Failure.RETRY`: a timeout, a
broker restarting) is asked again with backoff while the tasks want it; any
other failure aborts the transaction and is raised to every partition in
it, whose task puts its committed state back and applies its records again
(`ABORT`), or lets the partition go (`LOST`: the group moved on; `FATAL`:
the producer was fenced). A producer that cannot abort (librdkafka can stay
stuck after a broker restart) or that is fenced is replaced by a new one
with the same transactional id, which fences it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from confluent_kafka import TopicPartition

from ..backoff import Backoff
from ..kafka.records import SourceRecord
from ..kafka.transactions import Failure, GroupMember, TransactionError
from .partition import Outcome, Partition, Sealed

log = logging.getLogger("orders")

#: Asked before each new attempt after a refusal for the moment; False: give up and raise it.
KeepTrying = Callable[[TransactionError], bool]
#: A transaction that takes this long is logged with the time each of its steps took: its partitions apply
#: their next records meanwhile, but their next commits wait for it (they come every COMMIT_INTERVAL_SECONDS,
#: 0.25 s by default).
SLOW_TRANSACTION_S = 1.0


class Producer(Protocol):
    """The worker's transactional producer (orders/kafka/transactions.py `WorkerProducer`)."""

    transactional_id: str
    in_transaction: bool

    async def start(self) -> None: ...
    def begin(self) -> None: ...
    def produce(self, topic: str, *, key: bytes | None, value: bytes | None, headers: Any = (),
                partition: int | None = None, timestamp_ms: int | None = None, source: Any = None,
                on_delivery: Callable[[Any, Any], None] | None = None) -> None: ...
    async def flush(self) -> None: ...
    async def send_offsets(self, offsets: list[TopicPartition], member: GroupMember) -> None: ...
    async def commit(self) -> None: ...
    async def abort(self) -> None: ...
    def close(self) -> None: ...


class Committed(NamedTuple):
    """A partition's commit, done: what its records did, the records, and the offset its state landed at on the
    changelog (None if the delivery report did not say)."""

    outcomes: list[Outcome]
    records: list[SourceRecord]
    changelog_offset: int | None


@dataclass
class _Request:
    part: Partition
    sealed: Sealed
    keep_trying: KeepTrying
    future: asyncio.Future = field(repr=False)
    #: the offset the partition's state landed at on the changelog, when the delivery report said
    changelog_offset: int | None = None


class Committer:
    def __init__(self, *, changelog_topic: str, new_producer: Callable[[], Producer],
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic, slow_s: float = SLOW_TRANSACTION_S) -> None:
        self.changelog_topic = changelog_topic
        self._new_producer = new_producer
        self.sleep = sleep
        self.clock = clock
        self.slow_s = slow_s
        self._producer: Producer | None = None
        self._waiting: list[_Request] = []
        self._rounds: asyncio.Task | None = None
        #: transactions committed, and partition commits in them (what the group commit saves)
        self.transactions = 0
        self.partition_commits = 0

    def submit(self, part: Partition, keep_trying: KeepTrying) -> asyncio.Future:
        """Seal the partition's work now (between two records: the caller goes on applying the next ones) and
        queue it for the next transaction, with whatever other partitions ask at the same time. The future's
        result is `Committed`; its exception the TransactionError when it did not commit (the partition then
        puts its committed state back: `Partition.restore`).

        `keep_trying(error)` is asked before each new attempt after a refusal for the moment: False raises it.
        """
        loop = asyncio.get_running_loop()
        request = _Request(part, part.seal(), keep_trying, loop.create_future())
        self._waiting.append(request)
        if self._rounds is None or self._rounds.done():
            self._rounds = loop.create_task(self._run_rounds(), name="commits")
        return request.future

    def withdraw(self, future: asyncio.Future) -> bool:
        """Take back a request whose transaction has not begun (its partition then puts its sealed work back:
        `Partition.unseal`); False when it has begun."""
        for i, request in enumerate(self._waiting):
            if request.future is future:
                del self._waiting[i]
                future.cancel()
                return True
        return False

    async def _run_rounds(self) -> None:
        while self._waiting:
            # Requests whose task gave up waiting (cancelled) are left out.
            requests, self._waiting = [r for r in self._waiting if not r.future.done()], []
            by_member: dict[GroupMember, list[_Request]] = {}
            for request in requests:
                by_member.setdefault(request.part.member, []).append(request)
            for member, batch in by_member.items():
                try:
                    await self._commit_one(member, batch)
                except Exception as exc:  # every partition in the transaction handles it at its error boundary
                    for request in batch:
                        if not request.future.done():
                            request.future.set_exception(exc)
                else:
                    for request in batch:
                        outcomes, records = request.part.mark_committed()
                        if not request.future.done():
                            request.future.set_result(Committed(outcomes, records, request.changelog_offset))

    async def _commit_one(self, member: GroupMember, batch: list[_Request]) -> None:
        steps = _Steps(self.clock)
        producer = await self._ready_producer()
        steps.done("producer")
        try:
            producer.begin()
            offsets = []
            for request in batch:
                number, sealed = request.part.number, request.sealed
                for record in sealed.outbox:
                    producer.produce(record.topic, key=record.key, value=record.value, headers=record.headers,
                                     partition=record.partition, timestamp_ms=record.timestamp_ms,
                                     source=record.source)
                producer.produce(self.changelog_topic, key=json.dumps(number).encode(),
                                 value=json.dumps(sealed.state.to_value()).encode(), partition=number,
                                 on_delivery=self._landed(request))
                offsets += [TopicPartition(topic, number, applied + 1)
                            for topic, applied in sealed.state.applied.items()]
            steps.done("queue")
            await self._asked_until_done(producer.flush, batch)
            steps.done("flush")
            await self._asked_until_done(lambda: producer.send_offsets(offsets, member), batch)
            steps.done("offsets")
            await self._asked_until_done(producer.commit, batch)
            steps.done("commit")
        except TransactionError as exc:
            await self._after_failure(producer, exc)
            raise
        except BaseException:
            await self._after_failure(producer, None)
            raise
        finally:
            took = steps.total()
            if took >= self.slow_s:
                log.warning("a transaction of %d partition(s) took %.2fs (%s): their next commits waited for it; "
                            "partitions %s", len(batch), took, steps, sorted(request.part.number for request in batch))
        self.transactions += 1
        self.partition_commits += len(batch)

    @staticmethod
    def _landed(request: _Request) -> Callable[[Any, Any], None]:
        def on_delivery(err: Any, msg: Any) -> None:
            if err is None:
                request.changelog_offset = msg.offset()
        return on_delivery

    async def _asked_until_done(self, call: Callable[[], Awaitable[None]], batch: list[_Request]) -> None:
        backoff = Backoff(0.2, 5.0)
        while True:
            try:
                await call()
                return
            except TransactionError as exc:
                if exc.failure is not Failure.RETRY:
                    raise
                # Every partition counts the attempt (a partition can be reported blocked by it).
                if not all([request.keep_trying(exc) for request in batch]):
                    raise
                delay = backoff.next_delay()
                log.warning("partitions %s: commit not done yet (%s); asking again in %.1fs",
                            sorted(request.part.number for request in batch), exc, delay)
                await self.sleep(delay)

    async def _ready_producer(self) -> Producer:
        if self._producer is None:
            producer = self._new_producer()
            try:
                await producer.start()
            except BaseException:
                producer.close()
                raise
            self._producer = producer
        return self._producer

    async def _after_failure(self, producer: Producer, exc: TransactionError | None) -> None:
        """Abort what the failed transaction wrote; replace a producer that is fenced or cannot abort."""
        if exc is not None and exc.failure is Failure.FATAL:
            self._replace(producer, f"it is unusable ({exc})")
            return
        try:
            await producer.abort()
        except Exception as abort_error:
            self._replace(producer, f"it could not abort its transaction ({abort_error})")

    def _replace(self, producer: Producer, why: str) -> None:
        log.warning("transactional producer %s: %s; the next commit starts a new one with the same id, which "
                    "fences it (the broker aborts what it left open)", producer.transactional_id, why)
        producer.close()
        if self._producer is producer:
            self._producer = None

    def close(self) -> None:
        """At shutdown, after the last commits: drop the producer."""
        if self._producer is not None:
            self._producer.close()
            self._producer = None


class LastCommits:
    """The last commits of the partitions let go together (revocation, shutdown), sent at once: one transaction.

    A partition whose commit has begun waits for it before it sends its last one (a commit that has not begun
    is withdrawn and folded into the last: `Committer.withdraw`). Sent as each partition came, the last
    commits went in two or three transactions after the one on its way, and each transaction waits for the
    broker to finish the one before (Kafka answers its first request with CONCURRENT_TRANSACTIONS until the
    markers of the last are written): 1.1-2.3 s a transaction on a busy broker, four in a row held a
    192-partition rebalance for 5 s. So the partitions hand their sends over here, and they are sent in one
    pass of the event loop, before the committer's next round begins, once every partition has come or
    ended, or at `deadline` (monotonic)."""

    def __init__(self, partitions: int, deadline: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._left = partitions
        self._deadline = deadline
        self._clock = clock
        self._queued: list[tuple[Callable[[], None], asyncio.Future]] = []
        self._sent = partitions <= 0

    def arrive(self) -> None:
        """One partition has come (or ended without a last commit)."""
        self._left -= 1
        if self._left <= 0:
            self._send_all()

    async def send(self, send: Callable[[], None]) -> None:
        """Come with this partition's last commit (`send` submits it); return once it is sent."""
        if self._sent:
            send()
            return
        done = asyncio.get_running_loop().create_future()
        self._queued.append((send, done))
        self.arrive()
        try:
            await asyncio.wait_for(asyncio.shield(done), max(0.0, self._deadline - self._clock()))
        except TimeoutError:
            self._send_all()
        except asyncio.CancelledError:  # the task gave up (stop's bound): its commit is not to be sent
            self._queued = [(queued, waiting) for queued, waiting in self._queued if waiting is not done]
            raise
        await done

    def _send_all(self) -> None:
        self._sent = True
        queued, self._queued = self._queued, []
        for send, done in queued:
            try:
                send()
            except Exception as exc:  # raised to that partition's task alone
                done.set_exception(exc)
            else:
                done.set_result(None)


class _Steps:
    """How long each step of a transaction took, for the log line of a slow one."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._started = self._last = clock()
        self._took: list[tuple[str, float]] = []

    def done(self, step: str) -> None:
        now = self._clock()
        self._took.append((step, now - self._last))
        self._last = now

    def total(self) -> float:
        return self._clock() - self._started

    def __str__(self) -> str:
        return ", ".join(f"{step} {seconds:.2f}s" for step, seconds in self._took) or "no step done"
