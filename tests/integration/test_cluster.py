"""A real cluster (issue 18): three KRaft brokers started by `scripts/stack --brokers 3 up`, the app's topics
replicated three times, and a lost broker, the leader of most `orders` partitions or the transaction
coordinator of the workers' producers, loses nothing."""
from __future__ import annotations

import random
import re
import socket
import threading
import time
from collections import Counter

import pytest
from confluent_kafka.admin import AdminClient

from bench.worker_process import WorkerProcessError
from orders.kafka import reading
from tests.stack import CLUSTER_BOOTSTRAP, USES_LOCAL_STACK, stack_command

from .conftest import Producing, assert_exact, drained, orders_with_prices, wait_for_topics

CLUSTER_CONFIG = {"bootstrap.servers": CLUSTER_BOOTSTRAP}
#: The workers on the cluster: random failures, one retry, a short delay.
ON_CLUSTER = dict(KAFKA_BOOTSTRAP_SERVERS=CLUSTER_BOOTSTRAP, PARTITIONS=6, FAILURE_RATE=0.2, MAX_RETRIES=1,
                  RETRY_DELAY_SECONDS=0.2, ORDER_LOG_LINES_PER_SECOND=0)


@pytest.fixture(scope="module")
def cluster(stack):
    """The three-broker cluster, for this module (the one-broker stack and its registry run beside it)."""
    assert USES_LOCAL_STACK, "the cluster tests start and stop brokers of the local stack"
    assert stack_command("--brokers", "3", "up", timeout_s=300).returncode == 0, "scripts/stack --brokers 3 up"
    yield
    stack_command("--brokers", "3", "down", timeout_s=180)


