"""The Faust app and what it owns: topics, the table, the codec, the processing objects.

Nothing here registers an agent, page, timer or command: the entry module
(`app.py` at the top) imports those, and they import this module, never the
other way round.
"""
from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from confluent_kafka import KafkaException
from faust.serializers import codecs
from faust.types import TP
from prometheus_client import CollectorRegistry

from avro_codec import AvroRecordCodec, SchemaCache, load_schema
from avro_codec.backoff import Backoff

from . import kafka_io
from .cli.send_values import ORDER_CODEC_NAME, OrderSerializers
from .client_config import confluent_config, faust_credentials, registry_auth
from .domain.headers import DEAD_LETTER_REASONS
from .domain.order import FailureSimulator
from .domain.partition_state import PartitionState, summarize
from .domain.retry_policy import RetryPolicy
from .faust_overrides.app import TransactionalStateApp
from .faust_overrides.consumer import RecordBatches, hold_partitions
from .faust_overrides.rebalance import request_rebalance
from .faust_overrides.tables import PartitionStateTable
from .ops.activity_log import ActivityLog
from .ops.metrics import OrderMetrics
from .processing.commit import Committer
from .processing.faults import FaultInjector
from .processing.flow import Flow
from .processing.handler import OrderHandler
from .processing.reporting import Reporter
from .processing.task import Blocked, PartitionTask, TaskLimits
from .processing.tasks import PartitionTasks
from .processing.transactions import PartitionOutput
from .settings import SettingsError, load_settings
from .startup import EXIT_CANNOT_START, STARTUP_ERRORS, output_record_limit, prepare_topics_and_registry

try:
    settings = load_settings()
except SettingsError as exc:
    raise SystemExit(f"orders-app: configuration error: {exc}") from None

log = logging.getLogger("orders")
T = TypeVar("T")
logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per registry request otherwise

# The newest schema: it reads records of every earlier version (defaults fill the new fields),
# and `faust send` / `produce-orders` write it.
ORDER_SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "order-v2.avsc"

# The codec must be registered before any topic or command names it.
registry = SchemaCache(settings.schema_registry_url, auth=registry_auth(settings))
order_codec = AvroRecordCodec(registry, load_schema(ORDER_SCHEMA), subject=f"{settings.orders_topic}-value")
codecs.register(ORDER_CODEC_NAME, order_codec)
kafka_config = confluent_config(settings)


class OrdersApp(TransactionalStateApp):
    async def on_start(self) -> None:
        await super().on_start()
        # Runs before the consumer starts, so the first assignment covers every partition.
        try:
            await asyncio.to_thread(prepare_topics_and_registry, settings, registry,
                                    {CHANGELOG_TOPIC: CHANGELOG_CONFIG})
            handler.dead_letter_bytes = await asyncio.to_thread(output_record_limit, settings)
            if faults is not None:
                log.warning("FAULT_INJECTION_RATE=%s: applying records raises on purpose (a test setting)",
                            settings.fault_injection_rate)
        except STARTUP_ERRORS as exc:
            log.error("orders-app cannot start: %s", exc)
            raise SystemExit(EXIT_CANNOT_START) from None

    async def on_started(self) -> None:
        await super().on_started()
        # Everything built so far (modules, Faust's services, the table) lives as long as the process. Frozen,
        # the cyclic collector stops scanning it: a full collection took 40-80 ms every few seconds at
        # 10,000 orders/s, a pause every record arriving meanwhile waited out (the latency's p99).
        gc.freeze()

    async def on_stop(self) -> None:
        # Before Faust stops the agents and the consumer: commit what the partitions applied.
        await tasks.stop()
        await super().on_stop()


app = OrdersApp(
    settings.app_id,
    broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",")],
    broker_credentials=faust_credentials(settings),
    store=settings.table_store,
    # `faust -A app send orders '<json>'` encodes with the app's default value serializer.
    value_serializer=ORDER_CODEC_NAME,
    Serializers=OrderSerializers,
    topic_partitions=settings.partitions,
    web_bind=settings.web_bind,
    web_host=settings.web_host,
    broker_session_timeout=settings.broker_session_timeout_seconds,
    # No standbys: each worker's table holds only the partitions it owns, which
    # is what /partition-stats/ reports; a new owner reads the changelog.
    table_standby_replicas=0,
    producer_max_request_size=kafka_io.MAX_MESSAGE_BYTES,
    broker_max_poll_records=settings.max_poll_records,
)


