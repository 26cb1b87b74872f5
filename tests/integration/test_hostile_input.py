"""Garbage, invalid orders and schema evolution on the real stack: nothing crashes, stalls or is lost."""
import json
import math

from avro_codec import AvroCodecError, AvroRecordCodec, load_schema
from avro_codec.wire import frame
from orders.domain import headers as h

from .conftest import (
    ROOT,
    orders_with_prices,
    produce,
    produce_orders,
    read_all,
    record_count,
    settled,
    wait_for_topics,
)

ORDER = {"orderId": "h-1", "product": "Laptop", "price": 10.5}


def test_poison_pills_on_both_topics_are_dead_lettered_once_and_the_partition_keeps_flowing(
        names, start_worker, order_codec):
    worker = start_worker(PARTITIONS=1)
    wait_for_topics(names.orders, names.retry)
    good = order_codec.encode(ORDER)
    payment_schema = {"type": "record", "name": "Payment", "fields": [{"name": "amount", "type": "double"},
                                                                     {"name": "ref", "type": "string"}]}
    payment_id = order_codec.registry.register(f"payments-{names.suffix}-value", payment_schema)
    other_schema = frame(payment_id, b"\x00\x00\x00\x00\x00\x00\xf0\x3f\x06abc")
    poison = {
        b"not-avro": b"definitely not avro",
        b"wrong-magic": b"\x07" + good[1:],
        b"unknown-id": frame(987654, good[5:]),
        b"truncated": good[:-4],
        b"empty": b"",
        b"json": json.dumps(ORDER).encode(),
        b"other-schema": other_schema,
    }
    produce(names.orders, list(poison.items()))
    produce(names.retry, [(b"retry-garbage", b"\x00garbage"), (b"retry-headerless", good)])
    later = orders_with_prices("after", 5)
    produce_orders(order_codec, names.orders, later)

    expected_dead = len(poison) + 2
    summary = worker.wait_for(settled(lambda s: s["dead_letters"] >= expected_dead and s["orders"] >= len(later)), 60,
                              "poison dead-lettered and later orders counted")
    assert (summary["orders"], summary["dead_letters"], summary["retries"]) == (len(later), expected_dead, 0)

    dead = {r.key: r for r in read_all(names.dlq)}
    assert len(dead) == expected_dead
    for key, value in poison.items():
        assert dead[key].value == value, key
        assert dead[key].headers[h.DLQ_REASON] == b"undecodable", key
        assert dead[key].headers[h.ERROR_TYPE] == b"AvroCodecError"
    assert b"wrong-magic-byte" in dead[b"wrong-magic"].headers[h.ERROR_MESSAGE]
    assert b"unknown-schema-id" in dead[b"unknown-id"].headers[h.ERROR_MESSAGE]
    assert b"empty" in dead[b"empty"].headers[h.ERROR_MESSAGE]
    assert dead[b"retry-headerless"].headers[h.DLQ_REASON] == b"not-a-retry-record"
    assert dead[b"retry-headerless"].value == good
    assert record_count(names.retry) == 2, "nothing was retried"


def test_invalid_orders_are_dead_lettered_at_once_without_retries(names, start_worker, order_codec):
    worker = start_worker()
    wait_for_topics(names.orders)
    invalid = {
        b"negative": {**ORDER, "orderId": "negative", "price": -0.5},
        b"nan": {**ORDER, "orderId": "nan", "price": math.nan},
        b"plus-inf": {**ORDER, "orderId": "plus-inf", "price": math.inf},
        b"minus-inf": {**ORDER, "orderId": "minus-inf", "price": -math.inf},
        b"empty-id": {**ORDER, "orderId": ""},
        b"huge-product": {**ORDER, "orderId": "huge-product", "product": "x" * 1_000_000},
    }
    encoded = {key: order_codec.encode(order) for key, order in invalid.items()}
    produce(names.orders, list(encoded.items()))
    summary = worker.wait_for(settled(lambda s: s["dead_letters"] >= len(invalid)), 60, "invalid orders dead-lettered")
    assert (summary["orders"], summary["dead_letters"], summary["retries"]) == (0, len(invalid), 0)
    dead = {r.key: r for r in read_all(names.dlq)}
    assert set(dead) == set(invalid)
    for key, record in dead.items():
        assert record.value == encoded[key]
        assert record.headers[h.DLQ_REASON] == b"invalid-order"
        assert record.headers[h.ATTEMPTS] == b"1"
    assert record_count(names.retry) == 0


def test_version_1_and_version_2_producers_share_the_topic(names, start_worker, order_codec):
    worker = start_worker()
    wait_for_topics(names.orders)
    v2 = AvroRecordCodec(order_codec.registry, load_schema(ROOT / "schemas" / "order-v2.avsc"),
                         subject=order_codec.subject)
    v1_orders = orders_with_prices("one", 5)
    v2_orders = [{**o, "quantity": 3, "currency": "EUR"} for o in orders_with_prices("two", 5)]
    produce_orders(order_codec, names.orders, v1_orders)
    produce_orders(v2, names.orders, v2_orders)
    assert v2.schema_id != order_codec.schema_id

    summary = worker.wait_for(settled(lambda s: s["orders"] >= 10), 60, "both versions counted")
    assert summary["orders"] == 10
    log = worker.log_path.read_text()
    assert "processed one-0 product-0 0.50 USD x1" in log, "version-1 record read with v2 defaults"
    assert "processed two-0 product-0 0.50 EUR x3" in log


def test_incompatible_schema_change_is_refused_with_a_clear_error(names, order_codec):
    order_codec.register_schema()  # version 1
    incompatible = {**order_codec.raw_schema, "fields": [
        {**f, "type": "string"} if f["name"] == "price" else f for f in order_codec.raw_schema["fields"]]}
    codec = AvroRecordCodec(order_codec.registry, incompatible, subject=order_codec.subject)
    try:
        codec.encode({**ORDER, "price": "cheap"})
    except AvroCodecError as exc:
        assert exc.reason == "schema-rejected"
        assert "incompatible" in str(exc) and order_codec.subject in str(exc)
    else:
        raise AssertionError("the registry accepted an incompatible schema")
