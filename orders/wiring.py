"""The one place that builds the objects the worker and its commands run on, from the settings.

`build_runtime` runs once, when a command first needs them (`OrdersApp.runtime`): as the worker starts, or as
`produce-orders`, `dlq ...` or `faust send` run; never at import. Agents, pages, timers and commands reach the
objects through `app.runtime`. Nothing built here imports the app or this module back.
"""
from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import faust
import prometheus_client
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from avro_codec import AvroRecordCodec, SchemaCache, load_schema

from .client_config import confluent_config, registry_auth
from .dead_letters.follower import LedgerFollower
from .domain.headers import DEAD_LETTER_REASONS
from .domain.order import FailureSimulator
from .domain.partition_state import Aggregate, PartitionState, Share
from .domain.retry_policy import RetryPolicy
from .faust_overrides.consumer import RecordBatches, hold_partitions
from .faust_overrides.rebalance import group_member, request_rebalance
from .faust_overrides.tables import PartitionStateTable
from .kafka import reading
from .kafka.broker import Broker
from .kafka.producing import MAX_MESSAGE_BYTES
from .kafka.transactions import TRANSACTION_TIMEOUT_MS, WorkerProducer
from .ops.activity_log import ActivityLog
from .ops.health import PROBE_TIMEOUT_S, ServiceProbes
from .ops.metrics import OrderMetrics
from .processing.commit import Committer
from .processing.faults import FaultInjector
from .processing.flow import Flow
from .processing.handler import OrderHandler
from .processing.reporting import Reporter
from .processing.task import PartitionTask, TaskLimits
from .processing.tasks import PartitionTasks
from .schemas import PatientRegistry
from .settings import Settings

log = logging.getLogger("orders")

#: The newest schema: it reads records of every earlier version (defaults fill the new fields), and
#: `faust send` / `produce-orders` write it.
ORDER_SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "order-v2.avsc"
#: What the agents may hand over before they wait: records of partitions that are not held.
INBOX_BUDGET_RECORDS = 50_000
#: Prefix of Faust's own metric names; fixed, so dashboards do not depend on APP_ID.
FAUST_METRICS_PREFIX = "faust"


@dataclass
class Runtime:
    """Everything the worker and its commands run on; built by `build_runtime`."""

    settings: Settings
    kafka_config: dict[str, Any]
    registry: PatientRegistry
    codec: AvroRecordCodec
    policy: RetryPolicy
    broker: Broker
    metrics_registry: CollectorRegistry
    metrics: OrderMetrics
    activity: ActivityLog
    handler: OrderHandler
    tasks: PartitionTasks
    #: the worker's transactions: one producer, the partitions' commits grouped
    committer: Committer
    #: the `order-stats` table: the one source of the aggregate its readers read
    table: PartitionStateTable
    #: whether Kafka and the registry answer (for /readyz)
    probes: ServiceProbes
    #: what `dlq replay` replayed (the dead-letter panel, the outstanding dead letters)
    replays: LedgerFollower
    #: the names of the topics the partition tasks read (orders and retry)
    source_names: frozenset[str] = frozenset()
    #: topic name -> the fast path's hand-over to that topic's agent (empty: Faust's stock path)
    record_batches: dict[str, RecordBatches] = field(default_factory=dict)

    async def stop(self) -> None:
        """Let every partition go (their last commits), then drop the producer."""
        await self.tasks.stop()
        self.committer.close()

    def shares(self) -> dict[int, Share]:
        """Each partition this worker owns and has set up: its share of the aggregate, read from the table."""
        shares = {}
        for number in self.tasks.owned():
            share = self.table.share(number)
            if share is not None:
                shares[number] = share
        return shares

    def aggregate(self) -> Aggregate:
        """The aggregate over this worker's partitions."""
        return Aggregate.of(self.shares().values())

    async def feed(self, stream: Any, topic: Any) -> None:
        """An agent's loop: each record of `topic` to its partition's task. On the fast path the consumer
        hands over each fetched partition's records (orders/faust_overrides); on the stock path they come in
        batches of events. Never ends on an error: records it could not hand over are read again by their
        task (a gap)."""
        name = topic.get_topic_name()
        batches = self.record_batches.get(name)

        async def submit(records: list[Any], partition: int | None = None) -> None:
            try:
                await self.tasks.submit(name, records, partition)
            except Exception:
                log.exception("%s: handing %d record(s) to their partitions failed; their tasks read them again",
                              name, len(records))

        if batches is not None:
            while True:
                partition, records = await batches.get()
                await submit(records, partition)
        async for events in stream.take_events(self.settings.batch_max_records,
                                               within=self.settings.batch_max_wait_seconds):
            await submit([event.message for event in events])


