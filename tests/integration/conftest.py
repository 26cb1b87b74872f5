"""Fixtures for tests against the real stack: Kafka on 127.0.0.1:9092, the registry on :8081.

One broker and registry serve the whole session (started here when
`scripts/stack up` has not been run). Each test gets its own topics,
consumer group and table, through a unique suffix.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from avro_codec import AvroRecordCodec, SchemaCache, load_schema

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "scripts" / "stack"
FAUST = Path(sys.executable).parent / "faust"
BOOTSTRAP = "127.0.0.1:9092"
REGISTRY_URL = "http://127.0.0.1:8081"
ORDER_SCHEMA = load_schema(ROOT / "schemas" / "order.avsc")


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.integration)


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="session")
def stack():
    """The real broker and registry, shared by every test of the session."""
    started_here = subprocess.run([sys.executable, STACK, "status"], capture_output=True).returncode != 0
    if started_here:
        subprocess.run([sys.executable, STACK, "up"], check=True)
    yield
    if started_here:
        subprocess.run([sys.executable, STACK, "down"], check=True)


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_env(names: Names, **overrides: object) -> dict[str, str]:
    env = {**os.environ,
           "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "SCHEMA_REGISTRY_URL": REGISTRY_URL,
           "APP_ID": names.app_id, "ORDERS_TOPIC": names.orders, "RETRY_TOPIC": names.retry,
           "DLQ_TOPIC": names.dlq, "PARTITIONS": "3", "FAILURE_RATE": "0", "RETRY_DELAY_SECONDS": "0.5"}
    env.update({key: str(value) for key, value in overrides.items()})
    return env


class Worker:
    """`faust -A app worker` as a subprocess, with its own web port and data dir."""

    def __init__(self, names: Names, workdir: Path, label: str = "worker", **env: object) -> None:
        self.names = names
        self.env = app_env(names, **env)
        self.workdir = workdir
        self.label = label
        self.log_path = workdir / f"{label}.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> Worker:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(FAUST), "--datadir", str(self.workdir / "data"), "-A", "app", "worker", "-l", "info",
             "--web-port", str(self.port)],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_until(lambda: self._check_alive() and self.summary() is not None, timeout, f"{self.label} web view")
        return self

    def _check_alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.label} exited with {self.proc.returncode}:\n{self.log_tail()}")
        return True

    def summary(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/average/", timeout=2) as resp:
                return json.loads(resp.read())
        except OSError:
            return None

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float, what: str) -> dict:
        def check():
            self._check_alive()
            summary = self.summary()
            return summary if summary is not None and predicate(summary) else None
        try:
            return wait_until(check, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last summary {self.summary()}\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def start_worker(names, tmp_path):
    """Starts workers for this test; stops whatever is still running afterwards."""
    workers: list[Worker] = []

    def start(label: str = "worker", **env: object) -> Worker:
        worker = Worker(names, tmp_path, label, **env)
        workers.append(worker)
        return worker.start()

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def order_codec(stack, names) -> AvroRecordCodec:
    return AvroRecordCodec(SchemaCache(REGISTRY_URL), ORDER_SCHEMA, subject=f"{names.orders}-value")


def wait_for_topics(*topics: str, timeout: float = 60) -> None:
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    wait_until(lambda: set(topics) <= set(admin.list_topics(timeout=5).topics), timeout, f"topics {topics}")


def create_topic(name: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)


def produce(topic: str, records: list[tuple[bytes | None, bytes | None]],
            headers: list[tuple[str, bytes]] | None = None) -> None:
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True, "message.max.bytes": 2_097_152})
    errors: list = []
    for key, value in records:
        producer.produce(topic, key=key, value=value, headers=headers,
                         on_delivery=lambda err, _msg: err and errors.append(err))
    assert producer.flush(30) == 0 and not errors, errors


def produce_orders(codec: AvroRecordCodec, topic: str, orders: list[dict]) -> list[bytes]:
    """Send orders Avro-encoded, keyed by orderId; return the bytes sent, in order."""
    encoded = [codec.encode(order) for order in orders]
    produce(topic, [(order["orderId"].encode(), data) for order, data in zip(orders, encoded)])
    return encoded


@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    partition: int
    offset: int
    timestamp_ms: int


def record_count(topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"count-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def read_all(topic: str, timeout: float = 30) -> list[Record]:
    """Every record currently in `topic`, read from the beginning."""
    expected = record_count(topic)
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"read-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    records: list[Record] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            records.append(Record(msg.key(), msg.value(), dict(msg.headers() or []), msg.partition(),
                                  msg.offset(), msg.timestamp()[1]))
    finally:
        consumer.close()
    assert len(records) == expected, f"read {len(records)} of {expected} records from {topic}"
    return records


def orders_with_prices(prefix: str, count: int) -> list[dict]:
    """Orders whose prices are exact binary fractions, so their sum is exact in any order."""
    return [{"orderId": f"{prefix}-{i}", "product": f"product-{i % 7}", "price": (i % 400) * 0.25 + 0.5}
            for i in range(count)]


def micros(orders: list[dict]) -> int:
    return sum(int(order["price"] * 1_000_000) for order in orders)


def drained(total: int) -> Callable[[dict], bool]:
    """True once every order is either counted or dead-lettered, and no retry is in flight."""
    return lambda s: s["orders"] + s["dead_letters"] >= total and s["in_retry"] == 0


def assert_exact(orders: list[dict], summary: dict, dead_letters: list[Record]) -> None:
    """The invariant: each order counted exactly once, or in the DLQ (copies share one dedupe key)."""
    from agents import retry_headers as h
    by_origin: dict[tuple, Record] = {}
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
