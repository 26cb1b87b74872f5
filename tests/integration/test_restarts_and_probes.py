"""Workers that restart without stopping the others (static membership, WORKER_ID), and the probes an
orchestrator uses (`/healthz`, `/readyz`)."""
from __future__ import annotations

import json
import random
import re
import threading
import time

from orders.kafka import producing
from tests.stack import USES_LOCAL_STACK, stack_command

from .conftest import (
    KAFKA_CONFIG,
    Producing,
    assert_exact,
    drained,
    kill_mid_stream,
    orders_with_prices,
    produce,
    produce_orders,
    read_all,
    wait_for_topics,
    wait_until,
)

STEADY = dict(PARTITIONS=6, FAILURE_RATE=0.1, RETRY_DELAY_SECONDS=0.2, MAX_RETRIES=3, ORDER_LOG_LINES_PER_SECOND=0)
REVOKING = "Revoking previously assigned partitions"


def own_orders(stats: dict[int, dict] | None, partitions: set[int]) -> int:
    return sum(stats[p]["orders"] for p in partitions) if stats and partitions <= set(stats) else -1


def split_between(workers: list, partitions: int = 6) -> bool:
    """Every partition owned, each worker owning some: the group has settled on all of them."""
    owned = [set(worker.partition_stats() or ()) for worker in workers]
    return all(owned) and sum(len(mine) for mine in owned) == partitions == len(set().union(*owned))


def test_a_worker_restarted_with_its_worker_id_resumes_within_seconds_and_the_other_keeps_its_partitions(
        names, start_worker, order_codec, capsys):
    first = start_worker("s1", WORKER_ID=f"{names.suffix}-1", **STEADY)
    second = start_worker("s2", WORKER_ID=f"{names.suffix}-2", **STEADY)
    wait_for_topics(names.orders)
    wait_until(lambda: split_between([first, second]), 60, "the two workers to share the partitions")
    orders = orders_with_prices("st", 9_000)
    producing = Producing(order_codec, names.orders, orders, rate=300, chunk=100)
    producing.start()
    rng = random.Random(7)
    took = []
    for round_ in range(1, 3):
        mine = set(first.partition_stats())
        assert mine, "the first worker owns partitions"
        own_before_kill = own_orders(first.partition_stats(), mine)
        second_log = len(second.log_text())
        kill_mid_stream(first, producing, rng, pause_s=(0.5, 2.0))
        killed_at = time.monotonic()
        # Where it was, as a StatefulSet's pod comes back: the same WORKER_ID, the same web URL.
        first = start_worker(f"s1-again-{round_}", port=first.port, WORKER_ID=f"{names.suffix}-1", **STEADY)
        wait_until(lambda w=first, m=mine, n=own_before_kill: own_orders(w.partition_stats(), m) > n, 60,
                   "the restarted worker's own partitions to progress past the count before the kill", interval=0.05)
        took.append(time.monotonic() - killed_at)
        assert REVOKING not in second.log_text()[second_log:], "the other worker's partitions were revoked"
    # Back on another web port: the group keeps the assignment for the WORKER_ID but the URL changed; the worker
    # must not hang on it (it asks for a rebalance, and the others learn the new URL).
    kill_mid_stream(first, producing, rng, pause_s=(0.5, 2.0))
    first = start_worker("s1-elsewhere", WORKER_ID=f"{names.suffix}-1", **STEADY)
    wait_until(lambda: split_between([first, second]), 60, "the worker back on another URL with partitions")
    assert "asking the group to rebalance so that every worker learns the new one" in first.log_text()
    producing.finish()
    summary = first.wait_for(drained(len(orders)), 180, "every order counted or dead-lettered")
    assert_exact(orders, summary, read_all(names.dlq))
    assert all(seconds < 5 for seconds in took), f"SIGKILL to progress past the count before it: {took}"
    assert first.stop() == 0 and second.stop() == 0
    with capsys.disabled():
        print(f"\n[static membership] SIGKILL and restart to progress past the count before the kill: "
              f"{', '.join(f'{s:.1f}s' for s in took)}; the other worker was never revoked")


