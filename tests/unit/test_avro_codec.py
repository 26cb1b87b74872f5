import asyncio
import io
import json
import struct
import threading
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avro_codec import AvroCodecError, AvroRecordCodec, SchemaCache, load_schema
from avro_codec.wire import frame, unframe

from .fakes import InMemorySchemaCache

SCHEMA = load_schema(Path(__file__).resolve().parents[2] / "schemas" / "order.avsc")
ORDER = {"orderId": "o-1", "product": "Laptop", "price": 999.5}


@pytest.fixture
def registry():
    return InMemorySchemaCache()


@pytest.fixture
def codec(registry):
    return AvroRecordCodec(registry, SCHEMA, subject="orders-value")


def avro_body(schema, record):
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def test_encoded_bytes_use_the_confluent_framing(codec, registry):
    data = codec.dumps(ORDER)
    assert data[0] == 0
    assert struct.unpack(">I", data[1:5])[0] == 1
    assert data[5:] == avro_body(SCHEMA, ORDER)
    assert registry.registrations == ["orders-value"]


def test_schema_is_registered_once_for_many_records(codec, registry):
    for _ in range(3):
        codec.dumps(ORDER)
    assert registry.registrations == ["orders-value"]


def test_json_text_is_accepted_as_a_record(codec):
    assert codec.loads(codec.dumps(json.dumps(ORDER).encode())) == ORDER


@pytest.mark.parametrize("value, reason", [
    (b'{"orderId": "o-1"', "not-json"),
    (b"[1, 2]", "not-a-record"),
    ({"orderId": "o-1", "product": "x", "price": "cheap"}, "does-not-fit-schema"),
    ({"orderId": "o-1", "product": "x"}, "does-not-fit-schema"),
    ({**ORDER, "colour": "red"}, "does-not-fit-schema"),
])
def test_records_that_do_not_fit_are_refused_with_a_reason(codec, value, reason):
    with pytest.raises(AvroCodecError) as raised:
        codec.dumps(value)
    assert raised.value.reason == reason


def test_decoding_resolves_an_older_writer_schema_to_the_reader(registry, codec):
    newer = {**SCHEMA, "fields": SCHEMA["fields"] + [{"name": "quantity", "type": "int", "default": 1}]}
    reader = AvroRecordCodec(registry, newer, subject="orders-value")
    registry.add(7, SCHEMA)
    decoded = reader.loads(frame(7, avro_body(SCHEMA, ORDER)))
    assert decoded == {**ORDER, "quantity": 1}


def test_async_decode_matches_sync_decode(codec):
    data = codec.dumps(ORDER)
    assert asyncio.run(codec.decode(data)) == codec.loads(data)


BAD_HEADERS = [
    (b"", "empty"),
    (None, "empty"),
    (b"\x00\x00\x01", "truncated"),
    (b'{"orderId": "o-1"}', "wrong-magic-byte"),
    (b"\x01\x00\x00\x00\x01abc", "wrong-magic-byte"),
]


# Each bad header on both decoding paths; an unknown schema id is an error only where the registry was asked
# (the hot path returns None then: see the test of its wait below).
@pytest.mark.parametrize("decode, data, reason",
                         [(decode, data, reason) for decode in ("loads", "decode_cached")
                          for data, reason in BAD_HEADERS]
                         + [("loads", frame(99, b"\x02a"), "unknown-schema-id")])
def test_undecodable_bytes_raise_the_codec_error(codec, decode, data, reason):
    with pytest.raises(AvroCodecError) as raised:
        getattr(codec, decode)(data)
    assert raised.value.reason == reason


def test_truncated_body_and_trailing_bytes_are_corrupt(codec):
    data = codec.dumps(ORDER)
    for bad in (data[:-3], data + b"\x00\x01"):
        with pytest.raises(AvroCodecError) as raised:
            codec.loads(bad)
        assert raised.value.reason == "corrupt-body"


def test_record_of_another_schema_is_refused(registry, codec):
    other = {"type": "record", "name": "Payment", "fields": [{"name": "amount", "type": "double"}]}
    registry.add(5, other)
    with pytest.raises(AvroCodecError) as raised:
        codec.loads(frame(5, avro_body(other, {"amount": 1.0})))
    assert raised.value.reason in {"incompatible-schema", "corrupt-body"}


