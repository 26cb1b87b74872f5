"""The seed project's own design, the plain alternative a user would compare the worker with.

A confluent-kafka `DeserializingConsumer` with `AvroDeserializer` (the schema
registry client of confluent-kafka), in a consumer group, one message at a
time (`poll`), an asynchronous offset commit after each message, the count
and the price sum kept in memory (integer micros, the app's own arithmetic, so
the result can be checked against the worker's). No retries, no dead letters,
no state that survives a restart.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import DeserializingConsumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer

from orders.domain.order import InvalidOrder, validate

from .run import BenchFailure, BenchRun

IDLE_LIMIT_S = 30


@dataclass
class SeedResult:
    orders: int
    total_micros: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        return self.orders / self.elapsed_s if self.elapsed_s > 0 else float("inf")


def measure_seed_design(run: BenchRun, count: int) -> SeedResult:
    """Consume the run's orders topic from the beginning until `count` orders are in; time from the first."""
    registry = SchemaRegistryClient({"url": run.registry().base_url})
    consumer = DeserializingConsumer({
        **run.kafka_config(), "group.id": run.app_id("seed"), "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "value.deserializer": AvroDeserializer(registry)})
    orders = micros = 0
    started = last_seen = None
    try:
        consumer.subscribe([run.orders_topic])
        while orders < count:
            msg = consumer.poll(1.0)
            now = time.monotonic()
            if msg is None:
                if last_seen is not None and now - last_seen > IDLE_LIMIT_S:
                    raise BenchFailure(f"seed design: no message for {IDLE_LIMIT_S} s at {orders} of {count}")
                continue
            if msg.error() is not None:
                raise BenchFailure(f"seed design: {msg.error()}")
            started = started or now
            last_seen = now
            try:
                micros += validate(msg.value()).price_micros
                orders += 1
            except InvalidOrder as exc:
                raise BenchFailure(f"seed design: an invalid order in a bench topic: {exc}") from exc
            consumer.commit(message=msg, asynchronous=True)
        elapsed = time.monotonic() - started
    finally:
        consumer.close()
    return SeedResult(orders, micros, elapsed)