def joins(log: str) -> list[int]:
    """The group generations a worker's log says it joined, in order."""
    return [int(generation) for generation in re.findall(r"Joined group '[^']+' \(generation (\d+)\)", log)]


def test_a_transaction_an_earlier_owner_left_open_holds_only_its_partition_and_never_the_rebalance(
        names, start_worker, order_codec, capsys):
    """A worker killed in the middle of its commit leaves a transaction open on the changelog until the broker
    aborts it (up to 20 s later). Taking its partition over used to wait for that inside the rebalance callback,
    where aiokafka sends no heartbeats: past the session timeout the group dropped the member and rebalanced
    again, every partition stopping each time."""
    settings = dict(STEADY, FAILURE_RATE=0, BROKER_SESSION_TIMEOUT_SECONDS=6)
    first = start_worker("o1", **settings)
    changelog = f"{names.app_id}-order-stats-changelog"
    wait_for_topics(names.orders, changelog)
    wait_until(lambda: len(first.partition_stats() or ()) == 6, 60, "the first worker to own every partition")
    orders = orders_with_prices("lo", 3_000)
    produce_orders(order_codec, names.orders, orders)
    first.wait_for(drained(len(orders)), 60, "the first orders counted")

    # What a worker killed between writing its changelog record and committing leaves on partition 0.
    left_open = producing.producer(KAFKA_CONFIG, **{"transactional.id": f"{names.app_id}-killed-mid-commit",
                                                     "transaction.timeout.ms": 120_000})
    left_open.init_transactions(30)
    left_open.begin_transaction()
    producing.produce(left_open, changelog, key=b"0", value=b'{"orders": 999999}', partition=0,
                      on_delivery=lambda err, msg: None)
    left_open.flush(30)
    first_log = len(first.log_text())
    second = start_worker("o2", **settings)
    opened = time.monotonic()
    more = orders_with_prices("lo2", 3_000)
    produce_orders(order_codec, names.orders, more)
    on_zero = sum(1 for record in read_all(names.orders) if record.partition == 0)
    workers = [first, second]

    def counted() -> dict[int, int]:
        found: dict[int, int] = {}
        for worker in workers:
            found.update({partition: stats["orders"] for partition, stats in (worker.partition_stats() or {}).items()})
        return found
    wait_until(lambda: (c := counted()) and 0 not in c and sum(c.values()) == 6_000 - on_zero, 60,
               "every partition but 0 to count its orders while the transaction stays open")
    drained_others_s = time.monotonic() - opened
    time.sleep(max(0.0, 15 - drained_others_s))  # past two session timeouts
    assert 0 not in counted(), "partition 0 waits for the open transaction"
    joined = (joins(first.log_text()[first_log:]), joins(second.log_text()))
    left_open.abort_transaction(30)
    aborted = time.monotonic()
    summary = first.wait_for(drained(6_000), 60, "partition 0 counted once the transaction ended")
    taken_over_s = time.monotonic() - aborted
    assert_exact(orders + more, summary, read_all(names.dlq))
    assert len(joined[0]) == 1 and joined[0] == joined[1], \
        f"one rebalance, both workers in it: generations joined {joined}"
    assert first.stop() == 0 and second.stop() == 0
    with capsys.disabled():
        print(f"\n[left open] with a transaction open on changelog partition 0 for {aborted - opened:.1f}s: the "
              f"other partitions drained in {drained_others_s:.1f}s, one rebalance (generations {joined}); "
              f"partition 0 counted {taken_over_s:.1f}s after the abort")


class AggregateWatch(threading.Thread):
    """Reads /average/ from whichever worker answers, and keeps the complete answers (every partition
    reported, no worker unreachable) in the order they came."""

    def __init__(self, workers: list) -> None:
        super().__init__(daemon=True)
        self.workers = workers
        self.complete: list[int] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            for worker in list(self.workers):
                summary = worker.summary()
                if summary and summary["partitions"] == 6 and not summary["unreachable_workers"]:
                    self.complete.append(summary["orders"])
            time.sleep(0.05)

    def finish(self) -> list[int]:
        self._done.set()
        self.join(10)
        return self.complete


