"""What the console and the metrics are told about a committed transaction's outcomes."""
import logging

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from orders.domain.order import Order
from orders.domain.partition_state import Aggregate
from orders.domain.retry_policy import RetryPolicy
from orders.ops.activity_log import ActivityLog
from orders.ops.metrics import OrderMetrics
from orders.processing.partition import PROCESSED, RETRIED, Outcome
from orders.processing.reporting import Reporter


class Msg:
    def __init__(self, offset: int) -> None:
        self.topic, self.partition, self.offset = "orders", 0, offset


def reporter(lines_per_second: int, registry: CollectorRegistry) -> tuple[Reporter, ActivityLog]:
    activity = ActivityLog(lines_per_second, clock=lambda: 100.0)
    policy = RetryPolicy(max_retries=3, delay_s=2.0, not_before_allowance_s=10.0, app_id="app",
                         orders_topic="orders")
    return Reporter(metrics=OrderMetrics(registry), activity=activity, policy=policy, retry_topic="orders-retry",
                    summary=Aggregate), activity


def samples(registry) -> dict[str, float]:
    return {sample.name: sample.value for family in text_string_to_metric_families(generate_latest(registry).decode())
            for sample in family.samples if not sample.labels}


def test_orders_past_the_line_share_are_counted_in_the_summary_and_every_latency_is_observed(caplog):
    registry = CollectorRegistry()
    report, activity = reporter(3, registry)
    outcomes = [Outcome(PROCESSED, Msg(i), Order(f"o-{i}", "p", 1.0), 1, None if i == 5 else 0.01)
                for i in range(10)]
    outcomes.insert(4, Outcome(RETRIED, Msg(99), Order("r", "p", 1.0), 1, detail="flaky"))

    with caplog.at_level(logging.INFO, logger="orders"):
        report.report(outcomes)

    lines = [record.getMessage() for record in caplog.records]
    assert [line.split()[1] for line in lines if line.startswith("processed")] == ["o-0", "o-1", "o-2"]
    assert not [line for line in lines if line.startswith("retry")], "the share of the second is used up"
    summary = activity.summary(Aggregate())
    assert "10 processed" in summary and "1 retried" in summary and "(8 not logged one by one)" in summary
    metrics = samples(registry)
    assert metrics["orders_processed_total"] == 10
    assert metrics["orders_retried_total"] == 1
    assert metrics["orders_processing_latency_seconds_count"] == 9, "the order without a timestamp is not observed"