class StateHooks:
    """What the Faust overrides ask the app (orders/faust_overrides/app.py)."""

    def __init__(self, tasks: PartitionTasks, broker: Broker, changelog_topic: str,
                 source_topics: frozenset[str]) -> None:
        self.tasks = tasks
        self.broker = broker
        self.changelog_topic = changelog_topic
        #: the topics the partition tasks read (orders and retry)
        self.source_topics = source_topics

    async def before_recovery(self, partitions: set[int]) -> None:
        await self.tasks.on_assigned(partitions)

    async def changelog_ends(self, partitions: list[int]) -> dict[int, int]:
        records = await self.broker.last_records(self.changelog_topic, partitions, timeout_s=300)
        return {partition: -1 if record is None else record.offset for partition, record in records.items()}

    def resume_offsets(self) -> dict[tuple[str, int], int]:
        return self.tasks.resume_offsets()


def new_registry(settings: Settings) -> PatientRegistry:
    return PatientRegistry(SchemaCache(settings.schema_registry_url, auth=registry_auth(settings)))


def order_codec(settings: Settings, registry: PatientRegistry) -> AvroRecordCodec:
    """The app's Avro codec: the newest order schema, registered under `<ORDERS_TOPIC>-value`."""
    return AvroRecordCodec(registry, load_schema(ORDER_SCHEMA), subject=f"{settings.orders_topic}-value")


def metrics_collectors(app: faust.App, settings: Settings) -> tuple[CollectorRegistry, OrderMetrics]:
    """One registry for /metrics: the app's metrics, Faust's sensor (with FAUST_METRICS=true), the process's."""
    # No `<name>_created` series next to every counter and histogram: they double the series count and
    # dashboards do not use them (process-wide switch).
    prometheus_client.disable_created_metrics()
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    if settings.faust_metrics:
        app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(registry, FAUST_METRICS_PREFIX))
    metrics = OrderMetrics(registry)
    metrics.declare_dead_letter_reasons(*DEAD_LETTER_REASONS)
    return registry, metrics


#: How long a partition's task waits, as something expected, for a transaction an earlier owner left open on its
#: changelog before it counts as a failure: the broker aborts it after the transaction timeout, and looks for
#: such transactions every 10 s (its default transaction.abort.timed.out.transaction.cleanup.interval.ms).
SETTLE_PATIENCE_S = TRANSACTION_TIMEOUT_MS / 1000 + 10 + 10


def transactional_id(app: faust.App, settings: Settings) -> str:
    """The worker's transactional id: the same for a worker that comes back, so its producer fences the one
    it had and aborts what that left open. From WORKER_ID when set; else from the host and the web port (two
    workers on one host cannot share a port)."""
    if settings.worker_id:
        return f"{settings.app_id}-worker-{settings.worker_id}"
    return f"{settings.app_id}-{socket.gethostname()}-{app.conf.web_port}"