def kafka_cli(*args: str) -> str:
    """Kafka's own CLI against the cluster, through scripts/stack; its standard output."""
    done = stack_command("--brokers", "3", *args, timeout_s=120, capture=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def replication_gaps() -> list[str]:
    """Partitions of every topic, the offsets and transaction-state topics included, that have no leader or
    a replica out of sync (a broker restarted a moment ago is still catching up)."""
    metadata = AdminClient(CLUSTER_CONFIG).list_topics(timeout=10)
    return [f"{name}[{partition.id}] leader {partition.leader}, in sync {sorted(partition.isrs)} of "
            f"{sorted(partition.replicas)}"
            for name, topic in sorted(metadata.topics.items()) for partition in topic.partitions.values()
            if partition.leader < 0 or len(partition.isrs) < len(partition.replicas)]


def wait_until_fully_replicated(timeout_s: float = 120) -> float:
    """Seconds until every partition has all its replicas in sync again."""
    started = time.monotonic()
    while (gaps := replication_gaps()) and time.monotonic() - started < timeout_s:
        time.sleep(0.5)
    assert not gaps, f"{len(gaps)} partition(s) still not fully replicated after {timeout_s:.0f}s: {gaps[:10]}"
    return time.monotonic() - started


def leaders(topic: str) -> Counter:
    """Node id -> partitions of `topic` it leads."""
    metadata = AdminClient(CLUSTER_CONFIG).list_topics(topic, timeout=10)
    return Counter(partition.leader for partition in metadata.topics[topic].partitions.values())


class Progress(threading.Thread):
    """Polls a worker's /average/ and keeps the longest stretch without progress while orders still arrive."""

    def __init__(self, worker, producing: Producing) -> None:
        super().__init__(daemon=True)
        self.worker, self.producing = worker, producing
        self.longest_stall_s = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        last_value, since = -1, time.monotonic()
        while not self._done.is_set():
            summary = self.worker.summary()
            now = time.monotonic()
            value = None if summary is None else summary["orders"] + summary["dead_letters"] + summary["retries"]
            if value is not None and value > last_value:
                last_value, since = value, now
            elif self.producing.is_alive():
                self.longest_stall_s = max(self.longest_stall_s, now - since)
            time.sleep(0.2)

    def finish(self) -> float:
        self._done.set()
        self.join(10)
        return self.longest_stall_s


def test_every_topic_the_app_creates_on_the_cluster_has_three_replicas_and_min_isr_two(
        names, cluster, start_worker):
    worker = start_worker(**ON_CLUSTER)
    topics = [names.orders, names.retry, names.dlq, f"{names.app_id}-order-stats-changelog"]
    for topic in topics:
        described = kafka_cli("kafka-topics", "--describe", "--topic", topic)
        assert "ReplicationFactor: 3" in described, described
        assert "min.insync.replicas=2" in described, described
        assert len(re.findall(r"Isr: \d+,\d+,\d+", described)) == 6, described
    assert "replica" not in worker.log_text(), "no replication warning on a replicated cluster"
    assert worker.stop() == 0


def transaction_coordinator(transactional_id: str) -> int:
    """The node that coordinates a producer's transactions, as Kafka's own `kafka-transactions` tells."""
    described = kafka_cli("kafka-transactions", "describe", "--transactional-id", transactional_id)
    header, row = [line.split() for line in described.strip().splitlines()[:2]]
    return int(dict(zip(header, row, strict=False))["CoordinatorId"])


def test_losing_the_orders_leader_and_then_a_transaction_coordinator_loses_nothing(
        names, cluster, start_worker, order_codec, capsys):
    first = start_worker("c1", **ON_CLUSTER)
    second = start_worker("c2", **ON_CLUSTER)
    wait_for_topics(names.orders, config=CLUSTER_CONFIG)
    # More than the test needs: orders still arrive at each loss (what "progress" means), and the test
    # stops producing after the second.
    orders = orders_with_prices("cl", 60_000)
    producing = Producing(order_codec, names.orders, orders, rate=300, chunk=150, config=CLUSTER_CONFIG)
    producing.start()
    progress = Progress(first, producing)
    progress.start()
    rng = random.Random(20261129)
    losses = []

    def lose(node: int, why: str) -> None:
        # One broker lost at a time: a broker restarted a moment ago may still be catching up, and losing
        # another then leaves partitions below min.insync.replicas (no progress, by design, until it has).
        in_sync_s = wait_until_fully_replicated()
        assert producing.is_alive(), "every order was sent before the broker was lost: nothing left to progress on"
        before = first.summary()
        stack_command("--brokers", "3", "kill-broker", str(node))
        killed_at = time.monotonic()
        try:
            progress_at, _summary = first.wait_for_timed(lambda s: s["orders"] > before["orders"], 120,
                                                         f"progress with broker {node} down")
        except WorkerProcessError as exc:
            raise AssertionError(f"{exc}\npartitions not fully replicated: {replication_gaps()}") from exc
        time.sleep(rng.uniform(3.0, 6.0))
        assert stack_command("--brokers", "3", "start-broker", str(node), timeout_s=180).returncode == 0
        losses.append(f"{why}: node {node} SIGKILLed once every partition was in sync (waited {in_sync_s:.1f}s), "
                      f"progress again {progress_at - killed_at:.1f}s later")

    first.wait_for(lambda s: s["orders"] >= 1_000, 60, "progress before the first kill")
    leader, _count = leaders(names.orders).most_common(1)[0]
    lose(leader, "leader of the most orders partitions")
    first.wait_for(lambda s: s["orders"] >= 5_000, 120, "progress after the first broker came back")
    # The worker's one producer: its transactional id is the app's, the host's and the web port's (no WORKER_ID).
    coordinator = transaction_coordinator(f"{names.app_id}-{socket.gethostname()}-{first.port}")
    lose(coordinator, "transaction coordinator of the first worker's producer")
    sent = producing.stop()
    summary = first.wait_for(drained(len(sent)), 240, "every order counted or dead-lettered")
    longest = progress.finish()
    assert_exact(sent, summary, reading.read_topic(CLUSTER_CONFIG, names.dlq))
    assert first.stop() == 0 and second.stop() == 0
    with capsys.disabled():
        print(f"\n[cluster] {'; '.join(losses)}; longest stretch without progress {longest:.1f}s; {summary}")