def _source_topic(name: str):
    # Raw bytes: the agents decode with `order_codec` themselves, so a record that
    # does not decode reaches the agent (and the DLQ, bytes intact) instead of
    # being acknowledged and logged by Faust before any handler sees it.
    return app.topic(name, partitions=settings.partitions, key_serializer="raw", value_serializer="raw")


orders_topic = _source_topic(settings.orders_topic)
retry_topic = _source_topic(settings.retry_topic)
SOURCE_TOPICS = (orders_topic, retry_topic)
#: Where the fast path hands each source topic's records to its agent (empty: Faust's stock path).
record_batches = {topic.get_topic_name(): RecordBatches(app, settings.batch_max_records)
                  for topic in SOURCE_TOPICS} if settings.fast_path else {}
app.record_batches = record_batches

stats_table = app.tables.add(PartitionStateTable(
    app, name="order-stats", beacon=app.tables.beacon, partitions=settings.partitions,
    help="Per source partition: orders counted, price sum in micros, retries, dead letters, applied offsets, "
         "retry copy sequence numbers.",
    # Compaction only cleans closed segments: rolling them every minute keeps the
    # changelog, and so a memory:// worker's recovery at start, short however long it ran.
    extra_topic_configs={"segment.ms": 60_000, "min.cleanable.dirty.ratio": 0.1}))
CHANGELOG_TOPIC = stats_table.changelog_topic_name
#: The changelog's topic config as Faust would declare it; the start-up check creates it with this.
CHANGELOG_CONFIG = {"cleanup.policy": "compact",
                    **{key: str(value) for key, value in (stats_table.changelog_topic.config or {}).items()}}

#: One registry for /metrics: the app's metrics, Faust's and the process's.
metrics_registry = CollectorRegistry()
order_metrics = OrderMetrics(metrics_registry)
order_metrics.declare_dead_letter_reasons(*DEAD_LETTER_REASONS)
activity = ActivityLog(settings.order_log_lines_per_second)


def owned_partition_states() -> dict[int, tuple[PartitionState, int]]:
    """Partition -> (live state, records applied since its last commit), for each partition this worker owns."""
    return tasks.live_states()


def current_summary() -> dict:
    """The aggregate over this worker's partitions."""
    return summarize(state for state, _uncommitted in owned_partition_states().values())


def applied_offset(tp: TP) -> int:
    """Last offset the agents applied from a source partition; -1 before the first."""
    return tasks.applied_offset(tp.topic, tp.partition)


#: How long a broker read that the processing needs is asked again before the partition's task gives up on
#: it (and aborts, backs off and tries again, reporting itself blocked if it lasts).
BROKER_READ_TIMEOUT_S = 30.0
#: Most records a direct read of records the consumer skipped brings at once.
READ_PAGE_RECORDS = 1000