def test_a_rolling_restart_of_two_workers_never_makes_the_aggregate_go_backwards(
        names, start_worker, order_codec, capsys):
    workers = [start_worker(f"r{n}", WORKER_ID=f"{names.suffix}-{n}", **STEADY) for n in (1, 2)]
    wait_for_topics(names.orders)
    wait_until(lambda: split_between(workers), 60, "the two workers to share the partitions")
    orders = orders_with_prices("ro", 6_000)
    producing = Producing(order_codec, names.orders, orders, rate=300, chunk=100)
    producing.start()
    watch = AggregateWatch(workers)
    watch.start()
    for index in (0, 1):
        time.sleep(2)
        assert workers[index].stop() == 0
        workers[index] = start_worker(f"r{index + 1}-again", port=workers[index].port,
                                      WORKER_ID=f"{names.suffix}-{index + 1}", **STEADY)
        watch.workers = list(workers)
        wait_until(lambda: split_between(workers), 60, "the restarted worker back with its partitions")
    producing.finish()
    summary = workers[0].wait_for(drained(len(orders)), 180, "every order counted or dead-lettered")
    seen = watch.finish()
    assert_exact(orders, summary, read_all(names.dlq))
    backwards = [(a, b) for a, b in zip(seen, seen[1:], strict=False) if b < a]
    assert len(seen) > 50 and not backwards, f"the aggregate went backwards: {backwards[:5]}"
    for worker in workers:
        assert worker.stop() == 0
    with capsys.disabled():
        print(f"\n[rolling restart] {len(seen)} complete /average/ answers, never backwards; {summary}")


def test_readyz_answers_503_during_recovery_then_200(names, start_worker, tmp_path):
    from bench.worker_process import WorkerProcess

    from .conftest import app_env, create_topic
    # A long changelog for partition 0: Faust's recovery reads every record of it before the worker is ready.
    changelog = f"{names.app_id}-order-stats-changelog"
    create_topic(changelog, partitions=1)
    state = json.dumps({"orders": 0, "total_micros": 0, "retries": 0, "dead_letters": 0, "applied": {},
                        "retry_seq_sent": 0, "retry_seq_done": 0}).encode()
    produce(changelog, [(b"0", state)] * 300_000)
    worker = WorkerProcess(app_env(names, PARTITIONS=1), tmp_path, "recovering").start()
    statuses = []
    try:
        wait_until(lambda: statuses.append(worker.get("/readyz")) or statuses[-1][0] == 200, 120,
                   "/readyz to answer 200", interval=0.05)
        answered = [(status, body) for status, body in statuses if status]
        assert answered[0][0] == 503, answered[:3]
        reasons = {reason for status, body in answered if status == 503 for reason in body["reasons"]}
        assert "recovering the table's partitions" in reasons, reasons
        assert worker.stop() == 0
    finally:
        worker.stop()


def test_healthz_answers_while_kafka_is_down_and_readyz_says_why_it_is_not_ready(names, start_worker):
    assert USES_LOCAL_STACK, "this test stops and starts the local broker"
    worker = start_worker(PARTITIONS=1)
    wait_until(lambda: worker.get("/readyz")[0] == 200, 60, "/readyz to answer 200")
    assert stack_command("stop-broker", timeout_s=120).returncode == 0
    try:
        assert worker.get("/healthz") == (200, {"status": "ok"})
        status, body = wait_until(lambda: (answer := worker.get("/readyz"))[0] == 503 and answer, 30,
                                  "/readyz to answer 503")
        assert any(reason.startswith("Kafka does not answer") for reason in body["reasons"]), body
    finally:
        assert stack_command("start-broker", timeout_s=180).returncode == 0
    wait_until(lambda: worker.get("/readyz")[0] == 200, 120, "/readyz to answer 200 again")
    assert worker.stop() == 0
