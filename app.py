"""The Faust app: `faust -A app worker -l info`.

Orders arrive Avro-encoded on `orders`; failed ones go round `orders-retry`
and, when retries run out or the order can never succeed, to `orders-dlq`.
A changelog-backed table holds the aggregate; `GET /average/` serves it.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import faust
from faust.serializers import codecs
from faust.types import TP

import live_page
import metrics_endpoint
import recovery_watchdog
from agents.live_states import LiveStates
from agents.order_logic import FailureSimulator
from agents.partition_state import PartitionState, summarize
from avro_codec import AvroRecordCodec, RegistryUnavailable, SchemaCache, load_schema
from avro_codec.cli_values import ORDER_CODEC_NAME, OrderSerializers
from kafka_security import faust_credentials, registry_auth
from peer_stats import gather_partition_states
from settings import SettingsError, load_settings
from topic_setup import TopicSetupError, ensure_topics

try:
    settings = load_settings()
except SettingsError as exc:
    raise SystemExit(f"orders-app: configuration error: {exc}") from None

log = logging.getLogger("orders")
logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per registry request otherwise
EXIT_CANNOT_START = 3

# The newest schema: it reads records of every earlier version (defaults fill the new fields),
# and `faust send` / `produce-orders` write it.
ORDER_SCHEMA = Path(__file__).resolve().parent / "schemas" / "order-v2.avsc"

# The codec must be registered before any topic or command names it.
registry = SchemaCache(settings.schema_registry_url, auth=registry_auth(settings))
order_codec = AvroRecordCodec(registry, load_schema(ORDER_SCHEMA), subject=f"{settings.orders_topic}-value")
codecs.register(ORDER_CODEC_NAME, order_codec)


#: What `prepare_topics_and_registry` raises when Kafka or the registry does not answer in time.
STARTUP_ERRORS = (TopicSetupError, RegistryUnavailable)


def prepare_topics_and_registry() -> None:
    """Create the app's topics and wait for the registry (blocking), each for up to STARTUP_TIMEOUT_SECONDS."""
    ensure_topics(settings, settings.startup_timeout_seconds)
    registry.wait_until_reachable(settings.startup_timeout_seconds)


class OrdersApp(faust.App):
    async def on_start(self) -> None:
        await super().on_start()
        # Runs before the consumer starts, so the first assignment covers every partition.
        try:
            await asyncio.to_thread(prepare_topics_and_registry)
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
    producer_max_request_size=2_097_152,
)


def _source_topic(name: str) -> faust.TopicT:
    # Raw bytes: the agents decode with `order_codec` themselves, so a record that
    # does not decode reaches the agent (and the DLQ, bytes intact) instead of
    # being acknowledged and logged by Faust before any handler sees it.
    return app.topic(name, partitions=settings.partitions, key_serializer="raw", value_serializer="raw")


orders_topic = _source_topic(settings.orders_topic)
retry_topic = _source_topic(settings.retry_topic)
dlq_topic = _source_topic(settings.dlq_topic)

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

failures = FailureSimulator(settings.failure_rate, settings.failure_seed, settings.forced_failures)


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


@app.page("/partition-stats/")
async def partition_stats(web, request):
    """This worker's share of the aggregate, by partition; /average/ on any worker gathers them."""
    return web.json({str(p): state.to_value() for p, state in owned_partition_states().items()})


@app.page("/average/")
async def average(web, request):
    """The global aggregate: this worker's partitions plus every other owner's, fetched over HTTP."""
    states, unreachable = await gather_partition_states(
        app, stats_table.name, owned_partition_states(), timeout_s=settings.peer_timeout_seconds)
    return web.json({**summarize(states.values()), "partitions": len(states), "unreachable_workers": unreachable})


live_page.install(app)  # GET /: the figures of /average/ and a chart, refreshed by the browser


def applied_offset(tp: TP) -> int:
    """Last offset the agents applied from a source partition; -1 before the first."""
    expected = live_states.peek(tp.partition).next_offset(tp.topic)
    return -1 if expected is None else expected - 1


recovery_watchdog.install(app, [orders_topic, retry_topic], applied_offset,
                          stall_s=max(recovery_watchdog.STALL_SECONDS, 3 * settings.retry_delay_seconds))
order_metrics = metrics_endpoint.install(app, [orders_topic, retry_topic], applied_offset, current_summary,
                                         faust_sensor=settings.faust_metrics)

import agents.process_orders  # noqa: E402,F401  (registers the agent)
import agents.retry_orders  # noqa: E402,F401
import commands  # noqa: E402,F401
import dlq.commands  # noqa: E402,F401  (registers `faust dlq list|replay`)
