"""Retries that hold nothing up, and an error boundary around every record (issue 17), on the real stack:
waiting copies, copies whose not-before lies a day ahead, a registry answering 502 pages, faults at random
points while records are applied, and an output the broker refuses."""
from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from orders.domain import headers as h
from orders.domain.headers import Attempt, retry_headers
from orders.kafka import producing
from tests.stack import REGISTRY_URL

from .conftest import (
    KAFKA_CONFIG,
    Producing,
    assert_exact,
    create_topic,
    drained,
    kill_mid_stream,
    micros,
    orders_with_prices,
    produce,
    produce_orders,
    read_all,
    wait_for_topics,
    wait_until,
)
from .prometheus import Prometheus
from .registry_proxy import RegistryProxy

DAY_MS = 86_400_000
REBALANCE_ASKED = "asking the group to rebalance"


def produce_to(topic: str, partition: int, records: list[tuple[bytes, bytes]], headers=()) -> None:
    """Send records to one partition and wait for every acknowledgement."""
    deliveries = producing.deliver(producing.producer(KAFKA_CONFIG), [
        producing.Outgoing(topic, key, value, list(headers), partition=partition) for key, value in records])
    assert not [d.error for d in deliveries if d.error], deliveries


def stop_within(worker, seconds: float) -> float:
    """SIGTERM; the worker must exit 0 within `seconds`. Returns how long it took."""
    started = time.monotonic()
    code = worker.stop(timeout_s=seconds + 5)
    took = time.monotonic() - started
    assert code == 0, f"SIGTERM ended {worker.label} with {code}\n{worker.log_tail()}"
    assert took < seconds, f"{worker.label} took {took:.1f}s to stop\n{worker.log_tail()}"
    return took


# -- a waiting retry copy holds up no first attempt -----------------------------------------------

@pytest.mark.parametrize("run", [1, 2, 3])
def test_retry_copies_waiting_two_minutes_hold_up_no_first_attempt(run, names, start_worker, order_codec, capsys):
    worker = start_worker(PARTITIONS=6, FAILURE_RATE=0.5, RETRY_DELAY_SECONDS=120, ORDER_LOG_LINES_PER_SECOND=0)
    wait_for_topics(names.orders, names.retry)
    orders = orders_with_prices(f"wait{run}", 20_000)
    produce_orders(order_codec, names.orders, orders)
    produced_at = time.monotonic()

    seen_at, summary = worker.wait_for_timed(lambda s: s["orders"] + s["in_retry"] >= len(orders), 60,
                                             "every first attempt counted or sent to retry")
    took = seen_at - produced_at
    assert took <= 10, f"the first attempts took {took:.1f}s after the last order was produced: {summary}"
    assert summary["orders"] + summary["in_retry"] == len(orders) and summary["dead_letters"] == 0
    assert 9_000 <= summary["orders"] <= 11_000, "about half fail their first attempt (FAILURE_RATE=0.5)"
    stopped_s = stop_within(worker, 10)
    with capsys.disabled():
        print(f"\n[waiting copies, run {run}] every first attempt of 20,000 resolved {took:.1f}s after the last "
              f"was produced: {summary['orders']:,} counted, {summary['in_retry']:,} held for 120 s; "
              f"SIGTERM took {stopped_s:.1f}s")


# -- a not-before a day ahead blocks nothing --------------------------------------------------------