def build_runtime(app: faust.App, settings: Settings, source_topics: list[Any],
                  table: PartitionStateTable) -> Runtime:
    kafka_config = confluent_config(settings)
    registry = new_registry(settings)
    codec = order_codec(settings, registry)
    policy = RetryPolicy(max_retries=settings.max_retries, delay_s=settings.retry_delay_seconds,
                         not_before_allowance_s=settings.retry_not_before_allowance_seconds,
                         app_id=settings.app_id, orders_topic=settings.orders_topic)
    broker = Broker(kafka_config)
    metrics_registry, metrics = metrics_collectors(app, settings)
    activity = ActivityLog(settings.order_log_lines_per_second)
    faults = FaultInjector(settings.fault_injection_rate) if settings.fault_injection_rate else None
    handler = OrderHandler(
        codec=codec, failures=FailureSimulator(settings.failure_rate, settings.failure_seed,
                                               settings.forced_failures),
        policy=policy, retry_topic=settings.retry_topic, dlq_topic=settings.dlq_topic,
        dead_letter_bytes=MAX_MESSAGE_BYTES, earliest_offset=broker.earliest_offset, read_page=broker.read_page,
        fault=faults)
    flow = Flow(pause=lambda tps: hold_partitions(app, tps, True),
                resume=lambda tps: hold_partitions(app, tps, False), budget=INBOX_BUDGET_RECORDS)
    committer = Committer(changelog_topic=table.changelog_topic_name,
                          new_producer=lambda: WorkerProducer(kafka_config, transactional_id(app, settings)))
    limits = TaskLimits(chunk=settings.batch_max_records, commit_interval_s=settings.commit_interval_seconds,
                        attempts_before_blocked=settings.attempts_before_blocked, settle_patience_s=SETTLE_PATIENCE_S)
    runtime: Runtime  # the reporter's summary reads the runtime's aggregate

    def new_task(number: int, part: Any, owner: PartitionTasks) -> PartitionTask:
        return PartitionTask(number, orders_topic=settings.orders_topic, retry_topic=settings.retry_topic,
                             handler=handler, committer=committer, reporter=reporter, flow=flow, owner=owner,
                             store=table, limits=limits, part=part, fault=faults)

    async def load_states(partitions: list[int], wait_s: float) -> dict[int, PartitionState]:
        """The last committed state of each partition on whose changelog no transaction of an earlier owner is
        open, after waiting up to `wait_s` for those that have one; the partitions still waiting are left out."""
        still_open = await broker.wait_until_settled(table.changelog_topic_name, partitions, wait_s)
        settled = [partition for partition in partitions if partition not in still_open]
        records = await broker.last_records(table.changelog_topic_name, settled) if settled else {}
        return {partition: PartitionState.from_value(json.loads(record.value) if record and record.value else None)
                for partition, record in records.items()}

    reporter = Reporter(metrics=metrics, activity=activity, policy=policy, retry_topic=settings.retry_topic,
                        summary=lambda: runtime.aggregate())
    tasks = PartitionTasks(
        new_task=new_task, membership=lambda: group_member(app), load_states=load_states, flow=flow,
        request_rebalance=lambda: request_rebalance(app),
        on_blocked=lambda number, blocked: metrics.set_partition_blocked(number, blocked is not None),
        chunk=settings.batch_max_records, assign_timeout_s=settings.broker_session_timeout_seconds / 2)
    source_names = frozenset(topic.get_topic_name() for topic in source_topics)
    record_batches = {name: RecordBatches(app, settings.batch_max_records)
                      for name in source_names} if settings.fast_path else {}
    probes = ServiceProbes({
        "Kafka": partial(reading.ping, kafka_config, settings.orders_topic, PROBE_TIMEOUT_S),
        "the schema registry": partial(registry.cache.ping, PROBE_TIMEOUT_S)})
    runtime = Runtime(settings=settings, kafka_config=kafka_config, registry=registry, codec=codec, policy=policy,
                      broker=broker, metrics_registry=metrics_registry, metrics=metrics, activity=activity,
                      handler=handler, tasks=tasks, committer=committer, table=table, probes=probes,
                      replays=LedgerFollower(kafka_config, settings.replay_ledger_topic), source_names=source_names,
                      record_batches=record_batches)
    app.record_batches = record_batches
    app.state_hooks = StateHooks(tasks, broker, table.changelog_topic_name, source_names)

    @app.on_partitions_revoked.connect
    async def release_partitions(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        """After Faust's last commit of the old assignment: commit what was applied and let the partitions go."""
        await tasks.on_revoked({tp.partition for tp in revoked})

    if faults is not None:
        log.warning("FAULT_INJECTION_RATE=%s: applying records raises on purpose (a test setting)",
                    settings.fault_injection_rate)
    return runtime
