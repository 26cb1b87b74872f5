"""The Faust app and what it owns: topics, the table, the codec, the processing objects.

Nothing here registers an agent, page, timer or command: the entry module
(`app.py` at the top) imports those, and they import this module, never the
other way round.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import faust
from faust.serializers import codecs
from faust.types import TP
from prometheus_client import CollectorRegistry

from avro_codec import AvroRecordCodec, SchemaCache, load_schema

from . import kafka_io
from .cli.send_values import ORDER_CODEC_NAME, OrderSerializers
from .client_config import confluent_config, faust_credentials, registry_auth
from .domain.headers import DEAD_LETTER_REASONS
from .domain.order import FailureSimulator
from .domain.partition_state import PartitionState, summarize
from .ops.activity_log import ActivityLog
from .ops.metrics import OrderMetrics
from .processing.handler import FaustOutputs, OrderHandler
from .processing.live_states import LiveStates
from .settings import SettingsError, load_settings
from .startup import EXIT_CANNOT_START, STARTUP_ERRORS, prepare_topics_and_registry

try:
    settings = load_settings()
except SettingsError as exc:
    raise SystemExit(f"orders-app: configuration error: {exc}") from None

log = logging.getLogger("orders")
logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per registry request otherwise

# The newest schema: it reads records of every earlier version (defaults fill the new fields),
# and `faust send` / `produce-orders` write it.
ORDER_SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "order-v2.avsc"

# The codec must be registered before any topic or command names it.
registry = SchemaCache(settings.schema_registry_url, auth=registry_auth(settings))
order_codec = AvroRecordCodec(registry, load_schema(ORDER_SCHEMA), subject=f"{settings.orders_topic}-value")
codecs.register(ORDER_CODEC_NAME, order_codec)

class OrdersApp(faust.App):
    async def on_start(self) -> None:
        await super().on_start()
        # Runs before the consumer starts, so the first assignment covers every partition.
        try:
            await asyncio.to_thread(prepare_topics_and_registry, settings, registry)
        except STARTUP_ERRORS as exc:
            log.error("orders-app cannot start: %s", exc)
            raise SystemExit(EXIT_CANNOT_START) from None


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
    # is what /partition-stats/ reports; a new owner replays the changelog.
    table_standby_replicas=0,
    # Room for a dead letter: the original record (up to the broker's 2 MiB limit) plus headers.
    producer_max_request_size=kafka_io.MAX_MESSAGE_BYTES,
)


def _source_topic(name: str) -> faust.TopicT:
    # Raw bytes: the agents decode with `order_codec` themselves, so a record that
    # does not decode reaches the agent (and the DLQ, bytes intact) instead of
    # being acknowledged and logged by Faust before any handler sees it.
    return app.topic(name, partitions=settings.partitions, key_serializer="raw", value_serializer="raw")


orders_topic = _source_topic(settings.orders_topic)
retry_topic = _source_topic(settings.retry_topic)
dlq_topic = _source_topic(settings.dlq_topic)
SOURCE_TOPICS = (orders_topic, retry_topic)

stats_table = app.Table(
    "order-stats",
    partitions=settings.partitions,
    help="Per source partition: orders counted, price sum in micros, retries, dead letters, applied offsets.",
    # Compaction only cleans closed segments: rolling them every minute keeps the
    # changelog, and so a memory:// worker's recovery at start, short however long it ran.
    extra_topic_configs={"segment.ms": 60_000, "min.cleanable.dirty.ratio": 0.1},
)

live_states = LiveStates(stats_table)


class WriteStatesBeforeCommit(faust.Sensor):
    """Faust calls this just before it commits offsets, then flushes the producer and commits."""

    def on_commit_initiated(self, consumer) -> None:
        live_states.flush()


app.sensors.add(WriteStatesBeforeCommit())


@app.on_partitions_revoked.connect
async def forget_live_states(sender, revoked, **kwargs) -> None:
    # Runs after Faust's last commit of the old assignment; partitions may move.
    live_states.forget()


#: One registry for /metrics: the app's metrics, Faust's and the process's.
metrics_registry = CollectorRegistry()
order_metrics = OrderMetrics(metrics_registry)
order_metrics.declare_dead_letter_reasons(*DEAD_LETTER_REASONS)
activity = ActivityLog(settings.order_log_lines_per_second)


def owned_partition_states() -> dict[int, PartitionState]:
    """State of each partition this worker owns now (the table may still hold revoked ones).

    Read from the agents' in-memory states where they hold one, so it includes
    changes not yet written to the table (they are, before the next commit).
    """
    actives = app.assignor.assigned_actives()
    changelog = stats_table.changelog_topic.get_topic_name()
    partitions = set(stats_table.keys()) | live_states.partitions()
    return {partition: live_states.peek(partition) for partition in sorted(partitions)
            if TP(changelog, partition) in actives}


def current_summary() -> dict:
    """The aggregate over this worker's partitions."""
    return summarize(owned_partition_states().values())


def applied_offset(tp: TP) -> int:
    """Last offset the agents applied from a source partition; -1 before the first."""
    expected = live_states.peek(tp.partition).next_offset(tp.topic)
    return -1 if expected is None else expected - 1


async def _earliest_offset(topic: str, partition: int) -> int:
    tp = TP(topic, partition)
    return (await app.consumer.earliest_offsets(tp))[tp]


async def _read_missed(topic: str, partition: int, start: int, end: int) -> list[kafka_io.Record]:
    return await asyncio.to_thread(kafka_io.read_range, confluent_config(settings), topic, partition, start, end)


handler = OrderHandler(
    codec=order_codec, states=live_states, outputs=FaustOutputs(retry_topic, dlq_topic),
    failures=FailureSimulator(settings.failure_rate, settings.failure_seed, settings.forced_failures),
    metrics=order_metrics, activity=activity, summary=current_summary,
    orders_topic=settings.orders_topic, max_retries=settings.max_retries,
    retry_delay_s=settings.retry_delay_seconds,
    earliest_offset=_earliest_offset, read_missed=_read_missed)
