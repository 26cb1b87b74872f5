"""The processing rules behind both agents: decode, validate, process, route.

`OrderHandler` is built from its collaborators (the codec, the partitions'
states, where retries and dead letters go, the failure policy, metrics, how to
read skipped records), so the rules can be driven with fakes in a unit test.

Agents hand over their events a batch at a time. A batch applies its records
in order to the in-memory states of their partitions (`LiveStates`); the
states are written to the table once per commit, just before Faust commits
the offsets.

Ordering rules that keep the aggregate exact across crashes:
- a partition's state carries the offsets applied from each source topic
  together with the counts, and is written whole, so whatever state survives a
  crash says exactly which records it includes;
- a retry or dead-letter record is delivered (broker ack) before the state
  records the source offset as applied, so a crash in between replays the
  record instead of losing it;
- a retry copy is acknowledged before its original is marked pending and
  applied (one change); a copy that arrives before that waits, so it is never
  mistaken for a stale one, and a copy whose original is applied but no
  longer pending is stale and skipped: duplicate copies count once;
- records are applied strictly in offset order per partition: an offset at or
  below the last applied one is a replay and skipped, one beyond the next
  expected means the consumer skipped records, which are read and applied first.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from avro_codec import AvroCodecError

from ..domain import headers as h
from ..domain.headers import Attempt, describe, dlq_headers, retry_attempt, retry_headers
from ..domain.order import FailureSimulator, InvalidOrder, SimulatedFailure, process_order, validate
from ..domain.partition_state import PartitionState
from ..ops.activity_log import DEAD_LETTERED, PROCESSED, RETRIED, ActivityLog
from ..ops.metrics import OrderMetrics
from .live_states import LiveStates

log = logging.getLogger("orders")

#: A retry copy still waiting for its original to be applied is reported this often.
ORIGINAL_WAIT_REPORT_S = 30.0
ORIGINAL_POLL_S = 0.05


class NotARetryRecord(ValueError):
    """A record on the retry topic that this app did not write."""


class Outputs(Protocol):
    """Where retry copies and dead letters go; each send returns once the broker acknowledged it."""

    async def send_retry(self, *, key: bytes | None, value: bytes | None, partition: int, timestamp_s: float,
                         headers: h.Headers) -> None: ...

    async def send_dead_letter(self, *, key: bytes | None, value: bytes | None, headers: h.Headers) -> None: ...


class FaustOutputs:
    """`Outputs` on the app's Faust topics."""

    def __init__(self, retry_topic: Any, dlq_topic: Any) -> None:
        self._retry = retry_topic
        self._dlq = dlq_topic

    async def send_retry(self, *, key, value, partition, timestamp_s, headers) -> None:
        await (await self._retry.send(key=key, value=value, partition=partition, timestamp=timestamp_s,
                                      headers=headers))

    async def send_dead_letter(self, *, key, value, headers) -> None:
        await (await self._dlq.send(key=key, value=value, headers=headers))


def dead_letter_reason(error: Exception, attempt: int, max_retries: int) -> str | None:
    """Why an attempt that failed with `error` ends the order; None when it is retried instead."""
    if isinstance(error, SimulatedFailure):
        return None if attempt <= max_retries else h.RETRIES_EXHAUSTED
    if isinstance(error, AvroCodecError):
        return h.UNDECODABLE
    if isinstance(error, InvalidOrder):
        return h.INVALID_ORDER
    raise TypeError(f"no route for {type(error).__name__}") from error


def _label(record: dict | None, msg) -> str:
    """How logs name a record: its orderId when it has one, and where it came from."""
    order_id = record.get("orderId") if isinstance(record, dict) else None
    return f"{order_id or '<no orderId>'} ({msg.topic}[{msg.partition}]@{msg.offset})"


@dataclass
class _Batch:
    """What a batch reports once it is applied: when its counted orders were produced, which replays it skipped."""

    counted_timestamps: list[float | None] = field(default_factory=list)
    replays: dict[tuple[str, int], list[int]] = field(default_factory=dict)  # (topic, partition) -> offsets


