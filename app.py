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

from agents.order_logic import FailureSimulator
from agents.partition_state import PartitionState, summarize
from avro_codec import AvroRecordCodec, SchemaCache, load_schema
from avro_codec.cli_values import ORDER_CODEC_NAME, OrderSerializers
from settings import SettingsError, load_settings
from topic_setup import ensure_topics

try:
    settings = load_settings()
except SettingsError as exc:
    raise SystemExit(f"orders-app: configuration error: {exc}") from None

logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per registry request otherwise

ORDER_SCHEMA = Path(__file__).resolve().parent / "schemas" / "order.avsc"

# The codec must be registered before any topic or command names it.
registry = SchemaCache(settings.schema_registry_url)
order_codec = AvroRecordCodec(registry, load_schema(ORDER_SCHEMA), subject=f"{settings.orders_topic}-value")
codecs.register(ORDER_CODEC_NAME, order_codec)


class OrdersApp(faust.App):
    async def on_start(self) -> None:
        await super().on_start()
        # Runs before the consumer starts, so the first assignment covers every partition.
        await asyncio.to_thread(ensure_topics, settings)


app = OrdersApp(
    settings.app_id,
    broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",")],
    store=settings.table_store,
    # `faust -A app send orders '<json>'` encodes with the app's default value serializer.
    value_serializer=ORDER_CODEC_NAME,
    Serializers=OrderSerializers,
    topic_partitions=settings.partitions,
    web_bind=settings.web_bind,
    table_standby_replicas=0,
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
)

failures = FailureSimulator(settings.failure_rate, settings.failure_seed, settings.forced_failures)


def current_summary() -> dict:
    return summarize(PartitionState.from_value(value) for value in stats_table.values())


@app.page("/average/")
async def average(web, request):
    """The aggregate over the partitions this worker owns."""
    return web.json(current_summary())


import agents.process_orders  # noqa: E402,F401  (registers the agent)
import agents.retry_orders  # noqa: E402,F401
import commands  # noqa: E402,F401
