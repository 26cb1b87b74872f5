"""The start-up check shared by the worker and `produce-orders`: topics created, registry reachable.

Either answers within STARTUP_TIMEOUT_SECONDS (retrying with backoff) or the
process ends with EXIT_CANNOT_START and one line naming what did not answer.
"""
from __future__ import annotations

from avro_codec import RegistryUnavailable, SchemaCache

from . import kafka_io
from .client_config import confluent_config
from .settings import Settings

#: Exit code of a worker or command that cannot reach Kafka or the registry in time.
EXIT_CANNOT_START = 3
#: What `prepare_topics_and_registry` raises when Kafka or the registry does not answer in time.
STARTUP_ERRORS = (kafka_io.TopicSetupError, RegistryUnavailable)


def prepare_topics_and_registry(settings: Settings, registry: SchemaCache) -> None:
    """Create the app's topics and wait for the registry (blocking), each for up to STARTUP_TIMEOUT_SECONDS."""
    kafka_io.ensure_topics(
        confluent_config(settings), (settings.orders_topic, settings.retry_topic, settings.dlq_topic),
        settings.partitions, timeout_s=settings.startup_timeout_seconds,
        same_partitions=(settings.orders_topic, settings.retry_topic),
        user=f"user {settings.kafka_sasl_username!r} ({settings.kafka_sasl_mechanism})")
    registry.wait_until_reachable(settings.startup_timeout_seconds)


def output_record_limit(settings: Settings) -> int:
    """The largest retry copy or dead letter the worker may write: what both output topics take."""
    return kafka_io.max_message_bytes(confluent_config(settings), (settings.retry_topic, settings.dlq_topic))
