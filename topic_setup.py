"""Creates the app's topics before anything subscribes to them.

Faust declares a topic while it subscribes, and a consumer that joins its group
before the new topic reaches its metadata is assigned none of its partitions
until the next metadata refresh, minutes later. So the worker (and the demo
producer) create the topics first and wait until the broker lists them.
"""
from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from kafka_security import confluent_config
from settings import Settings

log = logging.getLogger(__name__)


class TopicSetupError(RuntimeError):
    """The topics cannot be made to fit the settings."""


def ensure_topics(settings: Settings, timeout_s: float) -> None:
    # librdkafka's own log would print a line per failed connection; the retries below say it once each.
    # Authentication failures reach only the error callback; list_topics reports them as a transport error.
    client_errors: list[KafkaError] = []
    admin = AdminClient({**confluent_config(settings), "log_level": 2, "error_cb": client_errors.append})
    wanted = (settings.orders_topic, settings.retry_topic, settings.dlq_topic)
    deadline = time.monotonic() + timeout_s
    delay = 0.5
    while True:
        try:
            existing = admin.list_topics(timeout=max(1.0, min(2.0, deadline - time.monotonic()))).topics
            missing = [name for name in wanted if name not in existing]
            if not missing:
                break
            futures = admin.create_topics([NewTopic(name, settings.partitions, 1) for name in missing])
            for name, future in futures.items():
                try:
                    future.result(30)
                    log.info("created topic %s with %d partitions", name, settings.partitions)
                except KafkaException as exc:
                    if "TOPIC_ALREADY_EXISTS" not in str(exc):
                        raise
        except KafkaException as exc:
            admin.poll(0)
            refused = [error for error in client_errors if error.code() == KafkaError._AUTHENTICATION]
            if refused:
                raise TopicSetupError(f"Kafka at {settings.kafka_bootstrap_servers} refused the credentials of "
                                      f"user {settings.kafka_sasl_username!r} ({settings.kafka_sasl_mechanism}): "
                                      f"{refused[0].str()}") from None
            if time.monotonic() + delay > deadline:
                raise TopicSetupError(f"Kafka at {settings.kafka_bootstrap_servers} did not answer within "
                                      f"{timeout_s:.0f}s: {exc}") from exc
            log.warning("Kafka at %s not ready (%s); retrying in %.1fs", settings.kafka_bootstrap_servers, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    for name in (settings.orders_topic, settings.retry_topic):
        count = len(existing[name].partitions)
        if count != settings.partitions:
            raise TopicSetupError(f"topic {name} has {count} partitions but PARTITIONS={settings.partitions}; "
                                  f"{settings.orders_topic} and {settings.retry_topic} must both have PARTITIONS "
                                  f"partitions (set PARTITIONS={count} if both have {count})")
