"""The processing rules, driven with fakes: no broker, no registry, no Faust worker."""
from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from avro_codec import AvroRecordCodec, load_schema
from orders.domain import headers as h
from orders.domain.order import FailureSimulator
from orders.domain.partition_state import PartitionState
from orders.domain.retry_policy import RetryPolicy
from orders.kafka.transactions import GroupMember
from orders.processing.handler import OrderHandler
from orders.processing.partition import DEAD_LETTERED, PROCESSED, RETRIED, Partition

from .fakes import InMemorySchemaCache

SCHEMA = load_schema(Path(__file__).resolve().parents[2] / "schemas" / "order-v2.avsc")
ORDERS, RETRY, DLQ = "orders", "orders-retry", "orders-dlq"
APP_ID = "orders-app"
NOW_S = 1_800_000_000.0


class Outbox:
    """What the handler put in a partition's outbox for its next commit, as dicts."""

    def __init__(self, part: Partition) -> None:
        self.part = part

    @property
    def sent(self) -> list[dict]:
        return [record._asdict() for record in self.part.outbox]

    def to(self, topic: str) -> list[dict]:
        return [record for record in self.sent if record["topic"] == topic]


def message(topic, partition, offset, key, value, headers=(), timestamp=NOW_S - 0.25):
    return SimpleNamespace(topic=topic, partition=partition, offset=offset, key=key, value=value,
                           headers=list(headers), timestamp=timestamp)


class Rig:
    """A handler with fakes around it, one partition, and helpers to feed it records."""

    def __init__(self, *, failures: dict | None = None, max_retries: int = 2, earliest: int = 0,
                 on_topic: list | None = None, dead_letter_bytes: int = 2_097_152, partition: int = 0) -> None:
        self.codec = AvroRecordCodec(InMemorySchemaCache(), SCHEMA, subject="orders-value")
        self.on_topic = on_topic or []  # records a direct read finds
        self.reads: list[tuple] = []
        self.asked_earliest: list[tuple[str, int]] = []  # (topic, partition) of each earliest-offset read
        self.part = Partition(partition, PartitionState(), GroupMember(APP_ID, 1, "member-1"))
        self.now = NOW_S
        self.policy = RetryPolicy(max_retries=max_retries, delay_s=2.0, not_before_allowance_s=1.0, app_id=APP_ID,
                                  orders_topic=ORDERS)
        self.handler = OrderHandler(
            codec=self.codec, failures=FailureSimulator(0.0, forced=failures or {}), policy=self.policy,
            retry_topic=RETRY, dlq_topic=DLQ, dead_letter_bytes=dead_letter_bytes,
            earliest_offset=self._earliest(earliest), read_page=self._read, clock=lambda: self.now)

    def _earliest(self, offset: int):
        async def earliest_offset(topic: str, partition: int) -> int:
            self.asked_earliest.append((topic, partition))
            return offset
        return earliest_offset

    async def _read(self, topic, partition, start, end):
        self.reads.append((topic, partition, start, end))
        return [m for m in self.on_topic if m.topic == topic and start <= m.offset < end]

    def order(self, order_id: str, offset: int, price: float = 10.0, **fields):
        value = self.codec.encode({"orderId": order_id, "product": "p", "price": price, **fields})
        return message(ORDERS, self.part.number, offset, order_id.encode(), value)

    def apply(self, *messages, is_retry: bool = False) -> list[bool]:
        async def run():
            return [await self.handler.apply(self.part, m, is_retry=is_retry) for m in messages]
        return asyncio.run(run())

    @property
    def state(self) -> PartitionState:
        return self.part.state

    @property
    def output(self) -> Outbox:
        return Outbox(self.part)

    def copies(self, start_offset: int = 0) -> list:
        """The retry copies queued so far, as the consumer will read them from the retry topic."""
        return [message(RETRY, r["partition"], start_offset + i, r["key"], r["value"], r["headers"])
                for i, r in enumerate(self.output.to(RETRY))]


