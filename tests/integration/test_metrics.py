"""GET /metrics on a real worker agrees with /average/ and with what was produced."""
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import drained, orders_with_prices, produce, produce_orders, read_all, settled, wait_for_topics


def scrape(worker) -> dict:
    """Metric families by name, parsed from the worker's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(families: dict, sample_name: str) -> list:
    return [sample for family in families.values() for sample in family.samples if sample.name == sample_name]


def value(families: dict, sample_name: str, **labels: str) -> float:
    matches = [sample.value for sample in samples(families, sample_name) if sample.labels == labels]
    assert len(matches) == 1, f"{sample_name}{labels}: {matches}"
    return matches[0]


def by_labels(families: dict, sample_name: str, *names: str) -> dict:
    """Values of a labelled metric, keyed by its label values."""
    return {tuple(sample.labels[name] for name in names): sample.value for sample in samples(families, sample_name)}


def test_metrics_count_every_outcome_as_the_aggregate_does(names, start_worker, order_codec):
    delay = 0.5
    worker = start_worker(SIMULATED_FAILURES="m-1:1,m-2:1,m-5:always", MAX_RETRIES=1, RETRY_DELAY_SECONDS=delay,
                          FAUST_METRICS="true")
    wait_for_topics(names.orders, names.retry, names.dlq)
    orders = orders_with_prices("m", 20)
    produce_orders(order_codec, names.orders, orders)
    produce(names.orders, [(b"bad-1", order_codec.encode({"orderId": "bad-1", "product": "x", "price": -5.0})),
                           (b"bad-2", b"not avro at all")])

    summary = worker.wait_for(drained(len(orders) + 2), 90, "every order counted or dead-lettered")
    families = scrape(worker)

    # What was produced: m-5 dead-lettered after its one retry, m-1 and m-2 counted after one each.
    assert (summary["orders"], summary["retries"], summary["dead_letters"]) == (19, 3, 3)
    processed = value(families, "orders_processed_total")
    assert processed == summary["orders"]
    assert value(families, "orders_retried_total") == summary["retries"]
    dead = by_labels(families, "orders_dead_lettered_total", "reason")
    assert dead == {("retries-exhausted",): 1, ("invalid-order",): 1, ("undecodable",): 1,
                    ("not-a-retry-record",): 0, ("orphaned-retry",): 0, ("too-large",): 0, ("processing-error",): 0}
    assert sum(dead.values()) == summary["dead_letters"]
    assert {r.headers["x-dlq-reason"].decode() for r in read_all(names.dlq)} == \
        {"retries-exhausted", "invalid-order", "undecodable"}

    assert value(families, "orders_processing_latency_seconds_count") == processed
    # m-1 and m-2 were counted from retry copies held for the retry delay.
    held = processed - value(families, "orders_processing_latency_seconds_bucket", le=str(delay))
    assert held >= 2

    assert value(families, "orders_owned_partitions_orders") == summary["orders"]
    assert value(families, "orders_owned_partitions_total_price") == pytest.approx(summary["total_price"])
    assert value(families, "orders_owned_partitions_average_price") == pytest.approx(summary["average"])

    lag = by_labels(families, "orders_consumer_lag", "topic", "partition")
    assert lag == {(topic, str(p)): 0 for topic in (names.orders, names.retry) for p in range(3)}

    # Faust's own sensor, when asked for, is in the same registry (on the fast path it does not see the source
    # topics' records, which the consumer hands to the agents directly, so its message counts stay out of this).
    assert {"faust_messages_received", "faust_total_rebalances", "faust_consumer_commit_latency"} <= set(families)
    assert ("table.order-stats", "keys_updated") in by_labels(families, "faust_table_operations_total", "table",
                                                              "operation")
    assert "process_resident_memory_bytes" in families


def test_a_retry_copy_held_for_its_delay_shows_as_lag_and_faust_metrics_are_off_by_default(
        names, start_worker, order_codec):
    worker = start_worker(SIMULATED_FAILURES="w-0:1", RETRY_DELAY_SECONDS=30)
    wait_for_topics(names.orders, names.retry)
    produce_orders(order_codec, names.orders, orders_with_prices("w", 4))

    worker.wait_for(settled(lambda s: s["orders"] == 3 and s["retries"] == 1), 60,
                    "w-0 sent to retry, the rest counted")
    (w0,) = [record for record in read_all(names.orders) if record.key == b"w-0"]
    families = scrape(worker)

    lag = by_labels(families, "orders_consumer_lag", "topic", "partition")
    waiting = {tp: records for tp, records in lag.items() if records}
    assert waiting == {(names.retry, str(w0.partition)): 1}
    assert len(lag) == 6
    assert not [name for name in families if name.startswith("faust_")]
    assert value(families, "orders_processed_total") == 3
    started = time.monotonic()
    assert worker.stop() == 0 and time.monotonic() - started < 15, "a copy held for its delay does not hold SIGTERM"
