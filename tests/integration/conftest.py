"""Fixtures and helpers for tests against the real broker and registry (tests/stack.py says where they are).

Each test gets its own topics, consumer group and table, through a unique
suffix, so tests never see each other's data.
"""
from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from avro_codec import AvroRecordCodec, SchemaCache, load_schema
from bench.worker_process import FAUST, ROOT, WorkerProcess, free_port  # noqa: F401  (used by the tests)
from orders.domain import headers as h
from orders.kafka import producing, reading
from tests.stack import BOOTSTRAP, REGISTRY_URL

KAFKA_CONFIG = {"bootstrap.servers": BOOTSTRAP}
ORDER_SCHEMA = load_schema(ROOT / "schemas" / "order.avsc")
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    """Every test in this folder needs the stack: `pytest -m "not integration"` leaves them out."""
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Names:
    suffix: str

    @property
    def app_id(self) -> str:
        return f"orders-app-{self.suffix}"

    @property
    def orders(self) -> str:
        return f"orders-{self.suffix}"

    @property
    def retry(self) -> str:
        return f"orders-retry-{self.suffix}"

    @property
    def dlq(self) -> str:
        return f"orders-dlq-{self.suffix}"


@pytest.fixture
def names(stack) -> Names:
    return Names(uuid.uuid4().hex[:10])


def app_env(names: Names, **overrides: object) -> dict[str, str]:
    env = {**os.environ,
           "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "SCHEMA_REGISTRY_URL": REGISTRY_URL,
           "APP_ID": names.app_id, "ORDERS_TOPIC": names.orders, "RETRY_TOPIC": names.retry,
           "DLQ_TOPIC": names.dlq, "PARTITIONS": "3", "FAILURE_RATE": "0", "RETRY_DELAY_SECONDS": "0.5"}
    env.update({key: str(value) for key, value in overrides.items()})
    return env


@pytest.fixture
def start_worker(names, tmp_path):
    """Starts workers for this test (waiting until they serve); stops whatever is still running afterwards."""
    workers: list[WorkerProcess] = []

    def start(label: str = "worker", port: int | None = None, **env: object) -> WorkerProcess:
        worker = WorkerProcess(app_env(names, **env), tmp_path, label, port)
        workers.append(worker)
        return worker.start_serving(timeout_s=90)

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def order_codec(stack, names) -> AvroRecordCodec:
    return AvroRecordCodec(SchemaCache(REGISTRY_URL), ORDER_SCHEMA, subject=f"{names.orders}-value")


def wait_for_topics(*topics: str, timeout: float = 60, config: dict = KAFKA_CONFIG) -> None:
    admin = AdminClient(config)
    wait_until(lambda: set(topics) <= set(admin.list_topics(timeout=5).topics), timeout, f"topics {topics}")


def create_topic(name: str, partitions: int = 1) -> None:
    admin = AdminClient(KAFKA_CONFIG)
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)


def produce(topic: str, records: list[tuple[bytes | None, bytes | None]],
            headers: list[tuple[str, bytes]] | None = None, config: dict = KAFKA_CONFIG) -> None:
    """Send records and wait until the broker acknowledged every one."""
    deliveries = producing.deliver(producing.producer(config),
                                  [producing.Outgoing(topic, key, value, headers or ()) for key, value in records])
    failed = [delivery.error for delivery in deliveries if delivery.error]
    assert not failed, failed


def produce_orders(codec: AvroRecordCodec, topic: str, orders: list[dict], config: dict = KAFKA_CONFIG
                   ) -> list[bytes]:
    """Send orders Avro-encoded, keyed by orderId; return the bytes sent, in order."""
    encoded = [codec.encode(order) for order in orders]
    produce(topic, [(order["orderId"].encode(), data) for order, data in zip(orders, encoded, strict=True)],
            config=config)
    return encoded


def read_all(topic: str) -> list[reading.Record]:
    """Every committed record currently in `topic`, oldest first per partition."""
    return reading.read_topic(KAFKA_CONFIG, topic)


