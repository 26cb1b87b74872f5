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
from .faust_overrides.app import TransactionalStateApp
from .faust_overrides.consumer import RecordBatches
from .faust_overrides.rebalance import request_rebalance
from .faust_overrides.tables import PartitionStateTable
from .ops.activity_log import ActivityLog
from .ops.metrics import OrderMetrics
from .processing.handler import OrderHandler
from .processing.processor import Processor
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
        await processor.stop()
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
    return dict(sorted(processor.live_states().items()))


def current_summary() -> dict:
    """The aggregate over this worker's partitions."""
    return summarize(state for state, _uncommitted in owned_partition_states().values())


def applied_offset(tp: TP) -> int:
    """Last offset the agents applied from a source partition; -1 before the first."""
    part = processor.partitions.get(tp.partition)
    expected = None if part is None else part.state.next_offset(tp.topic)
    return -1 if expected is None else expected - 1


async def _until_answered(what: str, read: Callable[[], T]) -> T:
    """A broker read the processing cannot go on without, asked again with backoff while Kafka does not
    answer (a broker restarting, a leader moving) instead of crashing the agent; a stopping worker
    cancels the wait."""
    backoff = Backoff(0.2, 5.0)
    while True:
        try:
            return await asyncio.to_thread(read)
        except (KafkaException, TimeoutError) as exc:
            delay = backoff.next_delay()
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


async def _read_range(topic: str, partition: int, start: int, end: int) -> list[kafka_io.Record]:
    return await _until_answered(f"reading {topic}[{partition}] offsets {start}..{end - 1}",
                                 partial(kafka_io.read_range, kafka_config, topic, partition, start, end))


def _last_changelog_records(partitions: list[int]) -> dict[int, kafka_io.Record | None]:
    return kafka_io.last_records(kafka_config, CHANGELOG_TOPIC, partitions)


async def _load_states(partitions: list[int]) -> dict[int, PartitionState]:
    """The last committed state of each partition, read from the changelog (after the fencing)."""
    records = await asyncio.to_thread(_last_changelog_records, partitions)
    return {partition: PartitionState.from_value(json.loads(record.value) if record and record.value else None)
            for partition, record in records.items()}


handler = OrderHandler(
    codec=order_codec, failures=FailureSimulator(settings.failure_rate, settings.failure_seed,
                                                 settings.forced_failures),
    app_id=settings.app_id, orders_topic=settings.orders_topic, retry_topic=settings.retry_topic,
    dlq_topic=settings.dlq_topic, max_retries=settings.max_retries, retry_delay_s=settings.retry_delay_seconds,
    dead_letter_bytes=kafka_io.MAX_MESSAGE_BYTES, earliest_offset=_earliest_offset, read_missed=_read_range)

processor = Processor(
    handler=handler, new_output=lambda partition: PartitionOutput(
        kafka_config, f"{settings.app_id}-partition-{partition}"),
    load_states=_load_states, write_store=stats_table.store, changelog_topic=CHANGELOG_TOPIC,
    orders_topic=settings.orders_topic, retry_topic=settings.retry_topic, metrics=order_metrics,
    activity=activity, summary=current_summary, request_rebalance=lambda: request_rebalance(app),
    commit_interval_s=settings.commit_interval_seconds, max_retries=settings.max_retries,
    retry_delay_s=settings.retry_delay_seconds)


class _StateHooks:
    """What the Faust overrides ask the app (orders/faust_overrides/app.py)."""

    async def before_recovery(self, partitions: set[int]) -> None:
        await processor.on_assigned(partitions)

    async def changelog_ends(self, partitions: list[int]) -> dict[int, int]:
        records = await _until_answered("the changelog's last records", partial(_last_changelog_records, partitions))
        return {partition: -1 if record is None else record.offset for partition, record in records.items()}

    def resume_offsets(self) -> dict[tuple[str, int], int]:
        return processor.resume_offsets()


app.state_hooks = _StateHooks()


@app.on_partitions_revoked.connect
async def release_partitions(sender, revoked, **kwargs) -> None:
    """After Faust's last commit of the old assignment: commit what was applied and let the partitions go."""
    await processor.on_revoked({tp.partition for tp in revoked})
