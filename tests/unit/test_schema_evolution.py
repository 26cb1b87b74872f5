"""A field added to the order schema reaches the `Order` the processing reads, with no change to the code."""
from __future__ import annotations

import json
from pathlib import Path

from avro_codec import AvroRecordCodec, load_schema
from orders.domain.order import Order, validate

from .fakes import InMemorySchemaCache

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def v3_schema() -> dict:
    """Version 3 as a newcomer would write it: version 2 plus a field with a default."""
    schema = json.loads((SCHEMAS / "order-v2.avsc").read_text())
    schema["fields"].append({"name": "channel", "type": "string", "default": "web",
                             "doc": "Where the order was placed (version 3)."})
    return schema


def test_a_field_added_in_a_v3_schema_flows_from_the_codec_to_the_order():
    registry = InMemorySchemaCache()
    v2 = AvroRecordCodec(registry, load_schema(SCHEMAS / "order-v2.avsc"), subject="orders-value")
    v3 = AvroRecordCodec(registry, v3_schema(), subject="orders-value")
    written_by_v3 = v3.encode({"orderId": "o-3", "product": "Lamp", "price": 12.5, "channel": "app"})
    written_by_v2 = v2.encode({"orderId": "o-2", "product": "Lamp", "price": 12.5})

    order = validate(v3.decode_cached(written_by_v3))
    assert order == Order("o-3", "Lamp", 12.5, quantity=1, currency="USD", extras={"channel": "app"})
    assert validate(v3.decode_cached(written_by_v2)).extras == {"channel": "web"}, "older records get the default"
    assert validate(v2.decode_cached(written_by_v3)).extras == {}, "a v2 reader ignores the new field"
