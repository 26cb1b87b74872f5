"""The app's own Prometheus metrics, and the functions that update them.

Pure prometheus_client, no Faust: the agents call `processed`, `retried` and
`dead_lettered` once per outcome; the /metrics page (metrics_page.py) sets
the lag and aggregate gauges just before each scrape. Everything that runs per
order touches pre-created metric children only (a counter increment is about
1 µs), and a transaction's latencies go to the histogram in one call; label
lookups happen once per reason.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from ..domain.partition_state import Aggregate
from .batch_histogram import BatchHistogram

#: From 1 ms (a first attempt on an idle worker) to a minute: a retried order's
#: latency includes the retry delay it was held for. Dense below a second, so
#: quantiles interpolated from them (bench/histogram.py, Prometheus'
#: histogram_quantile) are within a few ms where most orders fall.
LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class OrderMetrics:
    """Every metric the app defines itself, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._processed = Counter(
            "orders_processed", "Orders counted in the aggregate by this worker since it started.",
            registry=registry)
        self._retried = Counter(
            "orders_retried", "Failed attempts sent to the retry topic by this worker since it started.",
            registry=registry)
        self._dead_lettered = Counter(
            "orders_dead_lettered", "Records sent to the dead-letter topic by this worker since it started, "
            "by the reason in their x-dlq-reason header.", ["reason"], registry=registry)
        self._latency = BatchHistogram(
            "orders_processing_latency_seconds",
            "Seconds from the Kafka timestamp of the record that got an order counted to the update of the "
            "aggregate /average/ serves (observed once the transaction commits, within COMMIT_INTERVAL_SECONDS). "
            "For a first attempt that is the time since the order was produced; for a retry copy, the time "
            "since the attempt before it failed, so it includes one retry delay. Records without a timestamp "
            "are not observed; a timestamp ahead of this worker's clock counts as 0.",
            LATENCY_BUCKETS, registry)
        self._lag = Gauge(
            "orders_consumer_lag",
            "Records waiting in a source partition this worker owns: highwater minus the next offset to apply "
            "(read from the broker at scrape time). On the retry topic this includes copies held for their "
            "retry delay.", ["topic", "partition"], registry=registry)
        self._owned_orders = Gauge(
            "orders_owned_partitions_orders",
            "Orders counted in the aggregate, over the partitions this worker owns now (from the table).",
            registry=registry)
        self._owned_total_price = Gauge(
            "orders_owned_partitions_total_price",
            "Sum of the prices of those orders. Global average: sum of this over all workers divided by "
            "the sum of orders_owned_partitions_orders.", registry=registry)
        self._owned_average = Gauge(
            "orders_owned_partitions_average_price",
            "Average price over the partitions this worker owns (worker-local, not the global /average/).",
            registry=registry)
        self._retry_resolved = Counter(
            "orders_retry_copies_resolved",
            "Retry copies this worker resolved since it started: counted, retried again or dead-lettered.",
            registry=registry)
        self._owned_in_retry = Gauge(
            "orders_owned_partitions_in_retry",
            "Orders in retry (copy sent, not yet resolved) over the partitions this worker owns.", registry=registry)
        self._unreachable = Gauge(
            "orders_unreachable_workers",
            "Other workers that own partitions of the aggregate and did not answer this worker's "
            "/partition-stats/ request at scrape time (the unreachable_workers of /average/).", registry=registry)
        self._blocked = Gauge(
            "orders_partition_blocked",
            "1 while a partition this worker owns is blocked: applying or committing its records failed "
            "ATTEMPTS_BEFORE_BLOCKED times in a row (a registry that does not answer, an output the broker "
            "refuses). Its records wait; it keeps trying and returns to 0 once it gets through.",
            ["partition"], registry=registry)
        self._replayed = Gauge(
            "orders_dead_letters_replayed",
            "Dead letters `dlq replay` has replayed, from its ledger (the same figure on every worker).",
            registry=registry)
        self._outstanding = Gauge(
            "orders_dead_letters_outstanding",
            "Dead letters written and not replayed yet: they wait for an operator (the whole DLQ, the same figure "
            "on every worker that reaches the others; use max(), not sum()).", registry=registry)
        self._reasons: dict[str, Counter] = {}

    def declare_dead_letter_reasons(self, *reasons: str) -> None:
        """Export each reason at 0 before its first dead letter, so rate() sees the first one."""
        for reason in reasons:
            self._reason(reason)

    def _reason(self, reason: str) -> Counter:
        child = self._reasons.get(reason)
        if child is None:
            child = self._reasons[reason] = self._dead_lettered.labels(reason=reason)
        return child

    def processed(self, orders: int = 1) -> None:
        """Orders were counted."""
        self._processed.inc(orders)

    def observe_latencies(self, latencies: Iterable[float | None]) -> None:
        """Orders were counted these many seconds after their records' Kafka timestamps (None: a record had
        none, and is not observed)."""
        self._latency.observe_many(latency for latency in latencies if latency is not None)

    def retry_copies_resolved(self, copies: int) -> None:
        self._retry_resolved.inc(copies)

    def retried(self) -> None:
        self._retried.inc()

    def dead_lettered(self, reason: str) -> None:
        self._reason(reason).inc()

    def set_lag(self, lag: Mapping[tuple[str, int], int]) -> None:
        """Replace the lag series with these (topic, partition) -> records; partitions not given disappear."""
        self._lag.clear()
        for (topic, partition), records in lag.items():
            self._lag.labels(topic=topic, partition=str(partition)).set(records)

    def set_owned_aggregate(self, aggregate: Aggregate) -> None:
        """From the aggregate over this worker's partitions."""
        self._owned_orders.set(aggregate.orders)
        self._owned_total_price.set(aggregate.total_price)
        self._owned_average.set(aggregate.average)
        self._owned_in_retry.set(aggregate.in_retry)

    def set_partition_blocked(self, partition: int, blocked: bool) -> None:
        """A partition became blocked (1) or unblocked (0: the series stays, so alerts see it resolve)."""
        self._blocked.labels(partition=str(partition)).set(1 if blocked else 0)

    def set_dead_letters(self, replayed: int, outstanding: int) -> None:
        self._replayed.set(replayed)
        self._outstanding.set(outstanding)

    def set_unreachable_workers(self, count: int) -> None:
        self._unreachable.set(count)

