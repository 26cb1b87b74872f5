"""The pure side of the DLQ tools: parsing dead letters, selecting them, planning a replay."""
from datetime import UTC, datetime
from pathlib import Path

import pytest

from avro_codec import AvroRecordCodec, RegistryUnavailable, load_schema
from orders.dead_letters.letters import (
    ALREADY_REPLAYED,
    NOT_MATCHING,
    REPLAY,
    UNDECODABLE,
    Selection,
    dead_letter,
    decide,
    dlq_order_key,
    in_dlq_order,
    parse_time,
)
from orders.domain.headers import Attempt, dlq_headers
from orders.kafka.reading import Record

from .fakes import InMemorySchemaCache

SCHEMA = load_schema(Path(__file__).resolve().parents[2] / "schemas" / "order-v2.avsc")
NOV_27_09_30_UTC_MS = int(datetime(2026, 11, 27, 9, 30, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture
def codec():
    return AvroRecordCodec(InMemorySchemaCache(), SCHEMA, subject="orders-value")


def dlq_record(value, *, offset=0, partition=0, origin=("orders", 2, 40), reason="retries-exhausted",
               attempts=4, dead_lettered_ms=1_000, timestamp_ms=500, headers=None):
    if headers is None:
        attempt = Attempt(*origin, number=attempts, first_failure_ms=100)
        headers = dict(dlq_headers(attempt, reason, RuntimeError("boom"), dead_lettered_ms))
    return Record("orders-dlq", partition, offset, timestamp_ms, b"k", value, headers)


def order(order_id, price=10.5):
    return {"orderId": order_id, "product": "Laptop", "price": price}


def test_a_dead_letter_shows_its_order_reason_attempts_origin_and_time(codec):
    letter = dead_letter(dlq_record(codec.encode(order("o-1")), offset=7, partition=1), codec.loads)
    assert letter.order_id == "o-1"
    assert letter.order["product"] == "Laptop" and letter.order["currency"] == "USD"
    assert (letter.reason, letter.attempts, letter.error) == ("retries-exhausted", 4, "RuntimeError: boom")
    assert (letter.original_topic, letter.original_partition, letter.original_offset) == ("orders", 2, 40)
    assert letter.dedupe_key == "orders/2/40"
    assert letter.coordinates == "orders-dlq/1/7"
    assert letter.time_ms == 1_000, "the x-dead-lettered-ms header, not the record timestamp"
    assert letter.undecodable is None


def test_an_undecodable_value_is_kept_with_its_size_and_why(codec):
    letter = dead_letter(dlq_record(b"not avro at all", reason="undecodable"), codec.loads)
    assert letter.order is None and letter.order_id is None
    assert letter.value == b"not avro at all" and letter.value_size == 15
    assert "wrong-magic-byte" in letter.undecodable


def test_an_empty_value_is_undecodable_not_an_error(codec):
    letter = dead_letter(dlq_record(None), codec.loads)
    assert letter.value_size == 0 and "empty" in letter.undecodable


def test_a_registry_outage_is_not_mistaken_for_undecodable_data():
    def unreachable(_value):
        raise RegistryUnavailable("registry down")
    with pytest.raises(RegistryUnavailable):
        dead_letter(dlq_record(b"\x00\x00\x00\x00\x01x"), unreachable)


def test_missing_or_garbled_headers_give_unknowns_and_the_dlq_position_as_dedupe_key(codec):
    record = dlq_record(codec.encode(order("o-2")), offset=3, timestamp_ms=777,
                        headers={"x-attempts": b"many", "x-original-partition": b"1"})
    letter = dead_letter(record, codec.loads)
    assert (letter.reason, letter.attempts, letter.error, letter.original) == (None, None, None, None)
    assert letter.dedupe_key == "orders-dlq/0/3"
    assert letter.time_ms == 777, "the record timestamp when the header is missing"


def test_dead_letters_are_ordered_oldest_first(codec):
    value = codec.encode(order("o-1"))
    letters = [dead_letter(dlq_record(value, offset=o, partition=p, dead_lettered_ms=t), codec.loads)
               for o, p, t in [(0, 1, 300), (5, 0, 100), (1, 0, 300)]]
    assert [(d.partition, d.offset) for d in in_dlq_order(letters)] == [(0, 5), (0, 1), (1, 0)]


@pytest.mark.parametrize("text", ["2026-11-27T09:30:00Z", "2026-11-27T09:30:00+00:00", "2026-11-27T10:30:00+01:00",
                                  "2026-11-27T09:30", "2026-11-27 09:30:00", str(NOV_27_09_30_UTC_MS // 1000),
                                  str(NOV_27_09_30_UTC_MS), f"{NOV_27_09_30_UTC_MS // 1000}.0"])
def test_times_are_read_as_iso_8601_or_epoch_seconds_or_milliseconds(text):
    assert parse_time(text) == NOV_27_09_30_UTC_MS


def test_a_date_alone_means_its_midnight_utc():
    assert parse_time("2026-11-27") == NOV_27_09_30_UTC_MS - (9 * 60 + 30) * 60_000


@pytest.mark.parametrize("text", ["yesterday", "", "-5", "27/11/2026", "2026-13-01"])
def test_an_unreadable_time_is_refused_with_the_formats_accepted(text):
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_time(text)


def letters_for_selection(codec):
    specs = [("o-1", "retries-exhausted", 1_000), ("o-2", "invalid-order", 2_000), ("o-3", "retries-exhausted", 3_000)]
    return [dead_letter(dlq_record(codec.encode(order(oid)), offset=i, origin=("orders", 0, i), reason=reason,
                                   dead_lettered_ms=t), codec.loads) for i, (oid, reason, t) in enumerate(specs)]


def selected(selection, letters):
    return [letter.order_id for letter in letters if selection.matches(letter)]


def test_an_empty_selection_matches_everything(codec):
    letters = letters_for_selection(codec)
    assert Selection().is_everything
    assert selected(Selection(), letters) == ["o-1", "o-2", "o-3"]


def test_selection_by_order_id_reason_and_time_combines_with_and(codec):
    letters = letters_for_selection(codec)
    assert selected(Selection(order_ids=frozenset({"o-1", "o-2"})), letters) == ["o-1", "o-2"]
    assert selected(Selection(reasons=frozenset({"retries-exhausted"})), letters) == ["o-1", "o-3"]
    assert selected(Selection(since_ms=2_000), letters) == ["o-2", "o-3"], "since is inclusive"
    assert selected(Selection(until_ms=2_000), letters) == ["o-1"], "until is exclusive"
    assert selected(Selection(order_ids=frozenset({"o-1", "o-2"}), reasons=frozenset({"invalid-order"})),
                    letters) == ["o-2"]
    assert not Selection(since_ms=1).is_everything


def test_an_undecodable_dead_letter_never_matches_an_order_id(codec):
    letter = dead_letter(dlq_record(b"junk"), codec.loads)
    assert not Selection(order_ids=frozenset({"k"})).matches(letter)
    assert Selection(reasons=frozenset({"retries-exhausted"})).matches(letter)


def test_an_empty_time_range_is_refused():
    with pytest.raises(ValueError, match="--since must be earlier than --until"):
        Selection(since_ms=5, until_ms=5)


def test_a_replay_decides_each_dead_letter_once(codec):
    fresh = dead_letter(dlq_record(codec.encode(order("o-1")), offset=0, origin=("orders", 0, 10)), codec.loads)
    done_before = dead_letter(dlq_record(codec.encode(order("o-2")), offset=1, origin=("orders", 0, 11)),
                              codec.loads)
    other = dead_letter(dlq_record(codec.encode(order("o-3")), offset=2, origin=("orders", 0, 12),
                                   reason="invalid-order"), codec.loads)
    garbage = dead_letter(dlq_record(b"junk", offset=3, origin=("orders", 0, 13)), codec.loads)
    selection = Selection(reasons=frozenset({"retries-exhausted"}))
    decided = [decide(letter, selection, {"orders/0/11"}) for letter in (fresh, done_before, other, garbage)]
    assert decided == [REPLAY, ALREADY_REPLAYED, NOT_MATCHING, UNDECODABLE]


def test_force_replays_undecodable_dead_letters(codec):
    garbage = dead_letter(dlq_record(b"junk"), codec.loads)
    assert decide(garbage, Selection(), set(), force=True) == REPLAY


def test_two_dlq_copies_of_one_original_are_replayed_once_the_older_copy(codec):
    value = codec.encode(order("o-1"))
    newer = dead_letter(dlq_record(value, offset=0, partition=1, dead_lettered_ms=2_000), codec.loads)
    older = dead_letter(dlq_record(value, offset=4, partition=0, dead_lettered_ms=1_000), codec.loads)
    replayed: set[str] = set()
    decided = []
    for letter in sorted([newer, older], key=dlq_order_key):  # the order the replay reads them in
        decided.append((letter, decide(letter, Selection(), replayed)))
        replayed.add(letter.dedupe_key)
    assert decided == [(older, REPLAY), (newer, ALREADY_REPLAYED)]
