"""The processing rules: how one record of `orders` or `orders-retry` changes its partition.

`OrderHandler` is built from its collaborators (the codec, the failure policy,
the retry policy, the topics and limits, how to read records the consumer
skipped, a clock), so every rule can be driven with fakes in a unit test. It
changes the partition's live state and queues the retry copy or dead letter a
record causes in the partition's open transaction; the partition task commits
both together, and puts the committed state back if anything raises
meanwhile (so a rule may raise at any point without leaving half an order).

The rules:
- records are applied in offset order per partition and topic; a record at or
  below the last applied offset is a replay and changes nothing;
- on `orders`, a record beyond the next expected offset means the consumer
  skipped records: the ones in between are read directly and applied first
  (offsets that hold no record, such as transaction markers, yield nothing);
- a failed attempt goes to `orders-retry`, on the original's partition number,
  as copy number `retry_seq_sent + 1` of its partition; when the retry policy
  has no retry left, or at once when it can never succeed, it goes to the DLQ;
- a retry copy is resolved in sequence order: at or below `retry_seq_done`
  it is a duplicate and skipped; beyond `retry_seq_done + 1` the copies in
  between were skipped by the consumer and are read directly first; a copy
  this partition never sent (the policy's orphan rules) is dead-lettered as
  `orphaned-retry` at once, so it never holds anything up;
- a copy is due at its not-before time, bounded by the retry policy
  (`due_in_ms`); one that is judged at once (a replay, a duplicate, an orphan,
  not a retry record) is never held;
- a dead letter larger than the DLQ topic takes is cut to fit (`too-large`).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from avro_codec import AvroCodecError

from ..domain import headers as h
from ..domain.headers import Attempt, describe, dlq_headers, retry_copy, retry_headers
from ..domain.order import FailureSimulator, InvalidOrder, Order, SimulatedFailure, process_order, validate
from ..domain.retry_policy import RetryPolicy
from ..kafka.records import SourceRecord, coordinates
from .partition import DEAD_LETTERED, PROCESSED, RETRIED, Outcome, Partition, label

log = logging.getLogger("orders")

#: Reads the committed records of one partition with start <= offset < end, at most a page of them, in order.
ReadPage = Callable[[str, int, int, int], Awaitable[Sequence[SourceRecord]]]
#: A test-only fault point (FAULT_INJECTION_RATE): raises at random, named by where it is.
FaultPoint = Callable[[str], None]


class NotARetryRecord(ValueError):
    """A record on the retry topic without this app's retry headers."""


class OrphanedRetry(ValueError):
    """A record on the retry topic with retry headers that this partition has no record of sending."""


def dead_letter_reason(error: Exception, attempt: int, policy: RetryPolicy) -> str | None:
    """Why an attempt that failed with `error` ends the order; None when it is retried instead."""
    if isinstance(error, SimulatedFailure):
        return None if policy.retries_left(attempt) else h.RETRIES_EXHAUSTED
    if isinstance(error, AvroCodecError):
        return h.UNDECODABLE
    if isinstance(error, InvalidOrder):
        return h.INVALID_ORDER
    raise TypeError(f"no route for {type(error).__name__}") from error


