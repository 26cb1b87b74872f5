"""The local stack is real: a schema registers in the registry and Avro crosses the broker."""
import json
import urllib.request

from .conftest import REGISTRY_URL, create_topic, produce, read_all


def test_schema_registers_and_an_avro_message_round_trips_through_the_broker(names, order_codec):
    order = {"orderId": "smoke-1", "product": "Laptop", "price": 999.5}
    data = order_codec.encode(order)

    subject = f"{names.orders}-value"
    base = order_codec.registry.base_url
    with urllib.request.urlopen(f"{base}/subjects/{subject}/versions/latest", timeout=10) as resp:
        registered = json.loads(resp.read())
    assert registered["id"] == order_codec.schema_id
    assert json.loads(registered["schema"])["name"] == "Order"

    create_topic(names.orders)
    produce(names.orders, [(b"smoke-1", data)])
    (record,) = read_all(names.orders)
    assert record.value == data
    assert order_codec.loads(record.value) == order


def test_registry_refuses_an_incompatible_change_by_default(names, order_codec):
    order_codec.register_schema()  # v1
    incompatible = {**order_codec.raw_schema,
                    "fields": [f if f["name"] != "price" else {**f, "type": "string"}
                               for f in order_codec.raw_schema["fields"]]}
    request = urllib.request.Request(
        f"{order_codec.registry.base_url}/subjects/{names.orders}-value/versions", method="POST",
        data=json.dumps({"schema": json.dumps(incompatible)}).encode(),
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    try:
        urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 409
    else:
        raise AssertionError("the registry accepted an incompatible schema")
    assert REGISTRY_URL in order_codec.registry.base_url