def test_copies_whose_not_before_lies_a_day_ahead_hold_up_nothing_and_are_cut_to_the_policy(
        names, start_worker, order_codec, capsys):
    settings = dict(PARTITIONS=3, SIMULATED_FAILURES="skew-0:1,skew-1:1,late-0:1,late-1:1",
                    ORDER_LOG_LINES_PER_SECOND=0)
    for topic in (names.orders, names.retry, names.dlq):
        create_topic(topic, partitions=3)
    ghost_value = order_codec.encode({"orderId": "ghost", "product": "p", "price": 1.0})
    far = int(time.time() * 1000) + DAY_MS
    # On orders-retry[0], before anything else: copies no worker of this app ever sent, a day ahead: ten
    # without a sequence number, ten with this app's id and numbers its partition never reached.
    for seq in [None] * 10 + list(range(1, 11)):
        headers = [(n, v) for n, v in retry_headers(Attempt(names.orders, 0, 900), RuntimeError("earlier"),
                                                    far - DAY_MS, far, seq=seq or 1, app_id=names.app_id)
                   if seq is not None or n != h.RETRY_SEQ]
        produce_to(names.retry, 0, [(b"ghost", ghost_value)], headers)

    # A worker that writes its copies a day ahead (as a clock running a day ahead would).
    first = start_worker("day-ahead", RETRY_DELAY_SECONDS=86_400, **settings)
    first.wait_for(lambda s: s["dead_letters"] == 20 and s["uncommitted"] == 0, 30,
                   "the 20 copies never sent dead-lettered at once")
    skewed = [{"orderId": f"skew-{i}", "product": "p", "price": 2.0} for i in range(2)]
    produce_to(names.orders, 0, [(o["orderId"].encode(), order_codec.encode(o)) for o in skewed])
    first.wait_for(lambda s: s["in_retry"] == 2, 30, "the two orders that fail once in retry, a day ahead")
    bulk = orders_with_prices("bulk", 3_000)
    produce_orders(order_codec, names.orders, bulk)
    first.wait_for(lambda s: s["orders"] == 3_000, 60, "the orders behind the waiting copies counted")
    time.sleep(30)  # longer than the watchdog's stall threshold, with the copies still waiting
    assert first.summary()["in_retry"] == 2
    assert REBALANCE_ASKED not in first.log_text()
    first_stop = stop_within(first, 10)

    # The next worker has the 2 s delay: the day-ahead copies are cut to their timestamp + 2 s + 1 s.
    second = start_worker("policy", RETRY_DELAY_SECONDS=2, **settings)
    started = second.started_at
    late = [{"orderId": f"late-{i}", "product": "p", "price": 4.0} for i in range(2)]
    produce_to(names.orders, 0, [(o["orderId"].encode(), order_codec.encode(o)) for o in late])
    more = orders_with_prices("more", 3_000)
    produce_orders(order_codec, names.orders, more)
    everything = bulk + more + skewed + late
    resolved_at, summary = second.wait_for_timed(
        lambda s: s["orders"] == len(everything) and s["in_retry"] == 0 and s["uncommitted"] == 0, 60,
        "every order counted, the day-ahead copies and the new failures included")
    assert summary["total_price_micros"] == micros(everything) and summary["dead_letters"] == 20
    clamped = [line for line in second.log_text().splitlines() if "lies" in line and "x-not-before-ms" in line]
    assert len(clamped) == 2 and all(f"{names.retry}[0]@" in line for line in clamped), clamped
    assert REBALANCE_ASKED not in second.log_text()
    second_stop = stop_within(second, 10)
    letters = read_all(names.dlq)
    assert len(letters) == 20 and {r.headers[h.DLQ_REASON] for r in letters} == {b"orphaned-retry"}
    with capsys.disabled():
        print(f"\n[day ahead] 20 never-sent copies dead-lettered at once; 3,000 orders counted past 2 copies "
              f"waiting a day; no rebalance asked; SIGTERM {first_stop:.1f}s. With a 2 s delay the day-ahead "
              f"copies were cut and all {len(everything):,} orders counted {resolved_at - started:.1f}s after the "
              f"start; SIGTERM {second_stop:.1f}s")


# -- a registry answering 502 pages crashes nothing ---------------------------------------------------

def test_a_registry_answering_502_pages_after_each_restart_crashes_no_agent_and_loses_nothing(
        names, start_worker, order_codec, capsys):
    proxy = RegistryProxy(REGISTRY_URL)
    settings = dict(PARTITIONS=3, FAILURE_RATE=0.2, MAX_RETRIES=2, RETRY_DELAY_SECONDS=0.2,
                    SCHEMA_REGISTRY_URL=proxy.url, BROKER_SESSION_TIMEOUT_SECONDS=6)
    rng = random.Random(20261129)
    try:
        worker = start_worker("r-0", **settings)
        workers = [worker]
        wait_for_topics(names.orders)
        # Orders keep coming for about 70 s: each round (a kill, the 502 window, the new owner's progress)
        # takes 15-20 s, and every kill must land while orders still arrive.
        orders = orders_with_prices("gw", 14_000)
        producing = Producing(order_codec, names.orders, orders, rate=200, chunk=200)
        producing.start()
        bad_gateways = []
        for kill in range(1, 4):
            before = kill_mid_stream(worker, producing, rng, pause_s=(0.5, 2.0))["orders"]
            served = proxy.bad_gateways
            # From the kill until a few seconds after the new worker gets the partitions (the group first
            # waits out the killed member's session): its first look-ups of the writer schema meet 502 pages.
            # The window lasts until it has: a take-over that waits out the killed worker's open transaction
            # (10 s, and the broker looks for expired ones every 10 s) looked up first 18 s after the kill.
            proxy.fail_for(15, at_least=1)
            worker = start_worker(f"r-{kill}", **settings)
            workers.append(worker)
            worker.wait_for(lambda s, before=before: s["orders"] > before, 90, "progress after the restart")
            bad_gateways.append(proxy.bad_gateways - served)
        producing.finish()
        summary = worker.wait_for(drained(len(orders)), 180, "every order counted or dead-lettered")
        assert_exact(orders, summary, read_all(names.dlq))
        assert all(count > 0 for count in bad_gateways), f"502 pages served after each restart: {bad_gateways}"
        for each in workers:
            assert "Crashed" not in each.log_text(), f"{each.label} had an agent crash\n{each.log_tail()}"
        assert any("JSONDecodeError" in each.log_text() for each in workers), "the 502 pages reached the worker"
        assert worker.stop() == 0
    finally:
        proxy.stop()
    with capsys.disabled():
        print(f"\n[502 pages] three SIGKILLs, 502 pages served after each restart {bad_gateways}; no crash; "
              f"{summary['orders']:,} counted + {summary['dead_letters']:,} dead-lettered = {len(orders):,}")


