"""The start-up check shared by the worker and `produce-orders`: topics created, registry reachable.

Either answers within STARTUP_TIMEOUT_SECONDS (retrying with backoff) or the
process ends with EXIT_CANNOT_START and one line naming what did not answer.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

from avro_codec import RegistryUnavailable

from .client_config import confluent_config
from .kafka import admin
from .schemas import PatientRegistry
from .settings import Settings

log = logging.getLogger("orders")

#: Exit code of a worker or command that cannot reach Kafka or the registry in time.
EXIT_CANNOT_START = 3
#: What `prepare_topics_and_registry` raises when Kafka or the registry does not answer in time.
STARTUP_ERRORS = (admin.TopicSetupError, RegistryUnavailable)


def prepare_topics_and_registry(settings: Settings, registry: PatientRegistry,
                                changelogs: Mapping[str, Mapping[str, str]] | None = None) -> None:
    """Create the app's topics and wait for the registry (blocking), each for up to STARTUP_TIMEOUT_SECONDS.

    `changelogs` (name -> topic config) are the worker's table changelogs. Faust
    declares them itself, but only as its table starts, which can be after the
    consumer fetched the metadata its group assignment uses; a changelog missing
    from it gets no owner until the next metadata refresh, minutes later, and
    the partitions whose state it holds never open. Created here, before
    the consumer starts, they are in the first assignment.
    """
    changelogs = dict(changelogs or {})
    topics = (settings.orders_topic, settings.retry_topic, settings.dlq_topic, *changelogs)
    try:
        admin.ensure_topics(
            confluent_config(settings), topics, settings.partitions, timeout_s=settings.startup_timeout_seconds,
            same_partitions=(settings.orders_topic, settings.retry_topic, *changelogs), topic_configs=changelogs,
            user=f"user {settings.kafka_sasl_username!r} ({settings.kafka_sasl_mechanism})",
            replication=replication(settings))
        for warning in admin.replication_warnings(confluent_config(settings), topics, replication(settings)):
            log.warning(warning)
    except admin.TlsFailure as exc:
        trusted = (f"KAFKA_SSL_CAFILE={settings.kafka_ssl_cafile}" if settings.kafka_ssl_cafile
                   else "the system's CA certificates (KAFKA_SSL_CAFILE is not set)")
        raise admin.TlsFailure(f"{exc}; the client trusts {trusted}: it must hold the CA that signed the "
                                  "broker's certificate") from None
    registry.wait_until_reachable(settings.startup_timeout_seconds)


def replication(settings: Settings) -> admin.Replication:
    """How the app's topics are to be replicated (REPLICATION_FACTOR, MIN_INSYNC_REPLICAS)."""
    return admin.Replication(settings.replication_factor, settings.min_insync_replicas)


def output_record_limit(settings: Settings) -> int:
    """The largest retry copy or dead letter the worker may write: what both output topics take."""
    return admin.max_message_bytes(confluent_config(settings), (settings.retry_topic, settings.dlq_topic))
