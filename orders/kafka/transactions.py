"""The worker's one transactional producer, and the group membership that fences its commits (Kafka's
exactly-once v2, KIP-447).

A worker has one confluent-kafka producer, whatever the number of partitions
it owns. One transaction carries what a round of commits writes for several
source partitions: their retry copies and dead letters, each partition's new
state on the table's changelog, and the source offsets, committed to the
consumer group with the group membership the partitions were assigned under
(`GroupMember`). Every consumer of those topics (the worker itself, table
recovery, the DLQ tools) reads committed records only, so a decision and its
side effect become visible together, or not at all.

**Fencing a zombie.** A worker that lost its partitions without noticing
(paused past its session timeout, cut off from the group) still holds a
producer. The group coordinator refuses its offsets (`ILLEGAL_GENERATION`,
`UNKNOWN_MEMBER_ID`, `FENCED_INSTANCE_ID`), so its transaction aborts
(`Failure.LOST`). The records are flushed to the broker before the offsets
are sent, so a transaction whose offsets the group accepted before it moved
on already has its records in the log when the next owner looks: the next
owner waits until no transaction is pending on the partition's changelog
(committed or aborted: `reading.pending_transactions`) before it reads the
state. A producer with the same transactional id (the same WORKER_ID, or the
same host and web port) fences the earlier one at `start()` and aborts what
it left open.

librdkafka's calls that wait (init, flush, offsets, commit, abort) run one at
a time in the producer's own thread; produce() only queues and returns. A
call that does not return within its bound (librdkafka can ignore its own
timeout when a broker goes away: `call_thread`) makes the producer unusable
(`Failure.FATAL`): whether its transaction committed is not known, so its
partitions are given up and read again by their next owner, and a new
producer with the same transactional id fences it.
"""
from __future__ import annotations

import enum
import logging
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from .call_thread import CallStuck, CallThread
from .producing import FENCED_OR_FATAL, MAX_MESSAGE_BYTES, error_text, produce
from .records import SourceRecord, coordinates

log = logging.getLogger(__name__)

#: How long one init, flush, offsets, commit or abort call may take before it counts as failed.
CALL_TIMEOUT_S = 30.0
#: How long the event loop waits for such a call before the producer counts as stuck in librdkafka.
CALL_BOUND_S = CALL_TIMEOUT_S + 10.0
#: The broker aborts a transaction left open this long (its producer died mid-commit and no producer with the
#: same transactional id came back); the next owner of its partitions waits for that (Kafka Streams' default).
TRANSACTION_TIMEOUT_MS = 10_000
#: The group coordinator's answers that say the group has moved on without this member.
STALE_MEMBERSHIP = (KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID, KafkaError.FENCED_INSTANCE_ID)


class Failure(enum.Enum):
    #: try the same call again (a timeout, a broker not reachable for a moment)
    RETRY = "retry"
    #: the transaction cannot commit: abort it and apply its records again
    ABORT = "abort"
    #: the group moved on: the partitions belong to another member now (the transaction is aborted)
    LOST = "lost"
    #: the producer is unusable: fenced by a producer with the same transactional id, or broken
    FATAL = "fatal"


@dataclass(frozen=True)
class Refusal:
    """An output record the broker refused: where it was going, the record that caused it, and why."""

    topic: str
    #: the source record whose processing produced the refused record (None: not known)
    source: SourceRecord | None
    reason: str

    def __str__(self) -> str:
        origin = "" if self.source is None else f" (caused by {coordinates(self.source)})"
        return f"{self.topic} refused a record{origin}: {self.reason}"


class TransactionError(Exception):
    def __init__(self, failure: Failure, message: str, refusal: Refusal | None = None) -> None:
        super().__init__(message if refusal is None else f"{message}; {refusal}")
        self.failure = failure
        #: the first output record the broker refused in the transaction, when one was
        self.refusal = refusal


def classify(exc: KafkaException) -> TransactionError:
    error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    if error is None:
        return TransactionError(Failure.ABORT, str(exc))
    if error.code() in STALE_MEMBERSHIP:
        return TransactionError(Failure.LOST, f"the consumer group moved on without this member: {error.str()}")
    if error.fatal() or error.code() in FENCED_OR_FATAL:
        return TransactionError(Failure.FATAL, error.str())
    if error.txn_requires_abort():
        return TransactionError(Failure.ABORT, error.str())
    if error.retriable() or error.code() in (KafkaError._TIMED_OUT, KafkaError._TRANSPORT):
        return TransactionError(Failure.RETRY, error.str())
    return TransactionError(Failure.ABORT, error.str())


@dataclass(frozen=True)
class GroupMember:
    """This worker's membership of the consumer group, as of an assignment: what the group coordinator checks
    before it accepts a transaction's offsets."""

    group_id: str
    generation: int
    member_id: str
    instance_id: str | None = None

    def librdkafka_metadata(self) -> bytes:
        """The consumer group metadata `Producer.send_offsets_to_transaction` takes, in librdkafka's own
        serialization (`rd_kafka_consumer_group_metadata_write`, librdkafka 2.x: magic "CGMDv2:", the
        generation as a native int32, then the group id and the member id NUL-terminated, then a null flag
        byte and the group instance id NUL-terminated when there is one). confluent-kafka builds it only
        from its own consumer; this worker's consumer is aiokafka's (Faust's)."""
        instance = b"\x01" if self.instance_id is None else b"\x00" + self.instance_id.encode() + b"\x00"
        return (b"CGMDv2:" + struct.pack("=i", self.generation) + self.group_id.encode() + b"\x00"
                + self.member_id.encode() + b"\x00" + instance)


