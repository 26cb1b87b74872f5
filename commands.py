"""`faust -A app produce-orders`: the classic demo producer, on confluent-kafka."""
from __future__ import annotations

import asyncio
import json
import random
import uuid

from confluent_kafka import KafkaException, SerializingProducer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import StringSerializer
from faust.cli import option

from app import ORDER_SCHEMA, app, registry, settings

PRODUCTS = ["Laptop", "Phone", "Tablet", "Monitor", "Keyboard", "Mouse", "Headphones", "Camera"]


def ensure_topics(bootstrap: str) -> None:
    """Create the app's topics if a worker has not yet; the broker does not auto-create them."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=10).topics
    missing = [NewTopic(name, num_partitions=settings.partitions, replication_factor=1)
               for name in (settings.orders_topic, settings.retry_topic, settings.dlq_topic) if name not in existing]
    for name, future in admin.create_topics(missing).items() if missing else ():
        try:
            future.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def order_producer() -> SerializingProducer:
    registry_client = SchemaRegistryClient({"url": registry.base_url})
    return SerializingProducer({
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "key.serializer": StringSerializer("utf_8"),
        "value.serializer": AvroSerializer(registry_client, ORDER_SCHEMA.read_text()),
    })


def random_order() -> dict:
    return {"orderId": f"o-{uuid.uuid4().hex[:8]}", "product": random.choice(PRODUCTS),
            "price": round(random.uniform(5, 2000), 2)}


@app.command(
    option("--count", type=int, default=20, show_default=True, help="Orders to send."),
    option("--interval", type=float, default=2.0, show_default=True, help="Seconds between orders."),
)
async def produce_orders(self, count: int, interval: float) -> None:
    """Send random orders to the orders topic, keyed by orderId, printing each delivery."""
    ensure_topics(settings.kafka_bootstrap_servers)
    producer = order_producer()
    failed = []

    def report(err, msg) -> None:
        if err is not None:
            failed.append(err)
            self.say(f"delivery failed: {err}")
        else:
            self.say(f"sent {msg.key().decode()} -> {msg.topic()}[{msg.partition()}]@{msg.offset()}")

    try:
        for i in range(count):
            order = random_order()
            self.say(f"order {json.dumps(order)}")
            producer.produce(settings.orders_topic, key=order["orderId"], value=order, on_delivery=report)
            producer.poll(0)
            if interval and i < count - 1:
                await asyncio.sleep(interval)
    finally:
        remaining = producer.flush(30)
    if failed or remaining:
        raise SystemExit(f"{len(failed)} order(s) failed, {remaining} undelivered")
