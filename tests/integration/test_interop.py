"""Records cross between confluent-kafka's Avro serde and the Faust codec, through the real registry,
and compressed batches from other producers reach the worker."""
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from .conftest import BOOTSTRAP, ROOT, create_topic, micros, orders_with_prices, produce, read_all, wait_for_topics

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


def test_orders_in_compressed_batches_of_every_kafka_codec_are_counted(names, start_worker, order_codec):
    worker = start_worker()
    wait_for_topics(names.orders)
    orders = orders_with_prices("z", 80)
    for i, compression in enumerate(("gzip", "snappy", "lz4", "zstd")):
        chunk = orders[i * 20:(i + 1) * 20]
        producer = Producer({"bootstrap.servers": BOOTSTRAP, "compression.type": compression, "linger.ms": 50})
        for order in chunk:
            producer.produce(names.orders, key=order["orderId"].encode(), value=order_codec.encode(order))
        assert producer.flush(30) == 0

    summary = worker.wait_for(lambda s: s["orders"] >= len(orders), 60, "compressed orders counted")
    assert (summary["orders"], summary["total_price_micros"], summary["dead_letters"]) == \
        (len(orders), micros(orders), 0)
