"""The replay ledger's records: what they say, how the current state is folded, how a crash is settled."""
import json

import pytest

from orders.cli.dlq.ledger import PUBLISHING, REPLAY_OF, REPLAYED, Entry, LedgerError, fold, landed, scan_start
from orders.kafka_io import Record


def ledger_record(key, value, offset):
    return Record("orders-dlq-replayed", 0, offset, None, key, value, {})


def test_a_replayed_entry_names_the_dead_letter_and_where_the_replay_landed():
    entry = Entry(REPLAYED, "orders-dlq/1/4", 1_000, "o-1", replayed_to="orders/0/23")
    value = json.loads(entry.to_bytes())
    assert value == {"state": "replayed", "dead_letter": "orders-dlq/1/4", "at_ms": 1_000, "order_id": "o-1",
                     "replayed_to": "orders/0/23"}
    assert Entry.from_record(ledger_record(b"orders/2/40", entry.to_bytes(), 0)) == entry


def test_a_publishing_entry_keeps_the_orders_end_offsets():
    entry = Entry(PUBLISHING, "orders-dlq/1/4", 1_000, None, orders_from={0: 12, 3: 7})
    assert json.loads(entry.to_bytes())["orders_from"] == {"0": 12, "3": 7}
    assert Entry.from_record(ledger_record(b"k", entry.to_bytes(), 0)) == entry


def test_the_latest_record_per_key_wins_and_a_tombstone_clears_the_key():
    publishing = Entry(PUBLISHING, "orders-dlq/0/1", 1, orders_from={0: 5}).to_bytes()
    replayed = Entry(REPLAYED, "orders-dlq/0/1", 2, replayed_to="orders/0/5").to_bytes()
    other = Entry(REPLAYED, "orders-dlq/0/2", 3, replayed_to="orders/0/6").to_bytes()
    entries = fold([ledger_record(b"a", publishing, 0), ledger_record(b"b", other, 1),
                    ledger_record(b"a", replayed, 2), ledger_record(b"b", None, 3)])
    assert list(entries) == ["a"]
    assert entries["a"].state == REPLAYED and entries["a"].replayed_to == "orders/0/5"


@pytest.mark.parametrize("value", [b"not json", b"[]", b'{"state": "eaten", "dead_letter": "x", "at_ms": 1}',
                                   b'{"state": "replayed"}'])
def test_a_record_not_written_by_the_tool_stops_it_naming_where_it_is(value):
    with pytest.raises(LedgerError, match="orders-dlq-replayed/0/9"):
        fold([ledger_record(b"k", value, 9)])


def test_a_keyless_ledger_record_is_refused():
    with pytest.raises(LedgerError, match="no key"):
        fold([ledger_record(None, b"{}", 4)])


def test_the_scan_after_a_crash_starts_at_the_lowest_recorded_offset_per_partition():
    pending = {"a": Entry(PUBLISHING, "d/0/1", 1, orders_from={0: 10, 1: 4}),
               "b": Entry(PUBLISHING, "d/0/2", 1, orders_from={0: 8, 1: 6, 2: 1})}
    assert scan_start(pending) == {0: 8, 1: 4, 2: 1}


def test_a_replay_is_found_by_its_header_and_only_for_the_keys_asked():
    records = [Record("orders", 0, 8, None, b"o-1", b"v", {}),
               Record("orders", 0, 9, None, b"o-1", b"v", {REPLAY_OF: b"orders/2/40"}),
               Record("orders", 1, 3, None, b"o-2", b"v", {REPLAY_OF: b"orders/2/41"}),
               Record("orders", 1, 4, None, b"o-2", b"v", {REPLAY_OF: b"orders/2/40"})]
    assert landed(records, ["orders/2/40", "orders/9/9"]) == {"orders/2/40": "orders/0/9"}
