"""The one processing path behind both agents: decode, validate, process, route.

Ordering rules that keep the aggregate exact across crashes:
- the table value for a partition is read and written with no `await` in
  between, so the two agents never overwrite each other's update;
- a retry or dead-letter record is delivered (broker ack) before the table
  records the source offset as applied, so a crash in between replays the
  record instead of losing it;
- a retry copy is acknowledged before its original is marked pending and
  applied (one write); a copy that arrives before that waits, so it is never
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

from faust.types import TP, EventT

from app import app, current_summary, dlq_topic, failures, order_codec, retry_topic, settings, stats_table
from app import order_metrics
from avro_codec import AvroCodecError
from kafka_security import aiokafka_config

from .missed_records import read_range
from .order_logic import InvalidOrder, SimulatedFailure, process_order, validate
from .partition_state import PartitionState
from .retry_headers import (ATTEMPT, ORIGINAL_TOPIC, Attempt, describe, dlq_headers, retry_attempt,
                            retry_headers)

log = logging.getLogger("orders")

UNDECODABLE = "undecodable"
INVALID = "invalid-order"
EXHAUSTED = "retries-exhausted"
FOREIGN = "not-a-retry-record"
order_metrics.declare_dead_letter_reasons(UNDECODABLE, INVALID, EXHAUSTED, FOREIGN)


class NotARetryRecord(ValueError):
    """A record on the retry topic that this app did not write."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _state(partition: int) -> PartitionState:
    return PartitionState.from_value(stats_table.get(partition))


def _save(partition: int, state: PartitionState) -> None:
    stats_table[partition] = state.to_value()


def _label(record: dict | None, msg) -> str:
    """How logs name a record: its orderId when it has one, and where it came from."""
    order_id = record.get("orderId") if isinstance(record, dict) else None
    return f"{order_id or '<no orderId>'} ({msg.topic}[{msg.partition}]@{msg.offset})"


async def _next_offset(msg) -> int:
    expected = _state(msg.partition).next_offset(msg.topic)
    if expected is not None:
        return expected
    tp = TP(msg.topic, msg.partition)
    return (await app.consumer.earliest_offsets(tp))[tp]


async def handle(event: EventT, *, is_retry: bool) -> None:
    """Apply the event's record, after any records of its partition that the consumer skipped."""
    msg = event.message
    expected = await _next_offset(msg)
    if msg.offset < expected:
        log.info("skip %s[%d]@%d: applied before a restart", msg.topic, msg.partition, msg.offset)
        return
    if msg.offset > expected:
        log.warning("%s[%d]: consumer delivered offset %d but %d was next; reading the records in between",
                    msg.topic, msg.partition, msg.offset, expected)
        missed = await read_range(aiokafka_config(settings), msg.topic, msg.partition, expected, msg.offset)
        log.warning("%s[%d]: applying %d skipped record(s) first", msg.topic, msg.partition, len(missed))
        for record in missed:
            await _apply(record, is_retry)
    await _apply(msg, is_retry)


async def _apply(msg, is_retry: bool) -> None:
    """Process one record: the event's message, or a record read directly from the same partition."""
    attempt = retry_attempt(msg.headers) if is_retry else Attempt(msg.topic, msg.partition, msg.offset)
    if attempt is None:
        error = NotARetryRecord(f"no valid {ATTEMPT}/{ORIGINAL_TOPIC}/... headers: not written by this app")
        await _send_dead_letter(msg, Attempt(msg.topic, msg.partition, msg.offset), FOREIGN, error, _label(None, msg))
        return

    while is_retry and (wait_ms := attempt.not_before_ms - _now_ms()) > 0:
        await asyncio.sleep(wait_ms / 1000)
    if is_retry:
        await _wait_until_original_applied(msg, attempt)

    record: dict | None = None
    error: Exception | None = None
    try:
        record = await order_codec.decode(msg.value)
        micros = process_order(validate(record), attempt.number, failures)
    except (AvroCodecError, InvalidOrder, SimulatedFailure) as exc:
        error = exc
    label = _label(record, msg)

    # From here to each _save, no await: the read-modify-write of the partition's state is atomic.
    state = _state(msg.partition)
    if is_retry and attempt.origin_key not in state.pending:
        log.info("skip %s: stale retry copy of %s, already resolved", label, attempt.origin_key)
        state.mark_applied(msg.topic, msg.offset)
        _save(msg.partition, state)
        return

    if error is None:
        state.count(micros)
        state.pending.discard(attempt.origin_key)
        state.mark_applied(msg.topic, msg.offset)
        _save(msg.partition, state)
        order_metrics.processed(msg.timestamp)
        summary = current_summary()
        log.info("processed %s %s %.2f %s x%s (attempt %d) | orders=%d average=%.2f", record["orderId"],
                 record["product"], record["price"], record.get("currency", "?"), record.get("quantity", "?"),
                 attempt.number, summary["orders"], summary["average"])
    elif isinstance(error, SimulatedFailure) and attempt.number <= settings.max_retries:
        await _send_retry(msg, attempt, error, label)
    else:
        reason = EXHAUSTED if isinstance(error, SimulatedFailure) else \
            UNDECODABLE if isinstance(error, AvroCodecError) else INVALID
        await _send_dead_letter(msg, attempt, reason, error, label)


async def _wait_until_original_applied(msg, attempt: Attempt) -> None:
    """Hold a retry copy until the agent that sent it has recorded its original as applied.

    Only then does "not pending" mean "already resolved": a copy that raced ahead
    of that write, or was sent just before a crash and is replayed, must not be
    taken for stale.
    """
    if attempt.topic != settings.orders_topic or attempt.partition != msg.partition:
        return
    for polls in itertools.count():
        expected = _state(msg.partition).next_offset(attempt.topic)
        if expected is not None and attempt.offset < expected:
            return
        if polls and polls % 600 == 0:
            log.warning("retry copy of %s still waits for its original to be applied", attempt.origin_key)
        await asyncio.sleep(0.05)


async def _send_retry(msg, attempt: Attempt, error: Exception, label: str) -> None:
    # The record's timestamp is the failure time its not-before counts from.
    now_ms = _now_ms()
    sent = await retry_topic.send(key=msg.key, value=msg.value, partition=attempt.partition, timestamp=now_ms / 1000,
                                  headers=retry_headers(attempt, error, now_ms, settings.retry_delay_seconds))
    await sent

    state = _state(msg.partition)
    state.pending.add(attempt.origin_key)
    state.retries += 1
    state.mark_applied(msg.topic, msg.offset)
    _save(msg.partition, state)
    order_metrics.retried()
    log.warning("retry %s: attempt %d of %d failed (%s); next in %.1fs", label, attempt.number,
                settings.max_retries + 1, error, settings.retry_delay_seconds)


async def _send_dead_letter(msg, attempt: Attempt, reason: str, error: Exception, label: str) -> None:
    sent = await dlq_topic.send(key=msg.key, value=msg.value, headers=dlq_headers(attempt, reason, error, _now_ms()))
    await sent

    state = _state(msg.partition)
    state.dead_letters += 1
    state.pending.discard(attempt.origin_key)
    state.mark_applied(msg.topic, msg.offset)
    _save(msg.partition, state)
    order_metrics.dead_lettered(reason)
    log.error("dead-letter %s after %d attempt(s): %s (%s)", label, attempt.number, reason, describe(error))
