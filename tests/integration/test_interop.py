"""Records cross between confluent-kafka's Avro serde and the Faust codec, through the real registry."""
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from .conftest import ROOT, create_topic, produce, read_all

ORDER = {"orderId": "i-1", "product": "Phone", "price": 249.75}


def test_confluent_avro_serializer_output_is_read_by_the_faust_codec(names, order_codec):
    client = SchemaRegistryClient({"url": order_codec.registry.base_url})
    serializer = AvroSerializer(client, (ROOT / "schemas" / "order.avsc").read_text())
    data = serializer(ORDER, SerializationContext(names.orders, MessageField.VALUE))
    create_topic(names.orders)
    produce(names.orders, [(b"i-1", data)])
    (record,) = read_all(names.orders)
    assert order_codec.loads(record.value) == ORDER


def test_faust_codec_output_is_read_by_the_confluent_avro_deserializer(names, order_codec):
    client = SchemaRegistryClient({"url": order_codec.registry.base_url})
    create_topic(names.orders)
    produce(names.orders, [(b"i-1", order_codec.encode(ORDER))])
    (record,) = read_all(names.orders)
    deserializer = AvroDeserializer(client)
    assert deserializer(record.value, SerializationContext(names.orders, MessageField.VALUE)) == ORDER