def test_unframe_splits_id_and_body():
    schema_id, body = unframe(frame(258, b"xyz"))
    assert (schema_id, bytes(body)) == (258, b"xyz")


@settings(max_examples=500, deadline=timedelta(milliseconds=500))
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_the_codec_error(data):
    registry = InMemorySchemaCache()
    registry.add(1, SCHEMA)
    codec = AvroRecordCodec(registry, SCHEMA, subject="orders-value")
    for candidate in (data, b"\x00\x00\x00\x00\x01" + data):
        try:
            codec.loads(candidate)
        except AvroCodecError:
            pass


SCHEMA_V2 = load_schema(Path(__file__).resolve().parents[2] / "schemas" / "order-v2.avsc")


def test_version_1_records_read_with_version_2_defaults(registry):
    registry.add(1, SCHEMA)
    reader = AvroRecordCodec(registry, SCHEMA_V2, subject="orders-value")
    assert reader.loads(frame(1, avro_body(SCHEMA, ORDER))) == {**ORDER, "quantity": 1, "currency": "USD"}


def test_encoding_fills_defaults_for_fields_left_out(registry):
    codec = AvroRecordCodec(registry, SCHEMA_V2, subject="orders-value")
    assert codec.loads(codec.dumps(ORDER)) == {**ORDER, "quantity": 1, "currency": "USD"}


class CountingSchemaCache(InMemorySchemaCache):
    def __init__(self) -> None:
        super().__init__()
        self.lookups: list[int] = []

    def cached(self, schema_id: int):
        self.lookups.append(schema_id)
        return super().cached(schema_id)


def test_the_hot_path_asks_the_registry_cache_once_per_schema_id_and_reads_each_writer_right():
    registry = CountingSchemaCache()
    v1 = registry.register("orders-value", SCHEMA)
    v2_schema = load_schema(Path(__file__).resolve().parents[2] / "schemas" / "order-v2.avsc")
    v2 = registry.register("orders-value", v2_schema)
    codec = AvroRecordCodec(registry, v2_schema, subject="orders-value")
    old = frame(v1, avro_body(SCHEMA, ORDER))
    new = frame(v2, avro_body(v2_schema, {**ORDER, "quantity": 3, "currency": "EUR"}))

    decoded = [codec.decode_cached(data) for data in (old, new, old, new, old)]

    assert registry.lookups == [v1, v2]
    assert decoded[0] == decoded[2] == decoded[4] == {**ORDER, "quantity": 1, "currency": "USD"}
    assert decoded[1] == decoded[3] == {**ORDER, "quantity": 3, "currency": "EUR"}


def test_the_hot_path_waits_for_an_unknown_schema_id_and_reads_it_once_cached(codec, registry):
    data = frame(7, avro_body(SCHEMA, ORDER))
    assert codec.decode_cached(data) is None
    registry.schemas[7] = fastavro.parse_schema(SCHEMA)
    assert codec.decode_cached(data) == ORDER


def test_a_value_that_is_not_bytes_decodes_the_same(codec):
    data = codec.dumps(ORDER)
    assert codec.decode_cached(bytearray(data)) == codec.decode_cached(memoryview(data)) == ORDER


class HeldRegistryClient:
    """A registry client whose look-ups wait until released; the ids asked are kept."""

    def __init__(self) -> None:
        self.asked: list[int] = []
        self.release = threading.Event()

    def get_by_id(self, schema_id: int, timeout=None):
        self.asked.append(schema_id)
        assert self.release.wait(10), "never released"
        return SimpleNamespace(schema_type="AVRO", raw_schema=SCHEMA)


def test_askers_of_an_uncached_schema_id_share_one_registry_request_and_one_giving_up_leaves_the_others():
    cache = SchemaCache("http://registry.invalid")
    client = cache._client = HeldRegistryClient()

    async def scenario():
        askers = [asyncio.create_task(cache.fetch(7)) for _ in range(20)]
        while not client.asked:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)
        askers[0].cancel()
        client.release.set()
        return await asyncio.gather(*askers, return_exceptions=True)

    answers = asyncio.run(scenario())
    assert client.asked == [7], "one request while it was on its way"
    assert isinstance(answers[0], asyncio.CancelledError)
    assert answers[1:] == [fastavro.parse_schema(SCHEMA)] * 19
    assert asyncio.run(cache.fetch(7)) == answers[1] and client.asked == [7], "cached from then on"
