"""GET /metrics: this worker's metrics in the Prometheus text format.

One registry holds the app's own metrics (metrics.py), Faust's (its Prometheus
sensor: streams, consumer, producer, tables, rebalances, web) and the Python
process's (CPU, memory, file descriptors, GC). The page refreshes the
consumer lag and the worker-local aggregate before it renders, so they are
current at scrape time; everything else is updated as it happens.

Faust's `setup_prometheus_sensors` would register a page that only renders
the registry, with no way to await the broker for the lag first, so this
module installs the sensor it sets up (`FaustMetrics`, `PrometheusMonitor`)
itself and serves the page.
"""
from __future__ import annotations

import asyncio
import logging

import prometheus_client
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from prometheus_client import CONTENT_TYPE_LATEST, GCCollector, PlatformCollector, ProcessCollector, generate_latest

from ..app import (
    SOURCE_TOPICS,
    app,
    applied_offset,
    current_summary,
    metrics_registry,
    order_metrics,
    owned_partition_states,
    settings,
    stats_table,
    tasks,
    watermarks,
)
from ..web.peers import gather_partition_states
from .lag import consumer_lag, partition_lag

log = logging.getLogger("orders")

#: Prefix of Faust's metric names; fixed, so dashboards do not depend on APP_ID.
FAUST_PREFIX = "faust"
#: How long a scrape waits for the broker's offsets before it serves the page without lag.
OFFSETS_TIMEOUT_S = 5.0


# No `<name>_created` series next to every counter and histogram: they double
# the series count and dashboards do not use them (process-wide switch).
prometheus_client.disable_created_metrics()
ProcessCollector(registry=metrics_registry)
PlatformCollector(registry=metrics_registry)
GCCollector(registry=metrics_registry)
if settings.faust_metrics:
    app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(metrics_registry, FAUST_PREFIX))
_SOURCE_NAMES = {topic.get_topic_name() for topic in SOURCE_TOPICS}


def _lag_of(tp, highwater: int, earliest: int) -> int:
    """On orders: records past the last applied one. On orders-retry: the copies sent and not yet resolved
    (its log also holds the transaction markers of every commit, which are not records)."""
    if tp.topic == settings.retry_topic:
        live = tasks.live_states().get(tp.partition)
        return 0 if live is None else live[0].in_retry
    return partition_lag(highwater, applied_offset(tp), earliest)


@app.page("/metrics")
async def prometheus_metrics(web, request):
    """Prometheus text format: the app's, Faust's and the process's metrics."""
    try:
        lag = await asyncio.wait_for(consumer_lag(app.consumer, _SOURCE_NAMES, _lag_of, watermarks),
                                     OFFSETS_TIMEOUT_S)
    except Exception as exc:  # the page still serves everything else; absent lag series show the gap
        log.warning("/metrics: consumer lag unavailable: %r", exc)
        lag = {}
    order_metrics.set_lag(lag)
    order_metrics.set_owned_aggregate(current_summary())
    _states, unreachable = await gather_partition_states(app, stats_table.name, owned_partition_states(),
                                                        timeout_s=settings.peer_timeout_seconds)
    order_metrics.set_unreachable_workers(len(unreachable))
    return web.bytes(generate_latest(metrics_registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