class OrderHandler:
    def __init__(self, *, codec: Any, states: LiveStates, outputs: Outputs, failures: FailureSimulator,
                 metrics: OrderMetrics, activity: ActivityLog, summary: Callable[[], dict], orders_topic: str,
                 max_retries: int, retry_delay_s: float,
                 earliest_offset: Callable[[str, int], Awaitable[int]],
                 read_missed: Callable[[str, int, int, int], Awaitable[Sequence[Any]]],
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.codec = codec
        self.states = states
        self.outputs = outputs
        self.failures = failures
        self.metrics = metrics
        self.activity = activity
        self.summary = summary
        self.orders_topic = orders_topic
        self.max_retries = max_retries
        self.retry_delay_s = retry_delay_s
        self.earliest_offset = earliest_offset
        self.read_missed = read_missed
        self.clock = clock
        self.sleep = sleep

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def handle_batch(self, events: Sequence[Any], *, is_retry: bool) -> None:
        """Apply a batch of events in order to the partitions' states (written to the table before the next commit)."""
        batch = _Batch()
        for event in events:
            msg = event.message
            if await self._handle(msg, self.states.get(msg.partition), is_retry, batch):
                self.states.changed(msg.partition, event)
        for timestamp in batch.counted_timestamps:
            self.metrics.processed(timestamp)
        for (topic, partition), offsets in batch.replays.items():
            log.info("skip %d record(s) of %s[%d] (offsets %d-%d): applied before a restart",
                     len(offsets), topic, partition, offsets[0], offsets[-1])

    async def _handle(self, msg, state: PartitionState, is_retry: bool, batch: _Batch) -> bool:
        """Apply the record, after any records of its partition that the consumer skipped; False for a replay."""
        expected = state.next_offset(msg.topic)
        if expected is None:
            expected = await self.earliest_offset(msg.topic, msg.partition)
        if msg.offset < expected:
            batch.replays.setdefault((msg.topic, msg.partition), []).append(msg.offset)
            return False
        if msg.offset > expected:
            log.warning("%s[%d]: consumer delivered offset %d but %d was next; reading the records in between",
                        msg.topic, msg.partition, msg.offset, expected)
            missed = await self.read_missed(msg.topic, msg.partition, expected, msg.offset)
            log.warning("%s[%d]: applying %d skipped record(s) first", msg.topic, msg.partition, len(missed))
            for record in missed:
                await self._apply(record, state, is_retry, batch)
        await self._apply(msg, state, is_retry, batch)
        return True

    # -- one record -----------------------------------------------------------

    async def _apply(self, msg, state: PartitionState, is_retry: bool, batch: _Batch) -> None:
        """Process one record: the event's message, or a record read directly from the same partition."""
        attempt = retry_attempt(msg.headers) if is_retry else Attempt(msg.topic, msg.partition, msg.offset)
        if attempt is None:
            error = NotARetryRecord(f"no valid {h.ATTEMPT}/{h.ORIGINAL_TOPIC}/... headers: not written by this app")
            await self._dead_letter(msg, state, Attempt(msg.topic, msg.partition, msg.offset),
                                    h.NOT_A_RETRY_RECORD, error, _label(None, msg))
            return
        if is_retry:
            await self._wait_until_due(attempt)
            await self._wait_until_original_applied(msg, state, attempt)
            if attempt.origin_key not in state.pending:
                log.debug("skip %s: stale retry copy of %s, already resolved", _label(None, msg), attempt.origin_key)
                state.mark_applied(msg.topic, msg.offset)
                return

        record: dict | None = None
        try:
            record = await self.codec.decode(msg.value)
            micros = process_order(validate(record), attempt.number, self.failures)
        except (AvroCodecError, InvalidOrder, SimulatedFailure) as error:
            reason = dead_letter_reason(error, attempt.number, self.max_retries)
            if reason is None:
                await self._retry(msg, state, attempt, error, _label(record, msg))
            else:
                await self._dead_letter(msg, state, attempt, reason, error, _label(record, msg))
            return
        self._count(msg, state, attempt, record, micros, batch)

    async def _wait_until_due(self, attempt: Attempt) -> None:
        """Hold a retry copy until its not-before time."""
        while (wait_ms := attempt.not_before_ms - self.now_ms()) > 0:
            await self.sleep(wait_ms / 1000)

    async def _wait_until_original_applied(self, msg, state: PartitionState, attempt: Attempt) -> None:
        """Hold a retry copy until the agent that sent it has recorded its original as applied.

        Only then does "not pending" mean "already resolved": a copy that raced ahead
        of that change, or was sent just before a crash and is replayed, must not be
        taken for stale. Both agents share the partition's state object, so the
        change shows here as soon as it is made.
        """
        if attempt.topic != self.orders_topic or attempt.partition != msg.partition:
            return
        waited_s, report_at = 0.0, ORIGINAL_WAIT_REPORT_S
        while True:
            expected = state.next_offset(attempt.topic)
            if expected is not None and attempt.offset < expected:
                return
            if waited_s >= report_at:
                log.warning("retry copy of %s still waits for its original to be applied", attempt.origin_key)
                report_at += ORIGINAL_WAIT_REPORT_S
            await self.sleep(ORIGINAL_POLL_S)
            waited_s += ORIGINAL_POLL_S

    def _count(self, msg, state: PartitionState, attempt: Attempt, record: dict, micros: int, batch: _Batch) -> None:
        state.count(micros)
        state.pending.discard(attempt.origin_key)
        state.mark_applied(msg.topic, msg.offset)
        batch.counted_timestamps.append(msg.timestamp)
        if self.activity.record(PROCESSED):
            summary = self.summary()
            log.info("processed %s %s %.2f %s x%s (attempt %d) | orders=%d average=%.2f", record["orderId"],
                     record["product"], record["price"], record.get("currency", "?"), record.get("quantity", "?"),
                     attempt.number, summary["orders"], summary["average"])

    async def _retry(self, msg, state: PartitionState, attempt: Attempt, error: Exception, label: str) -> None:
        # The record's timestamp is the failure time its not-before counts from.
        now_ms = self.now_ms()
        await self.outputs.send_retry(key=msg.key, value=msg.value, partition=attempt.partition,
                                      timestamp_s=now_ms / 1000,
                                      headers=retry_headers(attempt, error, now_ms, self.retry_delay_s))
        state.pending.add(attempt.origin_key)
        state.retries += 1
        state.mark_applied(msg.topic, msg.offset)
        self.metrics.retried()
        if self.activity.record(RETRIED):
            log.warning("retry %s: attempt %d of %d failed (%s); next in %.1fs", label, attempt.number,
                        self.max_retries + 1, error, self.retry_delay_s)

    async def _dead_letter(self, msg, state: PartitionState, attempt: Attempt, reason: str, error: Exception,
                           label: str) -> None:
        await self.outputs.send_dead_letter(key=msg.key, value=msg.value,
                                            headers=dlq_headers(attempt, reason, error, self.now_ms()))
        state.dead_letters += 1
        state.pending.discard(attempt.origin_key)
        state.mark_applied(msg.topic, msg.offset)
        self.metrics.dead_lettered(reason)
        if self.activity.record(DEAD_LETTERED):
            log.error("dead-letter %s after %d attempt(s): %s (%s)", label, attempt.number, reason, describe(error))
