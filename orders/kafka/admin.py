"""Creating and checking the app's topics (confluent-kafka's AdminClient, blocking)."""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from ..backoff import Backoff
from .producing import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Replication:
    """How the app's topics are replicated: -1 replicas takes the broker's `default.replication.factor`, and no
    `min_insync_replicas` the broker's `min.insync.replicas`."""

    replicas: int = -1
    min_insync_replicas: int | None = None

    def topic_config(self) -> dict[str, str]:
        return {} if self.min_insync_replicas is None else {"min.insync.replicas": str(self.min_insync_replicas)}


class TopicSetupError(RuntimeError):
    """The topics cannot be made to fit the settings."""


class TlsFailure(TopicSetupError):
    """The broker's certificate did not verify (or the TLS handshake failed otherwise): retrying cannot help."""


def _create(admin: AdminClient, topics: Iterable[NewTopic], timeout_s: float) -> list[str]:
    """Create topics; return the names created here (one that exists already is not an error)."""
    created = []
    for name, future in admin.create_topics(list(topics)).items():
        try:
            future.result(timeout_s)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created


def max_message_bytes(config: Mapping[str, Any], topics: Iterable[str], timeout_s: float = 10.0) -> int:
    """The largest record every one of `topics` takes: the smallest max.message.bytes among them (each
    topic's own, or the broker default it inherits), and never above MAX_MESSAGE_BYTES."""
    admin = AdminClient({**config, "log_level": 2})
    limit = MAX_MESSAGE_BYTES
    for future in admin.describe_configs([ConfigResource("topic", name) for name in topics]).values():
        entry = future.result(timeout_s).get("max.message.bytes")
        if entry is not None and entry.value:
            limit = min(limit, int(entry.value))
    return limit


def ensure_compacted_topic(config: Mapping[str, Any], topic: str, replication: Replication = Replication(),
                           timeout_s: float = 30.0) -> bool:
    """Create `topic` (one partition, cleanup.policy=compact, `replication`) unless it exists; True when it was
    created here."""
    admin = AdminClient({**config, "log_level": 2})
    if topic in admin.list_topics(timeout=10).topics:
        return False
    return bool(_create(admin, [NewTopic(topic, 1, replication.replicas, config={
        "cleanup.policy": "compact", **replication.topic_config()})], timeout_s))


def replication_warnings(config: Mapping[str, Any], names: Sequence[str], replication: Replication) -> list[str]:
    """What is wrong with the replication of existing topics: fewer replicas than asked, or one replica on a
    cluster of more than one broker (losing that broker loses the topic's data)."""
    metadata = AdminClient({**config, "log_level": 2}).list_topics(timeout=10)
    brokers = len(metadata.brokers)
    warnings = []
    for name in names:
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None or not topic.partitions:
            continue
        replicas = min(len(partition.replicas) for partition in topic.partitions.values())
        if 0 < replication.replicas and replicas < replication.replicas:
            warnings.append(f"topic {name} has {replicas} replica(s) per partition, fewer than "
                            f"REPLICATION_FACTOR={replication.replicas}: Kafka does not add replicas to an existing "
                            f"topic (kafka-reassign-partitions does)")
        elif replicas == 1 and brokers > 1:
            warnings.append(f"topic {name} has 1 replica on a cluster of {brokers} brokers: losing the broker "
                            f"that holds a partition loses its records (set REPLICATION_FACTOR, or the brokers' "
                            f"default.replication.factor, before the topics are created)")
    return warnings


def ensure_topics(config: Mapping[str, Any], names: Sequence[str], partitions: int, *, timeout_s: float,
                  same_partitions: Sequence[str] = (), user: str = "",
                  topic_configs: Mapping[str, Mapping[str, str]] | None = None,
                  replication: Replication = Replication()) -> None:
    """Create the topics in `names` that are missing, with `partitions` partitions (and the entry of
    `topic_configs` for a name, if any), and wait until the broker lists them all. Topics in
    `same_partitions` must have exactly `partitions`.

    Faust declares a topic while it subscribes, and a consumer that joins its
    group before the new topic reaches its metadata is assigned none of its
    partitions until the next metadata refresh, minutes later: so the worker
    (and the demo producer) create the topics first. An unreachable broker is
    retried with backoff for `timeout_s`; refused credentials and a failed TLS
    handshake end at once.
    """
    servers = config.get("bootstrap.servers")
    # librdkafka's own log would print a line per failed connection; the retries below say it once each.
    # Authentication failures reach only the error callback; list_topics reports them as a transport error.
    client_errors: list[KafkaError] = []
    admin = AdminClient({**config, "log_level": 2, "error_cb": client_errors.append})
    backoff = Backoff(0.5, 5.0, timeout_s)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            existing = admin.list_topics(timeout=max(1.0, min(2.0, deadline - time.monotonic()))).topics
            missing = [name for name in names if name not in existing]
            if not missing:
                break
            wanted = [NewTopic(name, partitions, replication.replicas,
                               config={**replication.topic_config(), **(topic_configs or {}).get(name, {})})
                      for name in missing]
            for name in _create(admin, wanted, 30):
                log.info("created topic %s with %d partitions", name, partitions)
        except KafkaException as exc:
            admin.poll(0)
            refused = [error for error in client_errors if error.code() == KafkaError._AUTHENTICATION]
            if refused:
                raise TopicSetupError(f"Kafka at {servers} refused the credentials of {user}: "
                                      f"{refused[0].str()}") from None
            handshakes = [error for error in client_errors if error.code() == KafkaError._SSL]
            if handshakes:  # a certificate that does not verify will not start to verify by waiting
                raise TlsFailure(f"the TLS handshake with Kafka at {servers} failed: {handshakes[0].str()}") from None
            delay = backoff.next_delay()
            if delay is None:
                raise TopicSetupError(f"Kafka at {servers} did not answer within {timeout_s:.0f}s: {exc}") from exc
            log.warning("Kafka at %s not ready (%s); retrying in %.1fs", servers, exc, delay)
            time.sleep(delay)

    for name in same_partitions:
        count = len(existing[name].partitions)
        if count != partitions:
            raise TopicSetupError(f"topic {name} has {count} partitions but PARTITIONS={partitions}; "
                                  f"{' and '.join(same_partitions)} must all have PARTITIONS partitions "
                                  f"(set PARTITIONS={count} if they all have {count})")
