"""What `dlq list` prints, checked on dead letters built from real headers and real Avro bytes."""
import json
import math
from pathlib import Path

import pytest

from avro_codec import AvroRecordCodec, load_schema
from orders.dead_letters.formatting import TABLE_HEADERS, json_object, table_row
from orders.dead_letters.ledger import Entry
from orders.dead_letters.letters import dead_letter
from orders.domain.headers import Attempt, dlq_headers
from orders.kafka.reading import Record

from .fakes import InMemorySchemaCache

SCHEMA = load_schema(Path(__file__).resolve().parents[2] / "schemas" / "order-v2.avsc")
DEAD_LETTERED_MS = 1_795_738_078_750  # 2026-11-27T00:07:58.750Z


@pytest.fixture
def codec():
    return AvroRecordCodec(InMemorySchemaCache(), SCHEMA, subject="orders-value")


def letter_with(codec, value, key=b"o-bad", reason="invalid-order"):
    headers = dict(dlq_headers(Attempt("orders", 2, 2), reason, ValueError("price -1.0 is negative"),
                               DEAD_LETTERED_MS))
    return dead_letter(Record("orders-dlq", 1, 4, 0, key, value, headers), codec.loads)


def test_a_table_row_reads_like_the_dead_letter(codec):
    letter = letter_with(codec, codec.encode({"orderId": "o-bad", "product": "Broken", "price": -1.0, "quantity": 2}))
    row = dict(zip(TABLE_HEADERS, table_row(letter, None), strict=True))
    assert row == {"DLQ at": "1/4", "Dead-lettered (UTC)": "2026-11-27 00:07:58", "Order": "o-bad",
                   "Reason": "invalid-order", "Att.": "1", "Original": "orders/2/2",
                   "Value": "Broken -1.00 USD x2", "Error": "ValueError: price -1.0 is negative", "Replayed": ""}


def test_an_undecodable_row_shows_the_key_and_the_size(codec):
    letter = letter_with(codec, b"\x07garbage", key=b"k-9", reason="undecodable")
    row = dict(zip(TABLE_HEADERS, table_row(letter, None), strict=True))
    assert row["Order"] == "? key=k-9"
    assert row["Value"] == "UNDECODABLE, 8 bytes"
    assert row["Error"] == "ValueError: price -1.0 is negative", "the error the worker recorded"


def test_the_replayed_column_says_where_the_replay_went(codec):
    letter = letter_with(codec, codec.encode({"orderId": "o-1", "product": "P", "price": 1.0}))
    replayed = Entry("orders-dlq/1/4", 1, replayed_to="orders/0/23")
    assert table_row(letter, replayed)[-1] == "orders/0/23"
    assert table_row(letter, None)[-1] == ""


def test_json_has_every_field_and_stays_strict_json_for_a_nan_price(codec):
    letter = letter_with(codec, codec.encode({"orderId": "o-nan", "product": "P", "price": math.nan}))
    text = json.dumps(json_object(letter, Entry("orders-dlq/1/4", 5, replayed_to="orders/0/1")),
                      allow_nan=False)
    obj = json.loads(text)
    assert obj["value"]["price"] == "NaN"
    assert obj["order_id"] == "o-nan" and obj["key"] == "o-bad"
    assert (obj["dlq_topic"], obj["dlq_partition"], obj["dlq_offset"]) == ("orders-dlq", 1, 4)
    assert (obj["original_topic"], obj["original_partition"], obj["original_offset"]) == ("orders", 2, 2)
    assert obj["dedupe_key"] == "orders/2/2"
    assert (obj["reason"], obj["attempts"], obj["decoded"], obj["undecodable"]) == ("invalid-order", 1, True, None)
    assert (obj["time_ms"], obj["time"]) == (DEAD_LETTERED_MS, "2026-11-27T00:07:58.750Z")
    assert obj["replay"] == {"state": "replayed", "replayed_to": "orders/0/1", "at_ms": 5}


def test_json_of_an_undecodable_dead_letter_has_no_value_but_its_size(codec):
    obj = json_object(letter_with(codec, b"\xff" * 30, key=b"\xfe"), None)
    assert (obj["decoded"], obj["value"], obj["value_size"], obj["order_id"]) == (False, None, 30, None)
    assert obj["key"] == "\\xfe", "a key that is not UTF-8 is shown escaped, not lost"
    assert "wrong-magic-byte" in obj["undecodable"]
    json.dumps(obj, allow_nan=False)
