"""Kafka for the DLQ tools (confluent-kafka, blocking): read a topic's records up to its end offsets
at the time of the call, create the compacted ledger topic, and deliver records with acknowledgement.

Reading assigns partitions directly: no consumer group joins and nothing is committed,
so listing or replaying never moves anyone's offsets.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from .dead_letters import Record

#: Dead letters can hold records up to the broker's 2 MiB limit; replaying one must fit too.
MAX_MESSAGE_BYTES = 2_097_152


class TopicMissing(LookupError):
    """The topic does not exist."""


def _consumer(config: Mapping[str, Any]) -> Consumer:
    # A group id is required by the client but never joined: partitions are assigned, offsets never committed.
    return Consumer({**config, "group.id": f"dlq-tools-{uuid.uuid4().hex}", "enable.auto.commit": False,
                     "enable.partition.eof": True, "auto.offset.reset": "earliest", "log_level": 2})


def _watermarks(consumer: Consumer, topic: str) -> dict[int, tuple[int, int]]:
    found = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if found is None or found.error is not None:
        raise TopicMissing(f"topic {topic} does not exist")
    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in found.partitions}


def end_offsets(config: Mapping[str, Any], topic: str) -> dict[int, int]:
    """Partition -> offset the next record will get."""
    consumer = _consumer(config)
    try:
        return {p: high for p, (_low, high) in _watermarks(consumer, topic).items()}
    finally:
        consumer.close()


def read_topic(config: Mapping[str, Any], topic: str, start: Mapping[int, int] | None = None,
               idle_timeout_s: float = 30.0) -> list[Record]:
    """Records of `topic` from `start` (partition -> offset; default and for partitions not named:
    the beginning) up to the end offsets when called, in offset order per partition.

    TopicMissing when the topic does not exist; TimeoutError when no record
    arrives for `idle_timeout_s` before the end is reached.
    """
    consumer = _consumer(config)
    try:
        ends: dict[int, int] = {}
        assignment = []
        for partition, (low, high) in _watermarks(consumer, topic).items():
            first = max(low, (start or {}).get(partition, low))
            if first < high:
                ends[partition] = high
                assignment.append(TopicPartition(topic, partition, first))
        consumer.assign(assignment)
        records: list[Record] = []
        last_progress = time.monotonic()
        while ends:
            msg = consumer.poll(0.5)
            if msg is None:
                if time.monotonic() - last_progress > idle_timeout_s:
                    raise TimeoutError(f"reading {topic}: partitions {sorted(ends)} sent nothing for "
                                       f"{idle_timeout_s:.0f}s before their end offsets {ends}")
                continue
            last_progress = time.monotonic()
            partition = msg.partition()
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    ends.pop(partition, None)
                    continue
                raise KafkaException(msg.error())
            if partition not in ends:
                continue
            if msg.offset() < ends[partition]:
                kind, stamp = msg.timestamp()
                records.append(Record(topic, partition, msg.offset(), None if kind == TIMESTAMP_NOT_AVAILABLE
                                      else stamp, msg.key(), msg.value(), dict(msg.headers() or [])))
            if msg.offset() >= ends[partition] - 1:
                del ends[partition]
        return records
    finally:
        consumer.close()


def ensure_compacted_topic(config: Mapping[str, Any], topic: str, timeout_s: float = 30.0) -> bool:
    """Create `topic` (one partition, cleanup.policy=compact, the broker's default replication) unless
    it exists; True when it was created here."""
    admin = AdminClient({**config, "log_level": 2})
    if topic in admin.list_topics(timeout=10).topics:
        return False
    future = admin.create_topics([NewTopic(topic, 1, -1, config={"cleanup.policy": "compact"})])[topic]
    try:
        future.result(timeout_s)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise
    return True


#: The producer gives up on a record after this long and reports it failed; `deliver` waits a little longer,
#: so a record it reports unacknowledged is one the client has given up on, not one still on its way.
DELIVERY_TIMEOUT_S = 60


def producer(config: Mapping[str, Any]) -> Producer:
    return Producer({**config, "enable.idempotence": True, "acks": "all", "message.max.bytes": MAX_MESSAGE_BYTES,
                     "message.timeout.ms": DELIVERY_TIMEOUT_S * 1000, "log_level": 2})


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    #: None: the client's partitioner picks one from the key
    partition: int | None = None


@dataclass(frozen=True)
class Delivery:
    """The broker's answer for one record: where it landed, or why it did not."""

    landed_at: str | None = None
    error: str | None = None


def deliver(client: Producer, records: Sequence[Outgoing], timeout_s: float = DELIVERY_TIMEOUT_S + 30
            ) -> list[Delivery]:
    """Send `records` and wait for the broker's acknowledgement of each; one Delivery per record, in order."""
    results: list[Delivery | None] = [None] * len(records)

    def report(index: int):
        def on_delivery(err, msg) -> None:
            results[index] = Delivery(error=str(err)) if err is not None else \
                Delivery(landed_at=f"{msg.topic()}/{msg.partition()}/{msg.offset()}")
        return on_delivery

    for index, record in enumerate(records):
        while True:
            try:
                placement = {} if record.partition is None else {"partition": record.partition}
                client.produce(record.topic, key=record.key, value=record.value, headers=list(record.headers),
                               on_delivery=report(index), **placement)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                client.poll(0.5)
    client.flush(timeout_s)
    return [result or Delivery(error=f"not acknowledged within {timeout_s:.0f}s") for result in results]