def kinds(part: Partition) -> list[str]:
    return [outcome.kind for outcome in part.outcomes]


# -- orders -------------------------------------------------------------------

def test_a_valid_order_is_counted_and_its_offset_applied():
    rig = Rig()
    assert rig.apply(rig.order("o-1", 0, price=12.5)) == [True]
    assert (rig.state.orders, rig.state.total_micros, rig.state.applied) == (1, 12_500_000, {ORDERS: 0})
    assert rig.output.sent == []
    (outcome,) = rig.part.outcomes
    assert (outcome.kind, outcome.latency_s, outcome.order.order_id) == (PROCESSED, 0.25, "o-1")


def test_a_record_at_or_below_the_applied_offset_is_a_replay_and_changes_nothing():
    rig = Rig()
    first, second = rig.order("o-1", 0), rig.order("o-2", 1)
    rig.apply(first, second)
    before = rig.state.to_value()
    assert rig.apply(first, second) == [False, False]
    assert rig.state.to_value() == before and len(rig.part.outcomes) == 2


def test_records_the_consumer_skipped_are_read_and_applied_first():
    skipped = [Rig().order(f"o-{i}", i) for i in range(1, 4)]
    rig = Rig(on_topic=skipped)
    rig.apply(rig.order("o-0", 0), rig.order("o-4", 4))
    assert rig.reads == [(ORDERS, 0, 1, 4)]
    assert (rig.state.orders, rig.state.applied[ORDERS]) == (5, 4)


def test_a_gap_of_transaction_markers_reads_nothing_and_goes_on():
    rig = Rig()
    rig.apply(rig.order("o-0", 0), rig.order("o-2", 2))
    assert rig.reads == [(ORDERS, 0, 1, 2)]
    assert (rig.state.orders, rig.state.applied[ORDERS]) == (2, 2)


def test_the_first_record_of_a_partition_starts_at_the_earliest_offset_still_in_the_log():
    rig = Rig(earliest=7)
    rig.apply(rig.order("o-7", 7))
    assert rig.reads == [] and rig.state.orders == 1
    assert rig.asked_earliest == [(ORDERS, 0)]


def test_a_first_record_at_offset_zero_is_applied_without_asking_the_broker_where_the_log_starts():
    rig = Rig(earliest=0)
    rig.apply(rig.order("o-0", 0), rig.order("o-1", 1))
    assert rig.asked_earliest == [] and rig.reads == []
    assert (rig.state.orders, rig.state.applied[ORDERS]) == (2, 1)


@pytest.mark.parametrize("value, price, reason, words", [
    (b"not avro at all", None, h.UNDECODABLE, "wrong-magic-byte"),
    (None, -1.0, h.INVALID_ORDER, "negative"),
    (None, float("nan"), h.INVALID_ORDER, "not finite"),
])
def test_an_order_that_can_never_succeed_is_dead_lettered_at_once_with_its_bytes(value, price, reason, words):
    rig = Rig()
    original = rig.order("o-bad", 0, price=price) if value is None else message(ORDERS, 0, 0, b"o-bad", value)
    rig.apply(original)
    (dead,) = rig.output.to(DLQ)
    headers = dict(dead["headers"])
    assert dead["value"] == original.value and dead["key"] == b"o-bad"
    assert headers[h.DLQ_REASON] == reason.encode() and words in headers[h.ERROR_MESSAGE].decode()
    assert headers[h.ATTEMPTS] == b"1" and headers[h.ORIGINAL_OFFSET] == b"0"
    assert rig.output.to(RETRY) == []
    assert (rig.state.dead_letters, rig.state.orders, rig.state.applied[ORDERS]) == (1, 0, 0)
    assert kinds(rig.part) == [DEAD_LETTERED] and rig.part.outcomes[0].reason == reason