class OrderHandler:
    def __init__(self, *, codec: Any, failures: FailureSimulator, policy: RetryPolicy, retry_topic: str,
                 dlq_topic: str, dead_letter_bytes: int, earliest_offset: Callable[[str, int], Awaitable[int]],
                 read_page: ReadPage, clock: Callable[[], float] = time.time,
                 fault: FaultPoint | None = None) -> None:
        self.codec = codec
        self.failures = failures
        self.policy = policy
        self.orders_topic = policy.orders_topic
        self.retry_topic = retry_topic
        self.dlq_topic = dlq_topic
        self.dead_letter_bytes = dead_letter_bytes
        self.earliest_offset = earliest_offset
        self.read_page = read_page
        self.clock = clock
        self.fault = fault
        #: (partition, offset) of the last copy whose not-before was cut short, so it is logged once
        self._clamped: tuple[int, int] | None = None

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- what the partition task asks before applying a retry copy ------------

    def due_in_ms(self, part: Partition, msg: SourceRecord, first_seen_ms: int) -> int:
        """How long a record of the retry topic must still wait: 0 when it is due, or when it is judged
        without waiting (a replay, not a retry record, an orphan, a duplicate)."""
        expected = part.state.next_offset(msg.topic)
        if expected is not None and msg.offset < expected:
            return 0
        copy = retry_copy(msg.headers)
        if copy is None or copy.seq is None or copy.seq <= part.state.retry_seq_done:
            return 0
        if self.policy.orphan_reason(copy, part.number, part.state.retry_seq_sent) is not None:
            return 0
        written_ms = None if msg.timestamp is None else int(msg.timestamp * 1000)
        due_ms = self.policy.due_at_ms(copy, written_ms, first_seen_ms)
        if due_ms < copy.attempt.not_before_ms and self._clamped != (msg.partition, msg.offset):
            self._clamped = (msg.partition, msg.offset)
            log.warning("%s: x-not-before-ms %d lies %.0f s past what this app would have set (the copy's "
                        "timestamp or its arrival here plus RETRY_DELAY_SECONDS %.1f and the allowance %.1f s); "
                        "it is tried from %d instead", coordinates(msg), copy.attempt.not_before_ms,
                        (copy.attempt.not_before_ms - due_ms) / 1000, self.policy.delay_s,
                        self.policy.not_before_allowance_s, due_ms)
        return max(0, due_ms - self.now_ms())

    # -- applying -------------------------------------------------------------

    async def apply(self, part: Partition, msg: SourceRecord, *, is_retry: bool) -> bool:
        """Apply one delivered record to its partition; False when it is a replay and changed nothing."""
        expected = part.state.next_offset(msg.topic)
        if expected is None:
            expected = await self._first_offset(msg)
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

    async def _first_offset(self, msg: SourceRecord) -> int:
        """Where a partition the state has not applied yet starts: the oldest offset still in its log. A record at
        offset 0 is the first there can be, so the broker is not asked (every partition of a new topic: taking 192
        of them over waited for that read before their first records)."""
        if msg.offset == 0:
            return 0
        return await self.earliest_offset(msg.topic, msg.partition)

    async def _apply_skipped(self, part: Partition, topic: str, start: int, end: int, *, is_retry: bool) -> None:
        """Read offsets start..end-1 directly, a page at a time, and apply the records found."""
        log.warning("%s[%d]: reading offsets %d-%d directly, the consumer did not deliver them",
                    topic, part.number, start, end - 1)
        found = 0
        while start < end:
            page = await self.read_page(topic, part.number, start, end)
            if not page:
                break
            for record in page:
                if is_retry:
                    await self._resolve_copy(part, record)
                else:
                    await self._attempt(part, record, Attempt(record.topic, record.partition, record.offset))
                part.state.mark_applied(record.topic, record.offset)
            found += len(page)
            start = page[-1].offset + 1
        if found:
            log.warning("%s[%d]: applied %d skipped record(s) first", topic, part.number, found)

    async def _resolve_copy(self, part: Partition, msg: SourceRecord) -> None:
        copy = retry_copy(msg.headers)
        if copy is None:
            error = NotARetryRecord(f"no valid {h.ATTEMPT}/{h.ORIGINAL_TOPIC}/... headers: not written by this app")
            self._dead_letter(part, msg, Attempt(msg.topic, msg.partition, msg.offset), h.NOT_A_RETRY_RECORD, error,
                              None)
            return
        why = self.policy.orphan_reason(copy, msg.partition, part.state.retry_seq_sent)
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
                expected = await self._first_offset(msg)
            await self._apply_skipped(part, msg.topic, expected, msg.offset, is_retry=True)
            if copy.seq > state.retry_seq_done + 1:
                log.warning("%s[%d]: retry copies %d-%d are not in the topic (retention?); their orders stay "
                            "unresolved", msg.topic, part.number, state.retry_seq_done + 1, copy.seq - 1)
        await self._attempt(part, msg, copy.attempt)
        if self.fault:
            self.fault("copy-attempted")
        state.retry_seq_done = copy.seq

    def apply_next(self, part: Partition, msg: SourceRecord) -> bool:
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
        if self.fault:
            self.fault("applied")
        part.state.applied[msg.topic] = msg.offset
        return True

    def give_up(self, part: Partition, msg: SourceRecord, error: Exception) -> None:
        """Dead-letter a record whose processing keeps raising an error no rule classifies
        (`processing-error`), and mark it applied; a retry copy counts as resolved."""
        copy = retry_copy(msg.headers) if msg.topic == self.retry_topic else None
        attempt = copy.attempt if copy is not None else Attempt(msg.topic, msg.partition, msg.offset)
        self._dead_letter(part, msg, attempt, h.PROCESSING_ERROR, error, None)
        if copy is not None and copy.seq is not None and copy.seq == part.state.retry_seq_done + 1:
            part.state.retry_seq_done = copy.seq
        part.state.mark_applied(msg.topic, msg.offset)

    async def _attempt(self, part: Partition, msg: SourceRecord, attempt: Attempt) -> None:
        """Decode (waiting for the registry on a schema not cached yet), then process the attempt."""
        try:
            record = self.codec.decode_cached(msg.value)
            if record is None:
                record = await self.codec.decode(msg.value)
        except AvroCodecError as error:
            self._failed(part, msg, attempt, None, error)
            return
        self._process(part, msg, record, attempt.number, attempt)

    def _process(self, part: Partition, msg: SourceRecord, record: dict, number: int,
                 attempt: Attempt | None) -> None:
        """Validate and process attempt `number` of a decoded record: count its order, or route the failure.
        `attempt` may be None for a first attempt (built only when it fails)."""
        try:
            order = validate(record)
        except InvalidOrder as error:
            self._failed(part, msg, attempt or Attempt(msg.topic, msg.partition, msg.offset), None, error,
                         order_id=record.get("orderId"))
            return
        try:
            micros = process_order(order, number, self.failures)
        except SimulatedFailure as error:
            self._failed(part, msg, attempt or Attempt(msg.topic, msg.partition, msg.offset), order, error)
            return
        part.state.count(micros)
        # A record without a timestamp (None, or Kafka's -1) is not observed; one ahead of this clock counts as 0.
        timestamp = msg.timestamp
        latency = None if timestamp is None or timestamp <= 0 else max(0.0, self.clock() - timestamp)
        part.outcomes.append(Outcome(PROCESSED, msg, order, number, latency))

    def _failed(self, part: Partition, msg: SourceRecord, attempt: Attempt, order: Order | None, error: Exception,
                order_id: str | None = None) -> None:
        reason = dead_letter_reason(error, attempt.number, self.policy)
        if reason is None:
            self._retry(part, msg, attempt, error, order)
        else:
            self._dead_letter(part, msg, attempt, reason, error, order, order_id)

    def _retry(self, part: Partition, msg: SourceRecord, attempt: Attempt, error: Exception,
               order: Order | None) -> None:
        now_ms = self.now_ms()
        headers = retry_headers(attempt, error, now_ms, self.policy.not_before_ms(now_ms),
                                seq=part.state.retry_seq_sent + 1, app_id=self.policy.app_id)
        if h.record_bytes(msg.key, msg.value, headers) > self.dead_letter_bytes:
            self._dead_letter(part, msg, attempt, h.TOO_LARGE, error, order)
            return
        # The record's timestamp is the failure time its not-before counts from.
        part.send(self.retry_topic, key=msg.key, value=msg.value, headers=headers, partition=attempt.partition,
                  timestamp_ms=now_ms, source=msg)
        if self.fault:
            self.fault("retry-queued")
        part.state.next_retry_seq()
        part.outcomes.append(Outcome(RETRIED, msg, order, attempt.number, detail=str(error)))

    def _dead_letter(self, part: Partition, msg: SourceRecord, attempt: Attempt, reason: str, error: Exception,
                     order: Order | None, order_id: str | None = None) -> None:
        headers = dlq_headers(attempt, reason, error, self.now_ms())
        value = msg.value
        if h.record_bytes(msg.key, value, headers) > self.dead_letter_bytes:
            value, headers = h.shrink_dead_letter(msg.key, value, headers, self.dead_letter_bytes)
            reason = h.TOO_LARGE
        part.send(self.dlq_topic, key=msg.key, value=value, headers=headers, source=msg)
        if self.fault:
            self.fault("dead-letter-queued")
        part.state.dead_letters += 1
        part.outcomes.append(Outcome(DEAD_LETTERED, msg, order, attempt.number, reason=reason, detail=describe(error),
                                     order_id=order_id))

