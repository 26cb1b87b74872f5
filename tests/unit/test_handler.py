"""The processing rules, driven with fakes: no broker, no registry, no Faust worker."""
from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from avro_codec import AvroRecordCodec, load_schema
from orders.domain import headers as h
from orders.domain.order import FailureSimulator
from orders.ops.activity_log import ActivityLog
from orders.ops.metrics import OrderMetrics
from orders.processing.handler import OrderHandler
from orders.processing.live_states import LiveStates

from .fakes import InMemorySchemaCache

SCHEMA = load_schema(Path(__file__).resolve().parents[2] / "schemas" / "order-v2.avsc")
ORDERS, RETRY = "orders", "orders-retry"
NOW_S = 1_800_000_000.0


class FakeOutputs:
    def __init__(self) -> None:
        self.retries: list[dict] = []
        self.dead_letters: list[dict] = []

    async def send_retry(self, **record) -> None:
        self.retries.append(record)

    async def send_dead_letter(self, **record) -> None:
        self.dead_letters.append(record)


class Clock:
    """Wall-clock time that moves only when the handler sleeps."""

    def __init__(self) -> None:
        self.now = NOW_S
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Rig:
    """A handler with fakes around it, and helpers to feed it records."""

    def __init__(self, *, failures: dict | None = None, max_retries: int = 2, earliest: int = 0,
                 missed: list | None = None) -> None:
        self.codec = AvroRecordCodec(InMemorySchemaCache(), SCHEMA, subject="orders-value")
        self.table: dict = {}
        self.states = LiveStates(self.table)
        self.outputs = FakeOutputs()
        self.clock = Clock()
        self.missed = missed or []
        self.missed_reads: list[tuple] = []
        self.handler = OrderHandler(
            codec=self.codec, states=self.states, outputs=self.outputs,
            failures=FailureSimulator(0.0, forced=failures or {}),
            metrics=OrderMetrics(CollectorRegistry()), activity=ActivityLog(0),
            summary=lambda: {"orders": 0, "average": 0.0}, orders_topic=ORDERS, max_retries=max_retries,
            retry_delay_s=2.0, earliest_offset=self._earliest(earliest), read_missed=self._read_missed,
            clock=self.clock, sleep=self.clock.sleep)

    @staticmethod
    def _earliest(offset: int):
        async def earliest_offset(topic: str, partition: int) -> int:
            return offset
        return earliest_offset

    async def _read_missed(self, topic, partition, start, end):
        self.missed_reads.append((topic, partition, start, end))
        return [m for m in self.missed if start <= m.offset < end]

    def order(self, order_id: str, offset: int, price: float = 10.0, partition: int = 0, **fields):
        value = self.codec.encode({"orderId": order_id, "product": "p", "price": price, **fields})
        return message(ORDERS, partition, offset, order_id.encode(), value)

    def run(self, *messages, is_retry: bool = False) -> None:
        events = [SimpleNamespace(message=m) for m in messages]
        asyncio.run(self.handler.handle_batch(events, is_retry=is_retry))

    def state(self, partition: int = 0):
        return self.states.peek(partition)


def message(topic, partition, offset, key, value, headers=(), timestamp=NOW_S - 1):
    return SimpleNamespace(topic=topic, partition=partition, offset=offset, key=key, value=value,
                           headers=list(headers), timestamp=timestamp)


def retry_copy(rig: Rig, original, offset: int, error: Exception = RuntimeError("flaky"), attempt: int = 1,
               failed_at_s: float = NOW_S):
    """The retry record the handler sends for `original`'s `attempt`, as it lands on the retry topic."""
    headers = h.retry_headers(h.Attempt(original.topic, original.partition, original.offset, attempt), error,
                              int(failed_at_s * 1000), 2.0)
    return message(RETRY, original.partition, offset, original.key, original.value, headers)


def test_a_valid_order_is_counted_and_its_offset_applied():
    rig = Rig()
    rig.run(rig.order("o-1", 0, price=12.5))
    state = rig.state()
    assert (state.orders, state.total_micros, state.applied) == (1, 12_500_000, {ORDERS: 0})
    assert rig.outputs.retries == rig.outputs.dead_letters == []


def test_a_record_at_or_below_the_applied_offset_is_a_replay_and_changes_nothing():
    rig = Rig()
    first, second = rig.order("o-1", 0), rig.order("o-2", 1)
    rig.run(first, second)
    before = rig.state().to_value()
    rig.run(first, second)
    assert rig.state().to_value() == before