def test_a_dead_letter_larger_than_the_dlq_takes_is_cut_to_fit_and_the_partition_goes_on():
    rig = Rig(dead_letter_bytes=10_000)
    huge = message(ORDERS, 0, 0, b"huge", b"\x00" + b"x" * 50_000)
    rig.apply(huge, rig.order("o-1", 1))
    (dead,) = rig.output.to(DLQ)
    headers = dict(dead["headers"])
    assert headers[h.DLQ_REASON] == b"too-large" and headers[h.ORIGINAL_VALUE_BYTES] == b"50001"
    assert h.record_bytes(dead["key"], dead["value"], dead["headers"]) <= 10_000
    assert huge.value.startswith(dead["value"])
    assert (rig.state.dead_letters, rig.state.orders) == (1, 1)
    assert rig.part.outcomes[0].reason == h.TOO_LARGE


def test_a_failed_first_attempt_goes_to_retry_on_the_same_partition_numbered_and_due_after_the_delay():
    rig = Rig(failures={"o-1": 1}, partition=2)
    rig.state.mark_applied(ORDERS, 4)
    original = rig.order("o-1", 5)
    rig.apply(original)
    (retry,) = rig.output.to(RETRY)
    headers = dict(retry["headers"])
    assert retry["partition"] == 2 and retry["value"] == original.value and retry["key"] == b"o-1"
    assert retry["timestamp_ms"] == int(NOW_S * 1000)
    assert headers[h.ATTEMPT] == b"2" and int(headers[h.NOT_BEFORE_MS]) == int(NOW_S * 1000) + 2000
    assert (headers[h.ORIGINAL_PARTITION], headers[h.ORIGINAL_OFFSET]) == (b"2", b"5")
    assert (headers[h.RETRY_SEQ], headers[h.RETRY_APP_ID]) == (b"1", APP_ID.encode())
    assert (rig.state.retries, rig.state.in_retry, rig.state.orders) == (1, 1, 0)
    assert rig.handler.due_in_ms(rig.part, rig.copies()[0], first_seen_ms=int(NOW_S * 1000)) == 2000


# -- retry copies ---------------------------------------------------------------

def test_a_retry_copy_counts_the_order_once_and_resolves_its_number():
    rig = Rig(failures={"o-1": 1})
    rig.apply(rig.order("o-1", 0))
    (copy,) = rig.copies()
    rig.apply(copy, is_retry=True)
    assert (rig.state.orders, rig.state.in_retry, rig.state.retry_seq_done, rig.state.applied[RETRY]) == (1, 0, 1, 0)
    assert kinds(rig.part) == [RETRIED, PROCESSED] and rig.part.outcomes[1].attempt == 2


def test_an_order_failing_every_attempt_is_dead_lettered_after_max_retries():
    rig = Rig(failures={"o-1": None}, max_retries=1)
    rig.apply(rig.order("o-1", 0))
    rig.apply(*rig.copies(), is_retry=True)
    (dead,) = rig.output.to(DLQ)
    assert dict(dead["headers"])[h.DLQ_REASON] == h.RETRIES_EXHAUSTED.encode()
    assert dict(dead["headers"])[h.ATTEMPTS] == b"2"
    assert (rig.state.orders, rig.state.dead_letters, rig.state.in_retry) == (0, 1, 0)


def test_a_second_copy_with_a_resolved_number_is_a_duplicate_and_skipped():
    rig = Rig(failures={"o-1": 1})
    rig.apply(rig.order("o-1", 0))
    (copy,) = rig.copies()
    duplicate = message(RETRY, 0, 1, copy.key, copy.value, copy.headers)
    assert rig.apply(copy, duplicate, is_retry=True) == [True, True]
    assert (rig.state.orders, rig.state.applied[RETRY], rig.output.to(DLQ)) == (1, 1, [])


