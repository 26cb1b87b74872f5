"""A real Prometheus scrapes two real workers: the figures agree with /average/, the alert rules load and pass
their unit tests, and every panel of the Grafana dashboard returns data."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from .conftest import drained, orders_with_prices, produce, produce_orders, wait_for_topics, wait_until
from .prometheus import MONITORING, RULES, Prometheus, tool

DASHBOARD = MONITORING / "grafana" / "dashboards" / "orders.json"


@pytest.fixture
def two_workers(names, start_worker):
    settings = dict(PARTITIONS=6, MAX_RETRIES=1, RETRY_DELAY_SECONDS=0.5, FAILURE_RATE=0.2)
    return [start_worker("w1", **settings), start_worker("w2", **settings)]


def test_prometheus_scrapes_both_workers_and_its_figures_agree_with_the_aggregate(
        names, two_workers, order_codec, tmp_path, capsys):
    prometheus = Prometheus(tmp_path, [f"127.0.0.1:{worker.port}" for worker in two_workers])
    try:
        wait_for_topics(names.orders)
        orders = orders_with_prices("prom", 3_000)
        produce_orders(order_codec, names.orders, orders)
        produce(names.orders, [(b"junk", b"not avro")])
        summary = two_workers[0].wait_for(drained(len(orders) + 1), 120, "every order counted or dead-lettered")

        def agrees():
            scraped = (prometheus.scalar("sum(orders_processed_total)"),
                       prometheus.scalar("sum(orders_dead_lettered_total)"),
                       prometheus.scalar("sum(orders_owned_partitions_orders)"))
            last.append(scraped)
            return scraped if scraped == (summary["orders"], summary["dead_letters"], summary["orders"]) else None
        last: list = []
        try:
            wait_until(agrees, 30, "Prometheus's sums to match /average/")
        except AssertionError:
            targets = [(t["scrapeUrl"], t["health"], t["lastError"])
                       for t in prometheus.api("targets")["activeTargets"]]
            raise AssertionError(f"Prometheus says {last[-1]}, /average/ {summary}; targets {targets}") from None
        up = {series["metric"]["instance"]: series["value"][1] for series in prometheus.query('up{job="orders-app"}')}
        assert up == {f"127.0.0.1:{worker.port}": "1" for worker in two_workers}
        total = prometheus.scalar("sum(orders_owned_partitions_total_price)")
        assert total == pytest.approx(summary["total_price"])

        rules = [rule["name"] for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        assert rules == ["OrdersDeadLettered", "OrdersConsumerLagGrowing", "OrdersWorkerDown",
                         "OrdersWorkersUnreachable", "OrdersStuckInRetry", "OrdersPartitionBlocked",
                         "OrdersDeadLettersOutstanding"]
        # One alert per reason: the retries-exhausted one can fire a rule evaluation before the undecodable one.
        firing = wait_until(lambda: (alerts := [a for a in prometheus.api("alerts")["alerts"]
                                                if a["labels"]["alertname"] == "OrdersDeadLettered"
                                                and a["state"] == "firing"])
                            and "undecodable" in {a["labels"]["reason"] for a in alerts} and alerts, 30,
                            "the dead-letter alert to fire for the undecodable record")
        with capsys.disabled():
            print(f"\n[prometheus] sum(orders_processed_total)={summary['orders']}, "
                  f"dead letters={summary['dead_letters']}; firing: {sorted(a['labels']['reason'] for a in firing)}")
    finally:
        prometheus.stop()


def test_every_dashboard_panel_returns_data_from_the_real_prometheus(names, two_workers, order_codec, tmp_path):
    prometheus = Prometheus(tmp_path, [f"127.0.0.1:{worker.port}" for worker in two_workers])
    try:
        wait_for_topics(names.orders)
        orders = orders_with_prices("dash", 2_000)
        for start in range(0, len(orders), 200):  # orders keep flowing for the rate() windows
            produce_orders(order_codec, names.orders, orders[start:start + 200])
            time.sleep(0.5)
        two_workers[0].wait_for(drained(len(orders)), 120, "every order counted or dead-lettered")
        dashboard = json.loads(DASHBOARD.read_text())
        targets = [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]
        assert len(targets) >= 10
        empty = []
        for title, expr in targets:
            if not prometheus.query(expr):
                empty.append((title, expr))
        assert not empty, f"panels without data: {empty}"
    finally:
        prometheus.stop()


def test_the_alert_rules_are_valid_and_pass_their_unit_tests():
    checked = subprocess.run([tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0 and "SUCCESS: 7 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = subprocess.run([tool("promtool"), "test", "rules", "alerts_test.yml"], cwd=RULES.parent,
                            capture_output=True, text=True)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