def test_records_the_consumer_skipped_are_read_and_applied_first():
    skipped = [Rig().order(f"o-{i}", i) for i in range(1, 4)]
    rig = Rig(missed=skipped)
    rig.run(rig.order("o-0", 0))
    rig.run(rig.order("o-4", 4))
    assert rig.missed_reads == [(ORDERS, 0, 1, 4)]
    assert (rig.state().orders, rig.state().applied[ORDERS]) == (5, 4)


def test_the_first_record_of_a_partition_starts_at_the_earliest_offset_still_in_the_log():
    rig = Rig(earliest=7)
    rig.run(rig.order("o-7", 7))
    assert rig.missed_reads == []
    assert rig.state().orders == 1


@pytest.mark.parametrize("value, price, reason, words", [
    (b"not avro at all", None, h.UNDECODABLE, "wrong-magic-byte"),
    (None, -1.0, h.INVALID_ORDER, "negative"),
    (None, float("nan"), h.INVALID_ORDER, "not finite"),
])
def test_an_order_that_can_never_succeed_is_dead_lettered_at_once_with_its_bytes(value, price, reason, words):
    rig = Rig()
    original = rig.order("o-bad", 0, price=price) if value is None else message(ORDERS, 0, 0, b"o-bad", value)
    rig.run(original)
    (dead,) = rig.outputs.dead_letters
    headers = dict(dead["headers"])
    assert dead["value"] == original.value and dead["key"] == b"o-bad"
    assert headers[h.DLQ_REASON] == reason.encode() and words in headers[h.ERROR_MESSAGE].decode()
    assert headers[h.ATTEMPTS] == b"1"
    assert rig.outputs.retries == []
    assert (rig.state().dead_letters, rig.state().orders, rig.state().applied[ORDERS]) == (1, 0, 0)


def test_a_failed_first_attempt_goes_to_retry_on_the_same_partition_due_after_the_delay():
    rig = Rig(failures={"o-1": 1})
    original = rig.order("o-1", 5, partition=2)
    rig.handler.states.get(2).mark_applied(ORDERS, 4)
    rig.run(original)
    (retry,) = rig.outputs.retries
    headers = dict(retry["headers"])
    assert retry["partition"] == 2 and retry["value"] == original.value
    assert headers[h.ATTEMPT] == b"2" and int(headers[h.NOT_BEFORE_MS]) == int(NOW_S * 1000) + 2000
    assert (headers[h.ORIGINAL_PARTITION], headers[h.ORIGINAL_OFFSET]) == (b"2", b"5")
    state = rig.state(2)
    assert (state.retries, state.orders, state.pending) == (1, 0, {f"{ORDERS}/2/5"})


def test_a_retry_copy_waits_until_it_is_due_then_counts_the_order_once():
    rig = Rig(failures={"o-1": 1})
    original = rig.order("o-1", 0)
    rig.run(original)
    rig.run(retry_copy(rig, original, 0), is_retry=True)
    assert sum(rig.clock.slept) == pytest.approx(2.0)
    state = rig.state()
    assert (state.orders, state.pending, state.applied[RETRY]) == (1, set(), 0)


def test_an_order_failing_every_attempt_is_dead_lettered_after_max_retries():
    rig = Rig(failures={"o-1": None}, max_retries=1)
    original = rig.order("o-1", 0)
    rig.run(original)
    rig.run(retry_copy(rig, original, 0), is_retry=True)
    (dead,) = rig.outputs.dead_letters
    assert dict(dead["headers"])[h.DLQ_REASON] == h.RETRIES_EXHAUSTED.encode()
    assert dict(dead["headers"])[h.ATTEMPTS] == b"2"
    assert (rig.state().orders, rig.state().dead_letters, rig.state().pending) == (0, 1, set())


def test_a_record_on_the_retry_topic_without_this_apps_headers_is_dead_lettered():
    rig = Rig()
    rig.run(message(RETRY, 0, 0, b"x", b"whatever"), is_retry=True)
    (dead,) = rig.outputs.dead_letters
    assert dict(dead["headers"])[h.DLQ_REASON] == h.NOT_A_RETRY_RECORD.encode()
    assert rig.state().applied == {RETRY: 0}


def test_a_second_copy_of_a_resolved_retry_is_stale_and_skipped():
    rig = Rig(failures={"o-1": 1})
    original = rig.order("o-1", 0)
    rig.run(original)
    copy = retry_copy(rig, original, 0)
    rig.run(copy, retry_copy(rig, original, 1), is_retry=True)
    assert (rig.state().orders, rig.state().applied[RETRY]) == (1, 1)


def test_the_handler_module_imports_on_its_own_without_the_app():
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", "import orders.processing.handler, sys; "
                           "assert 'orders.app' not in sys.modules"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