def test_copies_the_consumer_skipped_are_read_by_their_numbers_and_applied_first():
    rig = Rig(failures={"o-1": 1, "o-2": 1, "o-3": 1})
    rig.apply(rig.order("o-1", 0), rig.order("o-2", 1), rig.order("o-3", 2))
    first, second, third = rig.copies(start_offset=10)
    rig.on_topic = [second]
    rig.apply(first, third, is_retry=True)
    assert rig.reads == [(RETRY, 0, 11, 12)]
    assert (rig.state.orders, rig.state.retry_seq_done, rig.state.in_retry) == (3, 3, 0)


def test_markers_between_copies_are_not_a_gap():
    rig = Rig(failures={"o-1": 1, "o-2": 1})
    rig.apply(rig.order("o-1", 0), rig.order("o-2", 1))
    first, second = rig.copies()
    second.offset = 7  # a commit marker or two in between
    rig.apply(first, second, is_retry=True)
    assert rig.reads == [] and rig.state.orders == 2


@pytest.mark.parametrize("edit, words", [
    (lambda hs: [(n, v) for n, v in hs if n != h.RETRY_SEQ], "no x-retry-seq header"),
    (lambda hs: [(n, b"other-app" if n == h.RETRY_APP_ID else v) for n, v in hs], "sent by app 'other-app'"),
    (lambda hs: [(n, b"9" if n == h.RETRY_SEQ else v) for n, v in hs], "copy 9 was never sent"),
    (lambda hs: [(n, b"1" if n == h.ORIGINAL_PARTITION else v) for n, v in hs], "not on partition 0"),
])
def test_a_copy_this_partition_never_sent_is_dead_lettered_as_orphaned_at_once(edit, words):
    rig = Rig(failures={"o-1": 1})
    rig.apply(rig.order("o-1", 0))
    (copy,) = rig.copies()
    orphan = message(RETRY, 0, 0, copy.key, copy.value, edit(copy.headers),
                     timestamp=NOW_S)
    rig.apply(orphan, is_retry=True)
    (dead,) = rig.output.to(DLQ)
    headers = dict(dead["headers"])
    assert headers[h.DLQ_REASON] == b"orphaned-retry" and words in headers[h.ERROR_MESSAGE].decode()
    assert dead["value"] == copy.value
    assert (rig.state.orders, rig.state.in_retry, rig.state.applied[RETRY]) == (0, 1, 0)


def test_an_orphan_holds_nothing_up_the_copies_behind_it_are_resolved():
    rig = Rig(failures={"o-1": 1})
    rig.apply(rig.order("o-1", 0))
    (copy,) = rig.copies(start_offset=1)
    orphan = message(RETRY, 0, 0, b"x", copy.value, [(n, v) for n, v in copy.headers if n != h.RETRY_SEQ])
    rig.apply(orphan, copy, is_retry=True)
    assert (rig.state.orders, rig.state.in_retry, rig.state.dead_letters) == (1, 0, 1)


def test_a_record_on_the_retry_topic_without_retry_headers_is_dead_lettered():
    rig = Rig()
    rig.apply(message(RETRY, 0, 0, b"x", b"whatever"), is_retry=True)
    (dead,) = rig.output.to(DLQ)
    assert dict(dead["headers"])[h.DLQ_REASON] == h.NOT_A_RETRY_RECORD.encode()
    assert rig.state.applied == {RETRY: 0}


def test_a_record_without_a_timestamp_is_counted_without_a_latency_and_one_from_the_future_as_zero():
    rig = Rig()
    no_time, future = rig.order("o-1", 0), rig.order("o-2", 1)
    no_time.timestamp, future.timestamp = -0.001, NOW_S + 3  # Kafka's -1 ms, in seconds; a clock ahead
    rig.apply(no_time, future)
    assert [outcome.latency_s for outcome in rig.part.outcomes] == [None, 0.0]


def test_the_handler_module_imports_on_its_own_without_the_app():
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", "import orders.processing.handler, sys; "
                           "assert 'orders.app' not in sys.modules"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr


def test_the_hot_path_applies_the_next_offset_without_awaiting_and_leaves_the_rest_to_apply():
    rig = Rig(failures={"o-3": 1})
    rig.apply(rig.order("o-0", 0))
    assert rig.handler.apply_next(rig.part, rig.order("o-1", 1)) is True
    assert rig.handler.apply_next(rig.part, message(ORDERS, 0, 2, b"junk", b"junk")) is True
    assert rig.handler.apply_next(rig.part, rig.order("o-3", 3)) is True
    assert rig.handler.apply_next(rig.part, rig.order("o-5", 5)) is False, "a gap: the records between are read"
    assert rig.handler.apply_next(rig.part, rig.order("o-1", 1)) is False, "a replay"
    state = rig.state
    assert (state.orders, state.dead_letters, state.retries, state.applied[ORDERS]) == (2, 1, 1, 3)
    assert [o.kind for o in rig.part.outcomes] == [PROCESSED, PROCESSED, DEAD_LETTERED, RETRIED]


def test_the_hot_path_leaves_a_record_whose_schema_is_not_cached_to_apply():
    rig = Rig()
    rig.apply(rig.order("o-0", 0))
    other = AvroRecordCodec(InMemorySchemaCache(), SCHEMA, subject="x")
    other.registry.schemas[7] = None  # a schema id this worker has not seen
    unseen = message(ORDERS, 0, 1, b"o-1", b"\x00\x00\x00\x00\x07" + rig.order("o-1", 1).value[5:])
    assert rig.handler.apply_next(rig.part, unseen) is False
    assert rig.state.applied[ORDERS] == 0


# -- when a retry copy is due ------------------------------------------------------

DAY_MS = 86_400_000


def with_not_before(copy, not_before_ms: int, timestamp_s: float | None = None):
    """The same copy, its x-not-before-ms (and optionally its timestamp) changed."""
    headers = [(n, str(not_before_ms).encode() if n == h.NOT_BEFORE_MS else v) for n, v in copy.headers]
    return message(RETRY, copy.partition, copy.offset, copy.key, copy.value, headers,
                   timestamp=copy.timestamp if timestamp_s is None else timestamp_s)


def test_a_copy_whose_not_before_lies_a_day_ahead_is_due_at_its_timestamp_plus_the_delay_and_allowance(caplog):
    rig = Rig(failures={"o-1": 1})
    rig.apply(rig.order("o-1", 0))
    (copy,) = rig.copies()
    now_ms = int(NOW_S * 1000)
    skewed = with_not_before(copy, now_ms + DAY_MS, timestamp_s=NOW_S - 1.0)
    # written a second ago: the policy would have set 2 s of delay, and allows 1 s more
    assert rig.handler.due_in_ms(rig.part, skewed, first_seen_ms=now_ms) == 2000
    rig.handler.due_in_ms(rig.part, skewed, first_seen_ms=now_ms)
    clamped = [r for r in caplog.records if "lies" in r.getMessage()]
    assert len(clamped) == 1 and f"{RETRY}[0]@0" in clamped[0].getMessage(), "logged once, with its coordinates"


def test_a_copy_from_a_clock_running_ahead_waits_no_longer_than_the_delay_and_allowance_after_it_arrived():
    rig = Rig(failures={"o-1": 1})
    rig.apply(rig.order("o-1", 0))
    (copy,) = rig.copies()
    now_ms = int(NOW_S * 1000)
    ahead = with_not_before(copy, now_ms + 3_600_000 + 2000, timestamp_s=NOW_S + 3600)  # a writer an hour ahead
    assert rig.handler.due_in_ms(rig.part, ahead, first_seen_ms=now_ms - 1000) == 2000