async def _until_answered(what: str, read: Callable[[], T], timeout_s: float = BROKER_READ_TIMEOUT_S) -> T:
    """A broker read asked again with backoff while Kafka does not answer (a broker restarting, a leader
    moving), for up to `timeout_s`; then its last error is raised."""
    backoff = Backoff(0.2, 5.0, timeout_s, jitter=0.2)
    while True:
        try:
            return await asyncio.to_thread(read)
        except (KafkaException, TimeoutError) as exc:
            delay = backoff.next_delay()
            if delay is None:
                raise
            log.warning("%s: Kafka did not answer (%s); asking again in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)


async def _earliest_offset(topic: str, partition: int) -> int:
    # Not through Faust's consumer: its requests queue behind the consumer's long-polling fetch (up to 1.5 s).
    return await _until_answered(f"earliest offset of {topic}[{partition}]",
                                 partial(kafka_io.first_offset, kafka_config, topic, partition))


async def watermarks(tps: list[TP]) -> dict[TP, tuple[int, int]]:
    """Each partition's (earliest, highwater) offsets, asked of the broker directly (see orders/ops/lag.py)."""
    marks = await asyncio.to_thread(kafka_io.watermarks, kafka_config, [(tp.topic, tp.partition) for tp in tps])
    return {TP(topic, partition): mark for (topic, partition), mark in marks.items()}


async def _read_page(topic: str, partition: int, start: int, end: int) -> list[kafka_io.Record]:
    return await _until_answered(f"reading {topic}[{partition}] offsets {start}..{end - 1}",
                                 partial(kafka_io.read_range, kafka_config, topic, partition, start, end,
                                         max_records=READ_PAGE_RECORDS))


def _last_changelog_records(partitions: list[int]) -> dict[int, kafka_io.Record | None]:
    return kafka_io.last_records(kafka_config, CHANGELOG_TOPIC, partitions)


async def _load_states(partitions: list[int]) -> dict[int, PartitionState]:
    """The last committed state of each partition, read from the changelog (after the fencing)."""
    records = await asyncio.to_thread(_last_changelog_records, partitions)
    return {partition: PartitionState.from_value(json.loads(record.value) if record and record.value else None)
            for partition, record in records.items()}


retry_policy = RetryPolicy(max_retries=settings.max_retries, delay_s=settings.retry_delay_seconds,
                           not_before_allowance_s=settings.retry_not_before_allowance_seconds,
                           app_id=settings.app_id, orders_topic=settings.orders_topic)
faults = FaultInjector(settings.fault_injection_rate) if settings.fault_injection_rate else None
handler = OrderHandler(
    codec=order_codec, failures=FailureSimulator(settings.failure_rate, settings.failure_seed,
                                                 settings.forced_failures),
    policy=retry_policy, retry_topic=settings.retry_topic, dlq_topic=settings.dlq_topic,
    dead_letter_bytes=kafka_io.MAX_MESSAGE_BYTES, earliest_offset=_earliest_offset, read_page=_read_page,
    fault=faults)
committer = Committer(changelog_topic=CHANGELOG_TOPIC, write_store=stats_table.store)
reporter = Reporter(metrics=order_metrics, activity=activity, policy=retry_policy, retry_topic=settings.retry_topic,
                    summary=current_summary)
#: What the agents may hand over before they wait: records of partitions that are not held.
INBOX_BUDGET_RECORDS = 50_000
flow = Flow(pause=lambda tps: hold_partitions(app, tps, True), resume=lambda tps: hold_partitions(app, tps, False),
            budget=INBOX_BUDGET_RECORDS)
task_limits = TaskLimits(chunk=settings.batch_max_records, commit_interval_s=settings.commit_interval_seconds,
                         attempts_before_blocked=settings.attempts_before_blocked)


def _new_task(number: int, part, owner) -> PartitionTask:
    return PartitionTask(number, orders_topic=settings.orders_topic, retry_topic=settings.retry_topic,
                         handler=handler, committer=committer, reporter=reporter, flow=flow, owner=owner,
                         limits=task_limits, part=part, fault=faults)


def _blocked_changed(number: int, blocked: Blocked | None) -> None:
    order_metrics.set_partition_blocked(number, blocked is not None)


tasks = PartitionTasks(
    new_task=_new_task, new_output=lambda partition: PartitionOutput(
        kafka_config, f"{settings.app_id}-partition-{partition}"),
    load_states=_load_states, flow=flow, request_rebalance=lambda: request_rebalance(app),
    on_blocked=_blocked_changed, chunk=settings.batch_max_records)


async def feed_tasks(stream, topic) -> None:
    """An agent's loop: each record of `topic` to its partition's task. On the fast path the consumer hands
    over each fetched partition's records (orders/faust_overrides); on the stock path they come in batches
    of events. Never ends on an error: records it could not hand over are read again by their task (a gap)."""
    name = topic.get_topic_name()
    batches = record_batches.get(name)

    async def submit(records, partition=None) -> None:
        try:
            await tasks.submit(name, records, partition)
        except Exception:
            log.exception("%s: handing %d record(s) to their partitions failed; their tasks read them again",
                          name, len(records))

    if batches is not None:
        while True:
            partition, records = await batches.get()
            await submit(records, partition)
    async for events in stream.take_events(settings.batch_max_records, within=settings.batch_max_wait_seconds):
        await submit([event.message for event in events])


class _StateHooks:
    """What the Faust overrides ask the app (orders/faust_overrides/app.py)."""

    async def before_recovery(self, partitions: set[int]) -> None:
        await tasks.on_assigned(partitions)

    async def changelog_ends(self, partitions: list[int]) -> dict[int, int]:
        records = await _until_answered("the changelog's last records", partial(_last_changelog_records, partitions),
                                        timeout_s=300)
        return {partition: -1 if record is None else record.offset for partition, record in records.items()}

    def resume_offsets(self) -> dict[tuple[str, int], int]:
        return tasks.resume_offsets()


app.state_hooks = _StateHooks()


@app.on_partitions_revoked.connect
async def release_partitions(sender, revoked, **kwargs) -> None:
    """After Faust's last commit of the old assignment: commit what was applied and let the partitions go."""
    await tasks.on_revoked({tp.partition for tp in revoked})
