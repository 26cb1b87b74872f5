"""The one processing path behind both agents: decode, validate, process, route.

Agents hand over their events a batch at a time (`stream.take_events`). A batch
applies its records in order to the in-memory states of their partitions
(`LiveStates`); the states are written to the table once per commit, just
before Faust commits the offsets: one changelog record per changed partition
per commit instead of one per order.

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
import itertools
import logging
import time
from typing import Sequence

from faust.types import TP, EventT

from app import (app, current_summary, dlq_topic, failures, live_states, order_codec, order_metrics, retry_topic,
                 settings)
from avro_codec import AvroCodecError
from kafka_security import aiokafka_config

from .activity_log import DEAD_LETTERED, PROCESSED, RETRIED, ActivityLog
from .missed_records import read_range
from .order_logic import InvalidOrder, SimulatedFailure, process_order, validate
from .partition_state import PartitionState
from .retry_headers import (ATTEMPT, ORIGINAL_TOPIC, Attempt, describe, dlq_headers, retry_attempt,
                            retry_headers)

log = logging.getLogger("orders")
activity = ActivityLog(settings.order_log_lines_per_second)

UNDECODABLE = "undecodable"
INVALID = "invalid-order"
EXHAUSTED = "retries-exhausted"
FOREIGN = "not-a-retry-record"
order_metrics.declare_dead_letter_reasons(UNDECODABLE, INVALID, EXHAUSTED, FOREIGN)


class NotARetryRecord(ValueError):
    """A record on the retry topic that this app did not write."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _label(record: dict | None, msg) -> str:
    """How logs name a record: its orderId when it has one, and where it came from."""
    order_id = record.get("orderId") if isinstance(record, dict) else None
    return f"{order_id or '<no orderId>'} ({msg.topic}[{msg.partition}]@{msg.offset})"


class _Batch:
    """What a batch reports once it is applied: when its counted orders were produced, which replays it skipped."""

    def __init__(self) -> None:
        self.counted_timestamps: list[float | None] = []
        self.replays: dict[tuple[str, int], list[int]] = {}  # (topic, partition) -> skipped offsets


async def handle_batch(events: Sequence[EventT], *, is_retry: bool) -> None:
    """Apply a batch of events in order to the partitions' states (written to the table before the next commit)."""
    batch = _Batch()
    for event in events:
        msg = event.message
        if await _handle(msg, live_states.get(msg.partition), is_retry, batch):
            live_states.changed(msg.partition, event)
    for timestamp in batch.counted_timestamps:
        order_metrics.processed(timestamp)
    for (topic, partition), offsets in batch.replays.items():
        log.info("skip %d record(s) of %s[%d] (offsets %d-%d): applied before a restart",
                 len(offsets), topic, partition, offsets[0], offsets[-1])


async def _handle(msg, state: PartitionState, is_retry: bool, batch: _Batch) -> bool:
    """Apply the record, after any records of its partition that the consumer skipped; False for a replay."""
    expected = state.next_offset(msg.topic)
    if expected is None:
        tp = TP(msg.topic, msg.partition)
        expected = (await app.consumer.earliest_offsets(tp))[tp]
    if msg.offset < expected:
        batch.replays.setdefault((msg.topic, msg.partition), []).append(msg.offset)
        return False
    if msg.offset > expected:
        log.warning("%s[%d]: consumer delivered offset %d but %d was next; reading the records in between",
                    msg.topic, msg.partition, msg.offset, expected)
        missed = await read_range(aiokafka_config(settings), msg.topic, msg.partition, expected, msg.offset)
        log.warning("%s[%d]: applying %d skipped record(s) first", msg.topic, msg.partition, len(missed))
        for record in missed:
            await _apply(record, state, is_retry, batch)
    await _apply(msg, state, is_retry, batch)
    return True


