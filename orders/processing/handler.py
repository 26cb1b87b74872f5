"""The processing rules: how one record of `orders` or `orders-retry` changes its partition.

`OrderHandler` is built from its collaborators (the codec, the failure policy,
the topics and limits, how to read records the consumer skipped, a clock), so
every rule can be driven with fakes in a unit test. It changes the partition's
live state and queues the retry copy or dead letter a record causes in the
partition's open transaction; the processor commits both together.

The rules:
- records are applied in offset order per partition and topic; a record at or
  below the last applied offset is a replay and changes nothing;
- on `orders`, a record beyond the next expected offset means the consumer
  skipped records: the ones in between are read directly and applied first
  (offsets that hold no record, such as transaction markers, yield nothing);
- a failed attempt goes to `orders-retry`, on the original's partition number,
  as copy number `retry_seq_sent + 1` of its partition; after MAX_RETRIES
  retries, or at once when it can never succeed, it goes to the DLQ;
- a retry copy is resolved in sequence order: at or below `retry_seq_done`
  it is a duplicate and skipped; beyond `retry_seq_done + 1` the copies in
  between were skipped by the consumer and are read directly first; a copy
  this partition never sent (no sequence number, another app, another
  partition, a number beyond `retry_seq_sent`) is dead-lettered as
  `orphaned-retry` at once, so it never holds anything up;
- a dead letter larger than the DLQ topic takes is cut to fit (`too-large`).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from avro_codec import AvroCodecError

from ..domain import headers as h
from ..domain.headers import Attempt, RetryCopy, describe, dlq_headers, retry_copy, retry_headers
from ..domain.order import FailureSimulator, InvalidOrder, SimulatedFailure, process_order, validate
from .partition import DEAD_LETTERED, PROCESSED, RETRIED, Outcome, Partition, label

log = logging.getLogger("orders")


class NotARetryRecord(ValueError):
    """A record on the retry topic without this app's retry headers."""


class OrphanedRetry(ValueError):
    """A record on the retry topic with retry headers that this partition has no record of sending."""


def dead_letter_reason(error: Exception, attempt: int, max_retries: int) -> str | None:
    """Why an attempt that failed with `error` ends the order; None when it is retried instead."""
    if isinstance(error, SimulatedFailure):
        return None if attempt <= max_retries else h.RETRIES_EXHAUSTED
    if isinstance(error, AvroCodecError):
        return h.UNDECODABLE
    if isinstance(error, InvalidOrder):
        return h.INVALID_ORDER
    raise TypeError(f"no route for {type(error).__name__}") from error


