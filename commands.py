"""`faust -A app produce-orders`: the classic demo producer, on confluent-kafka."""
from __future__ import annotations

import asyncio
import json
import random
import uuid

from confluent_kafka import SerializingProducer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import StringSerializer
from faust.cli import option

from app import ORDER_SCHEMA, app, registry, settings
from kafka_security import confluent_config, registry_auth
from topic_setup import ensure_topics

PRODUCTS = ["Laptop", "Phone", "Tablet", "Monitor", "Keyboard", "Mouse", "Headphones", "Camera"]


def order_producer() -> SerializingProducer:
    registry_config = {"url": registry.base_url}
    if (auth := registry_auth(settings)) is not None:
        registry_config["basic.auth.user.info"] = ":".join(auth)
    return SerializingProducer({
        **confluent_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "key.serializer": StringSerializer("utf_8"),
        "value.serializer": AvroSerializer(SchemaRegistryClient(registry_config), ORDER_SCHEMA.read_text()),
    })


def random_order() -> dict:
    return {"orderId": f"o-{uuid.uuid4().hex[:8]}", "product": random.choice(PRODUCTS),
            "price": round(random.uniform(5, 2000), 2), "quantity": random.randint(1, 3), "currency": "USD"}


@app.command(
    option("--count", type=int, default=20, show_default=True, help="Orders to send."),
    option("--interval", type=float, default=2.0, show_default=True, help="Seconds between orders."),
)
async def produce_orders(self, count: int, interval: float) -> None:
    """Send random orders to the orders topic, keyed by orderId, printing each delivery."""
    ensure_topics(settings, settings.startup_timeout_seconds)
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
            if interval:
                producer.flush(10)  # print each delivery before the pause, as the demo reads best
                if i < count - 1:
                    await asyncio.sleep(interval)
            else:
                producer.poll(0)
    finally:
        remaining = producer.flush(30)
    if failed or remaining:
        raise SystemExit(f"{len(failed)} order(s) failed, {remaining} undelivered")