# -- faults at random points --------------------------------------------------------------------------

def test_exceptions_injected_at_random_points_while_applying_lose_and_double_nothing(
        names, start_worker, order_codec, capsys):
    worker = start_worker(PARTITIONS=6, FAILURE_RATE=0.2, MAX_RETRIES=2, RETRY_DELAY_SECONDS=0.2,
                          FAULT_INJECTION_RATE=0.001, ORDER_LOG_LINES_PER_SECOND=0)
    wait_for_topics(names.orders)
    orders = orders_with_prices("fault", 20_000)
    produce_orders(order_codec, names.orders, orders)
    summary = worker.wait_for(drained(len(orders)), 240, "every order counted or dead-lettered")
    assert_exact(orders, summary, read_all(names.dlq))
    log = worker.log_text()
    injected = log.count("fault injected at")
    assert injected >= 5, f"only {injected} faults were injected"
    assert "Crashed" not in log
    assert worker.stop() == 0
    with capsys.disabled():
        print(f"\n[faults] {injected} exceptions injected while applying 20,000 orders: "
              f"{summary['orders']:,} counted + {summary['dead_letters']:,} dead-lettered, exact")


# -- an output the broker refuses -----------------------------------------------------------------------

def set_max_message_bytes(topic: str, value: int) -> None:
    admin = AdminClient(KAFKA_CONFIG)
    resource = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("max.message.bytes", str(value), incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


def readiness(worker) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/readyz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_dead_letter_the_broker_refuses_blocks_its_partition_until_accepted_and_loses_nothing(
        names, start_worker, order_codec, tmp_path, capsys):
    worker = start_worker(PARTITIONS=1, ATTEMPTS_BEFORE_BLOCKED=3)
    prometheus = Prometheus(tmp_path, [f"127.0.0.1:{worker.port}"])
    try:
        wait_for_topics(names.orders, names.dlq)
        before = orders_with_prices("before", 10)
        produce_orders(order_codec, names.orders, before)
        worker.wait_for(lambda s: s["orders"] == 10 and s["uncommitted"] == 0, 60, "the first orders counted")
        assert readiness(worker)[0] == 200

        set_max_message_bytes(names.dlq, 1000)
        produce(names.orders, [(b"junk", b"\x07" + b"j" * 5_000)])  # undecodable: a dead letter of ~5 KB
        after = orders_with_prices("after", 20)
        produce_orders(order_codec, names.orders, after)

        def blocked_line():
            return [line for line in worker.log_text().splitlines() if ": blocked after" in line]
        (line,) = wait_until(blocked_line, 60, "the partition to report itself blocked")
        assert "ERROR" in line and f"{names.orders}[0]@10" in line and names.dlq in line
        assert "Message size too large" in line
        assert 'orders_partition_blocked{partition="0"} 1.0' in worker.metrics_text()
        status, body = readiness(worker)
        assert status == 503 and "0" in body["blocked"], body
        assert worker.summary()["orders"] == 10, "the orders behind the refused dead letter wait"
        firing = wait_until(lambda: prometheus.firing("OrdersPartitionBlocked"), 90,
                            "the OrdersPartitionBlocked alert to fire")
        assert firing[0]["labels"]["partition"] == "0"

        set_max_message_bytes(names.dlq, 2_097_152)
        summary = worker.wait_for(drained(31), 60, "the partition to resume by itself once the DLQ takes the letter")
        assert (summary["orders"], summary["dead_letters"]) == (30, 1)
        assert summary["total_price_micros"] == micros(before + after)
        (dead,) = read_all(names.dlq)
        assert dead.key == b"junk" and dead.headers[h.DLQ_REASON] == b"undecodable"
        assert len(blocked_line()) == 1, "one ERROR line for the whole episode"
        assert "partition 0: resumed; it was blocked for" in worker.log_text()
        assert 'orders_partition_blocked{partition="0"} 0.0' in worker.metrics_text()
        assert wait_until(lambda: readiness(worker)[0] == 200, 10, "/readyz to answer 200 again")
        assert worker.stop() == 0
    finally:
        prometheus.stop()
    with capsys.disabled():
        print(f"\n[refused output] {line.split('] ', 3)[-1][:200]}...; alert fired; resumed: {summary}")