class WorkerProducer:
    """The worker's transactional producer. Not safe for concurrent use: the committer calls one method at a
    time, and the records of one transaction are produced between `begin()` and `commit()`/`abort()`."""

    def __init__(self, config: Mapping[str, Any], transactional_id: str, *, call_timeout_s: float = CALL_TIMEOUT_S,
                 call_bound_s: float = CALL_BOUND_S) -> None:
        self.transactional_id = transactional_id
        self.call_timeout_s = call_timeout_s
        self.call_bound_s = call_bound_s
        self._producer = Producer({
            **config, "transactional.id": transactional_id, "enable.idempotence": True, "acks": "all",
            "message.max.bytes": MAX_MESSAGE_BYTES, "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
            "linger.ms": 5, "log_level": 2})
        self._calls = CallThread("transactions")
        self.in_transaction = False
        #: the first record of the open transaction the broker refused (its delivery report said why)
        self.refusal: Refusal | None = None

    async def start(self) -> None:
        """Register the transactional id with the broker: fences earlier producers of the same id and aborts
        what they left open."""
        await self._call("init_transactions", self._producer.init_transactions)

    def begin(self) -> None:
        try:
            self._producer.begin_transaction()
        except KafkaException as exc:
            raise classify(exc) from exc
        self.in_transaction = True
        self.refusal = None

    def produce(self, topic: str, *, key: bytes | None, value: bytes | None,
                headers: Sequence[tuple[str, bytes]] = (), partition: int | None = None,
                timestamp_ms: int | None = None, source: SourceRecord | None = None,
                on_delivery: Callable[[Any, Any], None] | None = None) -> None:
        """Queue a record in the open transaction. `source` is the record that caused it: a refusal by the
        broker names it. A full local queue aborts the transaction (its partitions commit in smaller ones)."""
        refused = self._refused_by(topic, source)

        def delivered(err: Any, msg: Any) -> None:
            refused(err, msg)
            if on_delivery is not None:
                on_delivery(err, msg)
        try:
            # The queue full: serve what was delivered and try once more, never waiting on the event loop.
            produce(self._producer, topic, key=key, value=value, headers=list(headers), partition=partition,
                    timestamp_ms=timestamp_ms, on_delivery=delivered, wait_s=0, attempts=2)
        except BufferError:
            raise TransactionError(Failure.ABORT, f"the producer's local queue is full "
                                   f"({len(self._producer)} records waiting)") from None
        except KafkaException as exc:
            raise classify(exc) from exc

    def _refused_by(self, topic: str, source: SourceRecord | None) -> Callable[[Any, Any], None]:
        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None and self.refusal is None:
                self.refusal = Refusal(topic, source, error_text(err))
        return on_delivery

    async def flush(self) -> None:
        """Wait until the broker has acknowledged (or refused) every record queued so far."""
        def flush(timeout_s: float) -> None:
            left = self._producer.flush(timeout_s)
            if left:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"{left} record(s) not acknowledged "
                                                f"within {timeout_s:.0f}s"))
        await self._call("flush", flush)
        if self.refusal is not None:
            raise TransactionError(Failure.ABORT, "the broker refused a record", self.refusal)

    async def send_offsets(self, offsets: Sequence[TopicPartition], member: GroupMember) -> None:
        """Commit `offsets` to the member's group within the open transaction; the group coordinator refuses
        them unless the member is still the group's at that generation (Failure.LOST)."""
        metadata = member.librdkafka_metadata()
        await self._call("send_offsets_to_transaction", lambda timeout_s: self._producer.send_offsets_to_transaction(
            list(offsets), metadata, timeout_s))

    async def commit(self) -> None:
        """Commit the open transaction; TransactionError says what to do next."""
        try:
            await self._call("commit_transaction", self._producer.commit_transaction)
        except TransactionError as exc:
            raise TransactionError(exc.failure, str(exc), self.refusal) from exc
        self.in_transaction = False

    async def abort(self) -> None:
        """Abort the open transaction (a no-op without one): nothing it queued becomes visible."""
        if self.in_transaction:
            await self._call("abort_transaction", self._producer.abort_transaction)
            self.in_transaction = False

    def close(self) -> None:
        """Drop the producer; an open transaction is aborted by the broker (or by the next producer's start).

        A fenced producer is in a fatal state, and librdkafka raises it from every call, flush
        included: here that is the expected end, not an error. A producer stuck in a call is left to its
        thread untouched: a call on the event loop could wait on the same stuck state."""
        if self._calls.stuck is not None:
            log.warning("producer %s abandoned while %s is stuck in librdkafka; a new producer with the same "
                        "transactional id fences it", self.transactional_id, self._calls.stuck)
        else:
            try:
                self._producer.flush(0)
            except KafkaException as exc:
                log.info("producer %s closed in a fatal state (%s): its open transaction, if any, is aborted",
                         self.transactional_id, error_text(exc))
        self._calls.close()

    async def _call(self, what: str, method: Callable[[float], Any]) -> None:
        try:
            await self._calls.call(what, method, self.call_timeout_s, bound_s=self.call_bound_s)
        except CallStuck as exc:
            raise TransactionError(Failure.FATAL, f"producer {self.transactional_id}: {exc} (librdkafka's own "
                                   f"timeout is {self.call_timeout_s:.0f}s); whether its transaction "
                                   f"committed is not known") from exc
        except KafkaException as exc:
            raise classify(exc) from exc