def test_a_copy_written_with_a_shorter_delay_than_now_is_due_at_its_own_not_before():
    rig = Rig(failures={"o-1": 1})
    rig.apply(rig.order("o-1", 0))
    (copy,) = rig.copies()
    now_ms = int(NOW_S * 1000)
    assert rig.handler.due_in_ms(rig.part, with_not_before(copy, now_ms + 500), first_seen_ms=now_ms) == 500
    assert rig.handler.due_in_ms(rig.part, with_not_before(copy, now_ms - 500), first_seen_ms=now_ms) == 0


@pytest.mark.parametrize("case", ["orphan", "no headers", "duplicate", "replay"])
def test_a_copy_judged_without_waiting_is_due_at_once_whatever_its_not_before(case):
    rig = Rig(failures={"o-1": 1})
    rig.apply(rig.order("o-1", 0))
    (copy,) = rig.copies()
    far = with_not_before(copy, int(NOW_S * 1000) + DAY_MS)
    if case == "orphan":
        far = message(RETRY, 0, 0, far.key, far.value, [(n, b"7" if n == h.RETRY_SEQ else v) for n, v in far.headers])
    elif case == "no headers":
        far = message(RETRY, 0, 0, b"x", b"whatever")
    else:
        rig.apply(copy, is_retry=True)
        if case == "replay":
            far.offset = 0
        else:
            far.offset = 1
    assert rig.handler.due_in_ms(rig.part, far, first_seen_ms=int(NOW_S * 1000)) == 0


# -- errors while applying -----------------------------------------------------------

def test_an_error_while_a_copy_is_attempted_leaves_it_unresolved():
    rig = Rig(failures={"o-1": 1})
    rig.apply(rig.order("o-1", 0))
    (copy,) = rig.copies()

    def fault(point: str) -> None:
        if point == "copy-attempted":
            raise RuntimeError("boom")
    rig.handler.fault = fault
    with pytest.raises(RuntimeError):
        rig.apply(copy, is_retry=True)
    assert (rig.state.retry_seq_done, rig.state.in_retry, RETRY in rig.state.applied) == (0, 1, False)


def test_giving_up_on_a_copy_dead_letters_it_as_processing_error_and_resolves_it():
    rig = Rig(failures={"o-1": 1})
    rig.apply(rig.order("o-1", 0))
    (copy,) = rig.copies()
    rig.handler.give_up(rig.part, copy, RuntimeError("keeps failing"))
    (dead,) = rig.output.to(DLQ)
    headers = dict(dead["headers"])
    assert (headers[h.DLQ_REASON], headers[h.ERROR_TYPE], headers[h.ATTEMPTS]) == (b"processing-error",
                                                                                  b"RuntimeError", b"2")
    assert (headers[h.ORIGINAL_TOPIC], headers[h.ORIGINAL_OFFSET]) == (ORDERS.encode(), b"0")
    assert (rig.state.in_retry, rig.state.dead_letters, rig.state.applied[RETRY]) == (0, 1, 0)


def test_outputs_name_the_record_that_caused_them():
    rig = Rig(failures={"o-1": 1})
    original = rig.order("o-1", 0)
    rig.apply(original, message(ORDERS, 0, 1, b"junk", b"junk"))
    assert [record["source"].offset for record in rig.output.sent] == [0, 1]


def test_a_long_gap_is_read_a_page_at_a_time():
    skipped = [Rig().order(f"o-{i}", i) for i in range(1, 8)]
    rig = Rig(on_topic=skipped)

    async def read_page(topic, partition, start, end):
        rig.reads.append((topic, partition, start, end))
        return [m for m in skipped if start <= m.offset < end][:3]
    rig.handler.read_page = read_page
    rig.apply(rig.order("o-0", 0), rig.order("o-8", 8))
    assert rig.reads == [(ORDERS, 0, 1, 8), (ORDERS, 0, 4, 8), (ORDERS, 0, 7, 8)]
    assert (rig.state.orders, rig.state.applied[ORDERS]) == (9, 8)
