"""The app's own metrics, read back the way Prometheus would: from the text exposition."""
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from orders.domain.partition_state import Aggregate
from orders.ops.metrics import OrderMetrics


@pytest.fixture
def registry():
    return CollectorRegistry()


@pytest.fixture
def metrics(registry):
    return OrderMetrics(registry)


def scrape(registry) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, from the text format."""
    text = generate_latest(registry).decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def bucket(samples, le: str) -> float:
    return samples[("orders_processing_latency_seconds_bucket", (("le", le),))]


def test_a_processed_order_is_counted_and_its_latency_observed(registry, metrics):
    metrics.processed(2)
    metrics.observe_latencies([0.2, 7.0])

    samples = scrape(registry)
    assert samples[("orders_processed_total", ())] == 2
    assert samples[("orders_processing_latency_seconds_count", ())] == 2
    assert samples[("orders_processing_latency_seconds_sum", ())] == pytest.approx(7.2)
    assert bucket(samples, "0.1") == 0
    assert bucket(samples, "0.25") == 1
    assert bucket(samples, "5.0") == 1
    assert bucket(samples, "10.0") == 2


def test_latency_buckets_span_a_millisecond_to_a_minute(registry, metrics):
    metrics.observe_latencies([0.0005, 45.0])
    metrics.observe_latencies([90.0])

    samples = scrape(registry)
    assert bucket(samples, "0.001") == 1
    assert bucket(samples, "30.0") == 1
    assert bucket(samples, "60.0") == 2
    assert bucket(samples, "+Inf") == 3


def test_an_order_without_a_latency_is_counted_but_not_observed(registry, metrics):
    metrics.processed()
    metrics.observe_latencies([None])

    samples = scrape(registry)
    assert samples[("orders_processed_total", ())] == 1
    assert samples[("orders_processing_latency_seconds_count", ())] == 0


def test_retries_are_counted(registry, metrics):
    metrics.retried()
    metrics.retried()
    assert scrape(registry)[("orders_retried_total", ())] == 2


def test_declared_dead_letter_reasons_are_exported_at_zero_and_counted_apart(registry, metrics):
    metrics.declare_dead_letter_reasons("invalid-order", "retries-exhausted")
    metrics.dead_lettered("retries-exhausted")
    metrics.dead_lettered("retries-exhausted")

    samples = scrape(registry)
    assert samples[("orders_dead_lettered_total", (("reason", "invalid-order"),))] == 0
    assert samples[("orders_dead_lettered_total", (("reason", "retries-exhausted"),))] == 2


def test_a_reason_nobody_declared_is_still_counted(registry, metrics):
    metrics.dead_lettered("something-new")
    assert scrape(registry)[("orders_dead_lettered_total", (("reason", "something-new"),))] == 1


def test_lag_series_are_replaced_so_a_partition_that_moved_away_disappears(registry, metrics):
    metrics.set_lag({("orders", 0): 5, ("orders", 1): 0, ("orders-retry", 0): 2})
    metrics.set_lag({("orders", 1): 3})

    lag = {labels: value for (name, labels), value in scrape(registry).items() if name == "orders_consumer_lag"}
    assert lag == {(("partition", "1"), ("topic", "orders")): 3}


def test_owned_aggregate_gauges_show_the_summary(registry, metrics):
    metrics.set_owned_aggregate(Aggregate(orders=4, total_micros=10_500_000, retries=9, in_retry=3))
    metrics.set_unreachable_workers(1)

    samples = scrape(registry)
    assert samples[("orders_owned_partitions_orders", ())] == 4
    assert samples[("orders_owned_partitions_total_price", ())] == 10.5
    assert samples[("orders_owned_partitions_average_price", ())] == 2.625
    assert samples[("orders_owned_partitions_in_retry", ())] == 3
    assert samples[("orders_unreachable_workers", ())] == 1


def test_every_metric_is_exported_with_its_type_and_help_before_anything_happens(registry, metrics):
    families = {family.name: family for family in
                text_string_to_metric_families(generate_latest(registry).decode())}
    assert {name: families[name].type for name in (
        "orders_processed", "orders_retried", "orders_dead_lettered", "orders_processing_latency_seconds",
        "orders_consumer_lag", "orders_owned_partitions_orders", "orders_owned_partitions_total_price",
        "orders_owned_partitions_average_price", "orders_owned_partitions_in_retry", "orders_unreachable_workers")} == {
        "orders_processed": "counter", "orders_retried": "counter", "orders_dead_lettered": "counter",
        "orders_processing_latency_seconds": "histogram", "orders_consumer_lag": "gauge",
        "orders_owned_partitions_orders": "gauge", "orders_owned_partitions_total_price": "gauge",
        "orders_owned_partitions_average_price": "gauge", "orders_owned_partitions_in_retry": "gauge",
        "orders_unreachable_workers": "gauge"}
    assert "Kafka timestamp" in families["orders_processing_latency_seconds"].documentation