def record_count(topic: str) -> int:
    return len(read_all(topic))


def orders_with_prices(prefix: str, count: int) -> list[dict]:
    """Orders whose prices are exact binary fractions, so their sum is exact in any order."""
    return [{"orderId": f"{prefix}-{i}", "product": f"product-{i % 7}", "price": (i % 400) * 0.25 + 0.5}
            for i in range(count)]


def micros(orders: list[dict]) -> int:
    return sum(int(order["price"] * 1_000_000) for order in orders)


def settled(predicate: Callable[[dict], bool]) -> Callable[[dict], bool]:
    """`predicate`, once every record applied is committed too: the output topics then hold what
    /average/ says (it also shows records applied in transactions still open)."""
    return lambda s: predicate(s) and s["uncommitted"] == 0


def drained(total: int) -> Callable[[dict], bool]:
    """True once every order is either counted or dead-lettered, no retry is in flight, all committed."""
    return settled(lambda s: s["orders"] + s["dead_letters"] >= total and s["in_retry"] == 0)


def assert_exact(orders: list[dict], summary: dict, dead_letters: list[reading.Record]) -> None:
    """The invariant: each order counted exactly once, or in the DLQ (copies share one dedupe key)."""
    by_origin: dict[tuple, reading.Record] = {}
    for record in dead_letters:
        origin = (record.headers[h.ORIGINAL_TOPIC], record.headers[h.ORIGINAL_PARTITION],
                  record.headers[h.ORIGINAL_OFFSET])
        assert by_origin.setdefault(origin, record).key == record.key, "one dedupe key, two orders"
    dead_ids = {record.key.decode() for record in by_origin.values()}
    assert len(dead_ids) == len(by_origin), "an order dead-lettered from two originals"
    counted = [order for order in orders if order["orderId"] not in dead_ids]
    assert summary["dead_letters"] == len(by_origin)
    assert summary["orders"] == len(counted)
    assert summary["total_price_micros"] == micros(counted)


class Producing(threading.Thread):
    """Sends orders in chunks at about `rate` per second while the test does other things."""

    def __init__(self, codec, topic: str, orders: list[dict], rate: float, chunk: int = 500,
                 config: dict = KAFKA_CONFIG) -> None:
        super().__init__(daemon=True)
        self.codec, self.topic, self.orders, self.rate, self.chunk = codec, topic, orders, rate, chunk
        self.config = config
        self.error: BaseException | None = None
        #: how many of `orders` (from the first) were sent
        self.sent = 0
        self._stop_asked = threading.Event()

    def run(self) -> None:
        try:
            for start in range(0, len(self.orders), self.chunk):
                if self._stop_asked.is_set():
                    return
                began = time.monotonic()
                chunk = self.orders[start:start + self.chunk]
                produce_orders(self.codec, self.topic, chunk, self.config)
                self.sent += len(chunk)
                self._stop_asked.wait(max(0.0, self.chunk / self.rate - (time.monotonic() - began)))
        except BaseException as exc:  # reported by the test thread
            self.error = exc

    def finish(self) -> None:
        self.join(300)
        assert not self.is_alive() and self.error is None, f"producing failed: {self.error!r}"

    def stop(self) -> list[dict]:
        """Stop after the chunk being sent; the orders that were sent."""
        self._stop_asked.set()
        self.finish()
        return self.orders[:self.sent]


def kill_mid_stream(worker: WorkerProcess, producing: Producing, rng: random.Random,
                    pause_s: tuple[float, float]) -> dict:
    """Once the worker has made progress, wait a random moment and SIGKILL it while orders still arrive;
    return its /average/ just before the kill."""
    started = worker.summary()["orders"]
    worker.wait_for(lambda s: s["orders"] >= started + 100, 60, "progress before the kill")
    time.sleep(rng.uniform(*pause_s))
    assert producing.is_alive(), "killed after the last order was sent: the kill would not land mid-stream"
    before = worker.summary()
    worker.kill()
    return before
