"""A source partition's transactional producer: what processing one partition writes, commits together.

Each source partition this worker owns has one confluent-kafka producer with
transactional.id `<APP_ID>-partition-<N>`. One transaction carries the retry
copies and dead letters the partition's records caused and, last, the
partition's new state on the table's changelog; every consumer of those
topics (the worker itself, table recovery, the DLQ tools) reads committed
records only. So a decision and its side effect become visible together, or
not at all: after a crash the open transaction is aborted and the records are
applied again from the last committed state.

Starting the producer (on assignment, before the state is read) fences every
earlier producer with the same id: a worker that was paused past its session
timeout and resumes finds its open transaction aborted and its next commit
refused with a fatal error, so it cannot write anything for a partition it
lost.

librdkafka's calls that wait (init, commit, abort) run in a thread; produce()
only queues and returns: with librdkafka's local queue full it raises
(`Failure.ABORT`) rather than wait on the event loop, and the partition
commits what it has in smaller transactions.
"""
from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from .producing import FENCED_OR_FATAL, MAX_MESSAGE_BYTES, error_text, produce
from .records import SourceRecord, coordinates

log = logging.getLogger(__name__)

#: How long one init, commit or abort may take before it counts as failed (and is retried or aborted).
CALL_TIMEOUT_S = 30.0
#: The broker aborts a transaction left open this long (a producer that died mid-transaction and whose
#: partition nobody took over); far above any commit interval.
TRANSACTION_TIMEOUT_MS = 60_000


class Failure(enum.Enum):
    #: try the same call again (a timeout, a broker not reachable for a moment)
    RETRY = "retry"
    #: the transaction cannot commit: abort it and apply its records again
    ABORT = "abort"
    #: the producer is unusable, usually because another worker now owns the partition (fenced)
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
    if error.fatal() or error.code() in FENCED_OR_FATAL:
        return TransactionError(Failure.FATAL, error.str())
    if error.txn_requires_abort():
        return TransactionError(Failure.ABORT, error.str())
    if error.retriable() or error.code() in (KafkaError._TIMED_OUT, KafkaError._TRANSPORT):
        return TransactionError(Failure.RETRY, error.str())
    return TransactionError(Failure.ABORT, error.str())


class PartitionOutput:
    """The transactional producer of one source partition. Not safe for concurrent use: its owner
    (the partition, under its lock) calls one method at a time."""

    def __init__(self, config: Mapping[str, Any], transactional_id: str) -> None:
        self.transactional_id = transactional_id
        self._producer = Producer({
            **config, "transactional.id": transactional_id, "enable.idempotence": True, "acks": "all",
            "message.max.bytes": MAX_MESSAGE_BYTES, "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
            "linger.ms": 5, "log_level": 2})
        self.in_transaction = False
        #: the first record of the open transaction the broker refused (its delivery report said why)
        self.refusal: Refusal | None = None

    async def start(self) -> None:
        """Register the transactional id with the broker, fencing earlier producers of the same id."""
        await self._call(self._producer.init_transactions, CALL_TIMEOUT_S)

    def produce(self, topic: str, *, key: bytes | None, value: bytes | None,
                headers: Sequence[tuple[str, bytes]] | None = None, partition: int | None = None,
                timestamp_ms: int | None = None, on_delivery: Callable | None = None,
                source: SourceRecord | None = None) -> None:
        """Queue a record in the open transaction (opening one if none is). `source` is the record that
        caused it: a refusal by the broker names it."""
        try:
            if not self.in_transaction:
                self._producer.begin_transaction()
                self.in_transaction = True
                self.refusal = None
            try:
                # The queue full: serve what was delivered and try once more, never waiting on the event loop.
                produce(self._producer, topic, key=key, value=value, headers=list(headers or ()),
                        partition=partition, timestamp_ms=timestamp_ms,
                        on_delivery=on_delivery or self._refused_by(topic, source), wait_s=0, attempts=2)
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

    async def commit(self) -> None:
        """Commit the open transaction (a no-op without one); TransactionError says what to do next."""
        if self.in_transaction:
            try:
                await self._call(self._producer.commit_transaction, CALL_TIMEOUT_S)
            except TransactionError as exc:
                raise TransactionError(exc.failure, str(exc), self.refusal) from exc
            self.in_transaction = False

    async def abort(self) -> None:
        """Abort the open transaction (a no-op without one): nothing it queued becomes visible."""
        if self.in_transaction:
            await self._call(self._producer.abort_transaction, CALL_TIMEOUT_S)
            self.in_transaction = False

    def close(self) -> None:
        """Drop the producer; an open transaction is aborted by the broker (or by the next owner's start).

        A fenced producer is in a fatal state, and librdkafka raises it from every call, flush
        included: here that is the expected end, not an error of the revocation."""
        try:
            self._producer.flush(0)
        except KafkaException as exc:
            log.info("producer %s closed in a fatal state (%s): its open transaction, if any, is aborted",
                     self.transactional_id, error_text(exc))

    @staticmethod
    async def _call(method: Callable[[float], Any], timeout_s: float) -> None:
        try:
            await asyncio.to_thread(method, timeout_s)
        except KafkaException as exc:
            raise classify(exc) from exc