async def _apply(msg, state: PartitionState, is_retry: bool, batch: _Batch) -> None:
    """Process one record: the event's message, or a record read directly from the same partition."""
    attempt = retry_attempt(msg.headers) if is_retry else Attempt(msg.topic, msg.partition, msg.offset)
    if attempt is None:
        error = NotARetryRecord(f"no valid {ATTEMPT}/{ORIGINAL_TOPIC}/... headers: not written by this app")
        await _send_dead_letter(msg, state, Attempt(msg.topic, msg.partition, msg.offset), FOREIGN, error,
                                _label(None, msg))
        return

    if is_retry:
        while (wait_ms := attempt.not_before_ms - _now_ms()) > 0:
            await asyncio.sleep(wait_ms / 1000)
        await _wait_until_original_applied(msg, state, attempt)
        if attempt.origin_key not in state.pending:
            log.debug("skip %s: stale retry copy of %s, already resolved", _label(None, msg), attempt.origin_key)
            state.mark_applied(msg.topic, msg.offset)
            return

    record: dict | None = None
    error: Exception | None = None
    try:
        record = await order_codec.decode(msg.value)
        micros = process_order(validate(record), attempt.number, failures)
    except (AvroCodecError, InvalidOrder, SimulatedFailure) as exc:
        error = exc

    if error is None:
        state.count(micros)
        state.pending.discard(attempt.origin_key)
        state.mark_applied(msg.topic, msg.offset)
        batch.counted_timestamps.append(msg.timestamp)
        if activity.record(PROCESSED):
            summary = current_summary()
            log.info("processed %s %s %.2f %s x%s (attempt %d) | orders=%d average=%.2f", record["orderId"],
                     record["product"], record["price"], record.get("currency", "?"), record.get("quantity", "?"),
                     attempt.number, summary["orders"], summary["average"])
    elif isinstance(error, SimulatedFailure) and attempt.number <= settings.max_retries:
        await _send_retry(msg, state, attempt, error, _label(record, msg))
    else:
        reason = EXHAUSTED if isinstance(error, SimulatedFailure) else \
            UNDECODABLE if isinstance(error, AvroCodecError) else INVALID
        await _send_dead_letter(msg, state, attempt, reason, error, _label(record, msg))


async def _wait_until_original_applied(msg, state: PartitionState, attempt: Attempt) -> None:
    """Hold a retry copy until the agent that sent it has recorded its original as applied.

    Only then does "not pending" mean "already resolved": a copy that raced ahead
    of that change, or was sent just before a crash and is replayed, must not be
    taken for stale. Both agents share the partition's state object, so the
    change shows here as soon as it is made.
    """
    if attempt.topic != settings.orders_topic or attempt.partition != msg.partition:
        return
    for polls in itertools.count():
        expected = state.next_offset(attempt.topic)
        if expected is not None and attempt.offset < expected:
            return
        if polls and polls % 600 == 0:
            log.warning("retry copy of %s still waits for its original to be applied", attempt.origin_key)
        await asyncio.sleep(0.05)


async def _send_retry(msg, state: PartitionState, attempt: Attempt, error: Exception, label: str) -> None:
    # The record's timestamp is the failure time its not-before counts from.
    now_ms = _now_ms()
    sent = await retry_topic.send(key=msg.key, value=msg.value, partition=attempt.partition, timestamp=now_ms / 1000,
                                  headers=retry_headers(attempt, error, now_ms, settings.retry_delay_seconds))
    await sent

    state.pending.add(attempt.origin_key)
    state.retries += 1
    state.mark_applied(msg.topic, msg.offset)
    order_metrics.retried()
    if activity.record(RETRIED):
        log.warning("retry %s: attempt %d of %d failed (%s); next in %.1fs", label, attempt.number,
                    settings.max_retries + 1, error, settings.retry_delay_seconds)


async def _send_dead_letter(msg, state: PartitionState, attempt: Attempt, reason: str, error: Exception,
                            label: str) -> None:
    sent = await dlq_topic.send(key=msg.key, value=msg.value, headers=dlq_headers(attempt, reason, error, _now_ms()))
    await sent

    state.dead_letters += 1
    state.pending.discard(attempt.origin_key)
    state.mark_applied(msg.topic, msg.offset)
    order_metrics.dead_lettered(reason)
    if activity.record(DEAD_LETTERED):
        log.error("dead-letter %s after %d attempt(s): %s (%s)", label, attempt.number, reason, describe(error))


@app.timer(settings.log_summary_seconds)
async def log_activity_summary() -> None:
    line = activity.summary(current_summary())
    if line:
        log.info(line)
