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
from typing import Callable, Iterable

import faust
import prometheus_client
from faust.exceptions import ConsumerNotStarted
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, GCCollector, PlatformCollector,
                               ProcessCollector, generate_latest)

from metrics import OrderMetrics, partition_lag

log = logging.getLogger("orders")

#: Prefix of Faust's metric names; fixed, so dashboards do not depend on APP_ID.
FAUST_PREFIX = "faust"
#: How long a scrape waits for the broker's offsets before it serves the page without lag.
OFFSETS_TIMEOUT_S = 5.0


async def consumer_lag(app: faust.App, topic_names: set[str], applied_offset: Callable[[TP], int]
                       ) -> dict[tuple[str, int], int]:
    """Records waiting in each source partition this worker owns, from the broker's offsets."""
    try:
        assigned = app.consumer.assignment()
    except ConsumerNotStarted:  # the web server answers before the consumer has started
        return {}
    owned = [tp for tp in assigned if tp.topic in topic_names]
    if not owned:
        return {}
    highwaters = await app.consumer.highwaters(*owned)
    earliest = await app.consumer.earliest_offsets(*owned)
    # Applied offsets are read after the awaits: any record applied meanwhile is
    # then below the highwater read before it, and the lag is never overstated.
    return {(tp.topic, tp.partition): partition_lag(highwaters[tp], applied_offset(tp), earliest[tp])
            for tp in owned}


def install(app: faust.App, source_topics: Iterable[faust.TopicT], applied_offset: Callable[[TP], int],
            owned_summary: Callable[[], dict], *, faust_sensor: bool) -> OrderMetrics:
    """Serve /metrics on the app's web port; return the metrics the agents update.

    `applied_offset(tp)` gives the last offset applied from a source partition
    (-1: none); `owned_summary()` the aggregate over this worker's partitions.
    """
    # No `<name>_created` series next to every counter and histogram: they double
    # the series count and dashboards do not use them (process-wide switch).
    prometheus_client.disable_created_metrics()
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    if faust_sensor:
        app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(registry, FAUST_PREFIX))
    order_metrics = OrderMetrics(registry)
    topic_names = {topic.get_topic_name() for topic in source_topics}

    @app.page("/metrics")
    async def prometheus_metrics(web, request):
        """Prometheus text format: the app's, Faust's and the process's metrics."""
        try:
            lag = await asyncio.wait_for(consumer_lag(app, topic_names, applied_offset), OFFSETS_TIMEOUT_S)
        except Exception as exc:  # the page still serves everything else; absent lag series show the gap
            log.warning("/metrics: consumer lag unavailable: %r", exc)
            lag = {}
        order_metrics.set_lag(lag)
        order_metrics.set_owned_aggregate(owned_summary())
        return web.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return order_metrics
