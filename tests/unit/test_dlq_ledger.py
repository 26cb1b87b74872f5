"""The replay ledger's records: what they say and how the current state is folded."""
import json

import pytest

from orders.dead_letters.ledger import Entry, LedgerError, fold
from orders.kafka.reading import Record


def ledger_record(key, value, offset):
    return Record("orders-dlq-replayed", 0, offset, None, key, value, {})


def test_a_replayed_entry_names_the_dead_letter_and_where_the_replay_landed():
    entry = Entry("orders-dlq/1/4", 1_000, "o-1", replayed_to="orders/0/23")
    value = json.loads(entry.to_bytes())
    assert value == {"state": "replayed", "dead_letter": "orders-dlq/1/4", "at_ms": 1_000, "order_id": "o-1",
                     "replayed_to": "orders/0/23"}
    assert Entry.from_record(ledger_record(b"orders/2/40", entry.to_bytes(), 0)) == entry


def test_the_latest_record_per_key_wins_and_a_tombstone_clears_the_key():
    first = Entry("orders-dlq/0/1", 1, replayed_to="orders/0/4").to_bytes()
    again = Entry("orders-dlq/0/1", 2, replayed_to="orders/0/5").to_bytes()
    other = Entry("orders-dlq/0/2", 3, replayed_to="orders/0/6").to_bytes()
    entries = fold([ledger_record(b"a", first, 0), ledger_record(b"b", other, 1),
                    ledger_record(b"a", again, 2), ledger_record(b"b", None, 3)])
    assert list(entries) == ["a"]
    assert entries["a"].replayed_to == "orders/0/5"


def test_an_unfinished_entry_of_the_older_two_step_ledger_counts_as_not_replayed():
    old = json.dumps({"state": "publishing", "dead_letter": "orders-dlq/0/1", "at_ms": 1, "order_id": None,
                      "orders_from": {"0": 5}}).encode()
    replayed = Entry("orders-dlq/0/2", 2, replayed_to="orders/0/6").to_bytes()
    assert list(fold([ledger_record(b"a", old, 0), ledger_record(b"b", replayed, 1)])) == ["b"]


@pytest.mark.parametrize("value", [b"not json", b"[]", b'{"state": "eaten", "dead_letter": "x", "at_ms": 1}',
                                   b'{"state": "replayed"}'])
def test_a_record_not_written_by_the_tool_stops_it_naming_where_it_is(value):
    with pytest.raises(LedgerError, match="orders-dlq-replayed/0/9"):
        fold([ledger_record(b"k", value, 9)])


def test_a_keyless_ledger_record_is_refused():
    with pytest.raises(LedgerError, match="no key"):
        fold([ledger_record(None, b"{}", 4)])
