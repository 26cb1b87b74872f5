"""GET /metrics: this worker's metrics in the Prometheus text format.

One registry holds the app's own metrics (orders/ops/metrics.py), Faust's (its
Prometheus sensor: streams, consumer, producer, tables, rebalances, web) and
the Python process's (CPU, memory, file descriptors, GC); `orders/wiring.py`
builds it. The page refreshes the consumer lag and the worker-local aggregate
before it renders, so they are current at scrape time; everything else is
updated as it happens. (Faust's `setup_prometheus_sensors` would register a
page that only renders the registry, with no way to await the broker for the
lag first.)
"""
from __future__ import annotations

import asyncio
import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..app import app, settings, stats_table
from ..domain.partition_state import Aggregate
from ..ops.lag import consumer_lag, partition_lag
from .pages import dead_letter_figures
from .peers import gather_partition_states

log = logging.getLogger("orders")

#: How long a scrape waits for the broker's offsets before it serves the page without lag.
OFFSETS_TIMEOUT_S = 5.0


def _lag_of(tp, highwater: int, earliest: int) -> int:
    """On orders: records past the last applied one. On orders-retry: the copies sent and not yet resolved
    (its log also holds the transaction markers of every commit, which are not records)."""
    runtime = app.runtime
    if tp.topic == settings.retry_topic:
        share = runtime.table.share(tp.partition)
        return 0 if share is None else share[0].in_retry
    return partition_lag(highwater, runtime.tasks.applied_offset(tp.topic, tp.partition), earliest)


@app.page("/metrics")
async def prometheus_metrics(web, request):
    """Prometheus text format: the app's, Faust's and the process's metrics."""
    runtime = app.runtime
    try:
        lag = await asyncio.wait_for(
            consumer_lag(app.consumer, runtime.source_names, _lag_of, runtime.broker.watermarks), OFFSETS_TIMEOUT_S)
    except Exception as exc:  # the page still serves everything else; absent lag series show the gap
        log.warning("/metrics: consumer lag unavailable: %r", exc)
        lag = {}
    runtime.metrics.set_lag(lag)
    runtime.metrics.set_owned_aggregate(runtime.aggregate())
    shares, unreachable = await gather_partition_states(app, stats_table.name, runtime.shares(),
                                                        timeout_s=settings.peer_timeout_seconds)
    runtime.metrics.set_unreachable_workers(len(unreachable))
    figures = await dead_letter_figures(Aggregate.of(shares.values()))
    if figures["dead_letters_outstanding"] is not None:
        runtime.metrics.set_dead_letters(figures["dead_letters_replayed"], figures["dead_letters_outstanding"])
    return web.bytes(generate_latest(runtime.metrics_registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