class OrderHandler:
    def __init__(self, *, codec: Any, failures: FailureSimulator, app_id: str, orders_topic: str,
                 retry_topic: str, dlq_topic: str, max_retries: int, retry_delay_s: float,
                 dead_letter_bytes: int, earliest_offset: Callable[[str, int], Awaitable[int]],
                 read_missed: Callable[[str, int, int, int], Awaitable[Sequence[Any]]],
                 clock: Callable[[], float] = time.time) -> None:
        self.codec = codec
        self.failures = failures
        self.app_id = app_id
        self.orders_topic = orders_topic
        self.retry_topic = retry_topic
        self.dlq_topic = dlq_topic
        self.max_retries = max_retries
        self.retry_delay_s = retry_delay_s
        self.dead_letter_bytes = dead_letter_bytes
        self.earliest_offset = earliest_offset
        self.read_missed = read_missed
        self.clock = clock

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- what the processor asks before applying ------------------------------

    @staticmethod
    def is_replay(part: Partition, msg: Any) -> bool:
        expected = part.state.next_offset(msg.topic)
        return expected is not None and msg.offset < expected

    def due_in_s(self, msg: Any) -> float:
        """How long a retry copy must still wait for its not-before time (0: due, or not a retry copy)."""
        copy = retry_copy(msg.headers)
        return 0.0 if copy is None else max(0.0, (copy.attempt.not_before_ms - self.now_ms()) / 1000)

    # -- applying -------------------------------------------------------------

    async def apply(self, part: Partition, msg: Any, *, is_retry: bool) -> bool:
        """Apply one delivered record to its partition; False when it is a replay and changed nothing."""
        expected = part.state.next_offset(msg.topic)
        if expected is None:
            expected = await self.earliest_offset(msg.topic, msg.partition)
        if msg.offset < expected:
            return False
        if msg.offset > expected and not is_retry:
            await self._apply_skipped(part, msg.topic, expected, msg.offset, is_retry=False)
        if is_retry:
            await self._resolve_copy(part, msg)
        else:
            await self._attempt(part, msg, Attempt(msg.topic, msg.partition, msg.offset))
        part.state.mark_applied(msg.topic, msg.offset)
        return True

    async def _apply_skipped(self, part: Partition, topic: str, start: int, end: int, *, is_retry: bool) -> None:
        log.warning("%s[%d]: reading offsets %d-%d directly, the consumer did not deliver them",
                    topic, part.number, start, end - 1)
        missed = await self.read_missed(topic, part.number, start, end)
        if missed:
            log.warning("%s[%d]: applying %d skipped record(s) first", topic, part.number, len(missed))
        for record in missed:
            if is_retry:
                await self._resolve_copy(part, record)
            else:
                await self._attempt(part, record, Attempt(record.topic, record.partition, record.offset))
            part.state.mark_applied(record.topic, record.offset)

    async def _resolve_copy(self, part: Partition, msg: Any) -> None:
        copy = retry_copy(msg.headers)
        if copy is None:
            error = NotARetryRecord(f"no valid {h.ATTEMPT}/{h.ORIGINAL_TOPIC}/... headers: not written by this app")
            self._dead_letter(part, msg, Attempt(msg.topic, msg.partition, msg.offset), h.NOT_A_RETRY_RECORD, error,
                              None)
            return
        why = self._orphan_reason(part, msg, copy)
        if why is not None:
            self._dead_letter(part, msg, copy.attempt, h.ORPHANED_RETRY, OrphanedRetry(why), None)
            return
        state = part.state
        if copy.seq <= state.retry_seq_done:
            log.debug("skip %s: retry copy %d of partition %d is resolved already", label(None, msg), copy.seq,
                      part.number)
            return
        if copy.seq > state.retry_seq_done + 1:
            expected = state.next_offset(msg.topic)
            if expected is None:
                expected = await self.earliest_offset(msg.topic, msg.partition)
            await self._apply_skipped(part, msg.topic, expected, msg.offset, is_retry=True)
            if copy.seq > state.retry_seq_done + 1:
                log.warning("%s[%d]: retry copies %d-%d are not in the topic (retention?); their orders stay "
                            "unresolved", msg.topic, part.number, state.retry_seq_done + 1, copy.seq - 1)
        state.retry_seq_done = copy.seq
        await self._attempt(part, msg, copy.attempt)

    def _orphan_reason(self, part: Partition, msg: Any, copy: RetryCopy) -> str | None:
        """Why this partition cannot have sent the copy; None when it can."""
        if copy.seq is None:
            return f"no {h.RETRY_SEQ} header: written by hand or by an older version of the app"
        if copy.app_id != self.app_id:
            return f"sent by app {copy.app_id!r}, not {self.app_id!r}"
        if (copy.attempt.topic, copy.attempt.partition) != (self.orders_topic, msg.partition):
            return (f"its original {copy.attempt.origin_key} is not on partition {msg.partition} of "
                    f"{self.orders_topic}")
        if copy.seq > part.state.retry_seq_sent:
            return f"copy {copy.seq} was never sent: partition {part.number} sent {part.state.retry_seq_sent}"
        return None

    def apply_next(self, part: Partition, msg: Any) -> bool:
        """The hot path of `orders`, without awaiting: apply a record at the partition's next offset whose
        writer schema is cached. False when it is not such a record; the caller then awaits `apply`."""
        last = part.state.applied.get(msg.topic)
        if last is None or msg.offset != last + 1:
            return False
        try:
            record = self.codec.decode_cached(msg.value)
        except AvroCodecError as error:
            self._failed(part, msg, Attempt(msg.topic, msg.partition, msg.offset), None, error)
        else:
            if record is None:
                return False
            self._process(part, msg, record, 1, None)
        part.state.applied[msg.topic] = msg.offset
        return True

    async def _attempt(self, part: Partition, msg: Any, attempt: Attempt) -> None:
        """Decode (waiting for the registry on a schema not cached yet), then process the attempt."""
        try:
            record = self.codec.decode_cached(msg.value)
            if record is None:
                record = await self.codec.decode(msg.value)
        except AvroCodecError as error:
            self._failed(part, msg, attempt, None, error)
            return
        self._process(part, msg, record, attempt.number, attempt)

    def _process(self, part: Partition, msg: Any, record: dict, number: int, attempt: Attempt | None) -> None:
        """Validate and process attempt `number` of a decoded order: count it, or route the failure.
        `attempt` may be None for a first attempt (built only when it fails)."""
        try:
            micros = process_order(validate(record), number, self.failures)
        except (InvalidOrder, SimulatedFailure) as error:
            self._failed(part, msg, attempt or Attempt(msg.topic, msg.partition, msg.offset), record, error)
            return
        part.state.count(micros)
        # A record without a timestamp (None, or Kafka's -1) is not observed; one ahead of this clock counts as 0.
        timestamp = msg.timestamp
        latency = None if timestamp is None or timestamp <= 0 else max(0.0, self.clock() - timestamp)
        part.outcomes.append(Outcome(PROCESSED, msg, record, number, latency))

    def _failed(self, part: Partition, msg: Any, attempt: Attempt, record: dict | None, error: Exception) -> None:
        reason = dead_letter_reason(error, attempt.number, self.max_retries)
        if reason is None:
            self._retry(part, msg, attempt, error, record)
        else:
            self._dead_letter(part, msg, attempt, reason, error, record)

    def _retry(self, part: Partition, msg: Any, attempt: Attempt, error: Exception, record: dict | None) -> None:
        now_ms = self.now_ms()
        headers = retry_headers(attempt, error, now_ms, self.retry_delay_s, seq=part.state.retry_seq_sent + 1,
                                app_id=self.app_id)
        if h.record_bytes(msg.key, msg.value, headers) > self.dead_letter_bytes:
            self._dead_letter(part, msg, attempt, h.TOO_LARGE, error, record)
            return
        # The record's timestamp is the failure time its not-before counts from.
        part.output.produce(self.retry_topic, key=msg.key, value=msg.value, headers=headers,
                            partition=attempt.partition, timestamp_ms=now_ms)
        part.state.next_retry_seq()
        part.outcomes.append(Outcome(RETRIED, msg, record, attempt.number, detail=str(error)))

    def _dead_letter(self, part: Partition, msg: Any, attempt: Attempt, reason: str, error: Exception,
                     record: dict | None) -> None:
        headers = dlq_headers(attempt, reason, error, self.now_ms())
        value = msg.value
        if h.record_bytes(msg.key, value, headers) > self.dead_letter_bytes:
            value, headers = h.shrink_dead_letter(msg.key, value, headers, self.dead_letter_bytes)
            reason = h.TOO_LARGE
        part.output.produce(self.dlq_topic, key=msg.key, value=value, headers=headers)
        part.state.dead_letters += 1
        part.outcomes.append(Outcome(DEAD_LETTERED, msg, record, attempt.number, reason=reason, detail=describe(error)))
