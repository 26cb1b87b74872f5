"""The Faust app, its topics and its table: what `faust -A app` needs to exist when it imports the app.

Everything else (the codec's registry client, the partition tasks, the metrics, the Kafka clients) is built
by `orders/wiring.py` the first time a command needs it, through `app.runtime`: as the worker starts, or as
`produce-orders`, `dlq ...` or `faust send` run. The settings are read here once; a value the app cannot use
is reported then, in one line naming the variable, with exit code 2 (`faust -A app --help` still works).

Nothing here registers an agent, page, timer or command: the entry module (`app.py` at the top) imports
those, and they import this module, never the other way round.
"""
from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from faust.serializers import codecs

from .client_config import faust_credentials
from .faust_overrides.app import TransactionalStateApp
from .faust_overrides.assignor import RestartTolerantAssignor
from .faust_overrides.serializers import ORDER_CODEC_NAME, LazyCodec, OrderSerializers
from .faust_overrides.tables import PartitionStateTable
from .kafka.producing import MAX_MESSAGE_BYTES
from .ops import collector
from .settings import SettingsError, load_settings_or_defaults
from .startup import EXIT_CANNOT_START, STARTUP_ERRORS, output_record_limit, prepare_topics_and_registry
from .wiring import Runtime, build_runtime

#: The usage-error convention: a setting the app cannot use.
EXIT_CONFIGURATION_ERROR = 2

log = logging.getLogger("orders")
logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per registry request otherwise

settings, settings_error = load_settings_or_defaults()
try:
    broker_credentials = faust_credentials(settings)
except OSError as exc:  # a certificate or key file that cannot be read
    broker_credentials, settings_error = None, settings_error or SettingsError(
        f"KAFKA_SSL_CAFILE, KAFKA_SSL_CERTFILE or KAFKA_SSL_KEYFILE cannot be read: {exc}")


def configuration_error(error: SettingsError) -> SystemExit:
    """One line naming the setting, on stderr; the exit to raise."""
    print(f"{settings.app_id}: configuration error: {error}", file=sys.__stderr__, flush=True)
    return SystemExit(EXIT_CONFIGURATION_ERROR)


class OrdersApp(TransactionalStateApp):
    _runtime: Runtime | None = None

    @property
    def runtime(self) -> Runtime:
        """The objects the worker and its commands run on, built on first use (a bad setting exits here)."""
        if self._runtime is None:
            if settings_error is not None:
                raise configuration_error(settings_error)
            self._runtime = build_runtime(self, settings, [orders_topic, retry_topic], stats_table)
        return self._runtime

    def on_init_dependencies(self) -> Any:
        self.runtime  # noqa: B018  (built before Faust adds its monitor to the sensors)
        return super().on_init_dependencies()

    async def on_start(self) -> None:
        await super().on_start()
        # Runs before the consumer starts, so the first assignment covers every partition.
        runtime = self.runtime
        try:
            await asyncio.to_thread(prepare_topics_and_registry, settings, runtime.registry,
                                    {stats_table.changelog_topic_name: changelog_config()})
            runtime.handler.dead_letter_bytes = await asyncio.to_thread(output_record_limit, settings)
        except STARTUP_ERRORS as exc:
            log.error("orders-app cannot start: %s", exc)
            raise SystemExit(EXIT_CANNOT_START) from None

    async def on_started(self) -> None:
        await super().on_started()
        # Frozen, what start-up built is no longer scanned (a full collection took 40-80 ms every few seconds
        # at 10,000 orders/s, a pause every record arriving meanwhile waited out: the latency's p99); and
        # records awaiting their turn are no longer promoted and scanned again and again.
        collector.settle_after_start()

    async def on_stop(self) -> None:
        # Before Faust stops the agents and the consumer: commit what the partitions applied.
        if self._runtime is not None:
            await self._runtime.stop()
        await super().on_stop()


app = OrdersApp(
    settings.app_id,
    broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",")],
    broker_credentials=broker_credentials,
    store=settings.table_store,
    # `faust -A app send orders '<json>'` encodes with the app's default value serializer: the order codec,
    # registered under its name now and built when it first encodes (from `app.runtime`).
    value_serializer=ORDER_CODEC_NAME,
    Serializers=OrderSerializers,
    topic_partitions=settings.partitions,
    web_bind=settings.web_bind,
    web_host=settings.web_host,
    broker_session_timeout=settings.broker_session_timeout_seconds,
    # No standbys: each worker's table holds only the partitions it owns, which is what /partition-stats/
    # reports; a new owner reads the changelog.
    table_standby_replicas=0,
    producer_max_request_size=MAX_MESSAGE_BYTES,
    broker_max_poll_records=settings.max_poll_records,
    # Every topic the worker uses is created by the app first, with REPLICATION_FACTOR; Faust creates none:
    # the app elects no leader (no on_leader timers), so Faust's leader topic is not needed.
    topic_disable_leader=True,
    **({"topic_replication_factor": settings.replication_factor} if settings.replication_factor > 0 else {}),
    # Static membership: a restarted worker with the same WORKER_ID gets its partitions back without a
    # rebalance of the whole group (KIP-345; aiokafka's group_instance_id).
    consumer_group_instance_id=settings.worker_id or None,
    PartitionAssignor=RestartTolerantAssignor,
)
codecs.register(ORDER_CODEC_NAME, LazyCodec(lambda: app.runtime.codec))


def _source_topic(name: str) -> Any:
    # Raw bytes: the partition tasks decode with the order codec themselves, so a record that does not decode
    # reaches them (and the DLQ, bytes intact) instead of being acknowledged and logged by Faust first.
    return app.topic(name, partitions=settings.partitions, key_serializer="raw", value_serializer="raw")


orders_topic = _source_topic(settings.orders_topic)
retry_topic = _source_topic(settings.retry_topic)

stats_table = app.tables.add(PartitionStateTable(
    app, name="order-stats", beacon=app.tables.beacon, partitions=settings.partitions,
    help="Per source partition: orders counted, price sum in micros, retries, dead letters, applied offsets, "
         "retry copy sequence numbers, records applied since the last commit.",
    # Compaction only cleans closed segments: rolling them every minute keeps the changelog, and so a
    # memory:// worker's recovery at start, short however long it ran.
    extra_topic_configs={"segment.ms": 60_000, "min.cleanable.dirty.ratio": 0.1}))


def changelog_config() -> dict[str, str]:
    """The changelog's topic config as Faust would declare it; the start-up check creates it with this."""
    return {"cleanup.policy": "compact",
            **{key: str(value) for key, value in (stats_table.changelog_topic.config or {}).items()}}
