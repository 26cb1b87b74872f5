"""The seed project's own design, the plain alternative a user would compare the worker with.

A confluent-kafka `DeserializingConsumer` with `AvroDeserializer` (the schema
registry client of confluent-kafka), in a consumer group, one message at a
time (`poll`), an asynchronous offset commit after each message, the count
and the price sum kept in memory (integer micros, the app's own arithmetic, so
the result can be checked against the worker's). No retries, no dead letters,
no state that survives a restart.
"""
from __future__ import annotations

import multiprocessing
import queue
import time

from confluent_kafka import DeserializingConsumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer

from orders.domain.order import InvalidOrder, validate

from .run import BenchFailure, BenchRun
from .tally import Tally

IDLE_LIMIT_S = 30


def measure_seed_design(run: BenchRun, count: int) -> Tally:
    """Consume the run's orders topic from the beginning until `count` orders are in; time from the first.

    In a child process that is killed once it has reported: with a commit per message, the consumer's
    close() would wait minutes for the group coordinator to answer the commits still in flight.
    """
    results: multiprocessing.Queue = multiprocessing.Queue()
    child = multiprocessing.Process(target=_consume, args=(run.kafka_config(), run.registry().base_url,
                                                           run.orders_topic, run.app_id("seed"), count, results))
    child.start()
    try:
        outcome = results.get(timeout=IDLE_LIMIT_S + count / 1_000)
    except queue.Empty:
        raise BenchFailure(f"seed design: no result within {IDLE_LIMIT_S + count / 1_000:.0f} s") from None
    finally:
        child.kill()
        child.join()
    if isinstance(outcome, str):
        raise BenchFailure(outcome)
    return outcome


def _consume(config: dict, registry_url: str, topic: str, group: str, count: int,
             results: multiprocessing.Queue) -> None:
    """In the child: report the result or the failure at once (the parent kills this process then)."""
    try:
        results.put(_consume_all(config, registry_url, topic, group, count))
    except Exception as exc:  # reported by the parent as the bench's failure
        results.put(f"seed design: {exc!r}")


def _consume_all(config: dict, registry_url: str, topic: str, group: str, count: int) -> Tally:
    registry = SchemaRegistryClient({"url": registry_url})
    consumer = DeserializingConsumer({
        **config, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "value.deserializer": AvroDeserializer(registry),
        # A commit per message floods the group coordinator; its request timeouts would fill the screen.
        "log_level": 2})
    orders = micros = 0
    started = last_seen = None
    consumer.subscribe([topic])
    while orders < count:
        msg = consumer.poll(1.0)
        now = time.monotonic()
        if msg is None:
            if last_seen is not None and now - last_seen > IDLE_LIMIT_S:
                raise BenchFailure(f"no message for {IDLE_LIMIT_S} s at {orders} of {count}")
            continue
        if msg.error() is not None:
            raise BenchFailure(str(msg.error()))
        started = started or now
        last_seen = now
        try:
            micros += validate(msg.value()).price_micros
            orders += 1
        except InvalidOrder as exc:
            raise BenchFailure(f"an invalid order in a bench topic: {exc}") from exc
        consumer.commit(message=msg, asynchronous=True)
    # No close(): it would wait for the coordinator to answer every commit still in flight.
    return Tally(orders, micros, time.monotonic() - started)
