"""Kafka work the app does outside Faust's consumer, one copy each (confluent-kafka, blocking).

- read records: a range of one partition (a page at a time), or a whole topic up to its end offsets;
- end offsets of a topic;
- produce with back-pressure and account for every delivery report;
- deliver a list of records and wait for the broker's answer to each;
- create the app's topics (before the consumer joins) and a compacted topic.

Reads assign partitions directly (no consumer group joins, nothing is
committed) and see committed records only (`read_committed`, librdkafka's
default), the way every consumer of the app's transactional outputs must.
Callers on the event loop run these in a thread (`asyncio.to_thread`).
"""
from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from avro_codec.backoff import Backoff

log = logging.getLogger(__name__)

#: The largest record the local broker takes (its message.max.bytes); dead letters can be that large.
MAX_MESSAGE_BYTES = 2_097_152
#: The producer gives up on a record after this long and reports it failed; `deliver` waits a little longer,
#: so a record it reports unacknowledged is one the client has given up on, not one still on its way.
DELIVERY_TIMEOUT_S = 60
#: How long `produce` serves delivery reports when librdkafka's local queue is full, before it tries again.
QUEUE_FULL_POLL_SECONDS = 0.05
#: Codes librdkafka gives once a transactional producer is fenced (another producer with its transactional
#: id started) or otherwise fatally broken; produce() reports _FATAL without the fatal flag.
FENCED_OR_FATAL = (KafkaError._FENCED, KafkaError._FATAL, KafkaError.PRODUCER_FENCED,
                   KafkaError.INVALID_PRODUCER_EPOCH)


class TopicMissing(LookupError):
    """The topic does not exist."""


class TopicSetupError(RuntimeError):
    """The topics cannot be made to fit the settings."""


class TlsFailure(TopicSetupError):
    """The broker's certificate did not verify (or the TLS handshake failed otherwise): retrying cannot help."""


@dataclass(frozen=True)
class Record:
    """One Kafka record as read from a topic, independent of the client library."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes | None] = field(default_factory=dict)

    @property
    def timestamp(self) -> float | None:
        """Seconds, as Faust's messages carry it."""
        return None if self.timestamp_ms is None else self.timestamp_ms / 1000.0

    @property
    def coordinates(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


# -- reading ------------------------------------------------------------------

def _consumer(config: Mapping[str, Any]) -> Consumer:
    # A group id is required by the client but never joined: partitions are assigned, offsets never committed.
    return Consumer({**config, "group.id": f"orders-reader-{uuid.uuid4().hex}", "enable.auto.commit": False,
                     "enable.partition.eof": True, "auto.offset.reset": "earliest",
                     "isolation.level": "read_committed", "log_level": 2,
                     # The end of a range is often a transaction marker, which only the next (empty) fetch
                     # reveals; a short wait keeps that from costing librdkafka's default half second.
                     "fetch.wait.max.ms": 20})


def _marks(consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
    """(oldest offset still in the log, offset the next record will get) of one partition."""
    return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)


def _watermarks(consumer: Consumer, topic: str) -> dict[int, tuple[int, int]]:
    found = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if found is None or found.error is not None:
        raise TopicMissing(f"topic {topic} does not exist")
    return {p: _marks(consumer, topic, p) for p in found.partitions}


def watermarks(config: Mapping[str, Any], partitions: Iterable[tuple[str, int]]
               ) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) -> (oldest offset still in the log, offset the next record will get)."""
    consumer = _consumer(config)
    try:
        return {(topic, partition): _marks(consumer, topic, partition) for topic, partition in partitions}
    finally:
        consumer.close()


def first_offset(config: Mapping[str, Any], topic: str, partition: int) -> int:
    """The oldest offset still in a partition (its low watermark)."""
    return watermarks(config, [(topic, partition)])[topic, partition][0]


def end_offsets(config: Mapping[str, Any], topic: str) -> dict[int, int]:
    """Partition -> offset the next record will get. TopicMissing when the topic does not exist."""
    consumer = _consumer(config)
    try:
        return {p: high for p, (_low, high) in _watermarks(consumer, topic).items()}
    finally:
        consumer.close()


def _records(consumer: Consumer, topic: str, ranges: dict[int, tuple[int, int]], idle_timeout_s: float
             ) -> Iterator[Record]:
    """Records with start <= offset < end per partition (`ranges`: partition -> (start, end)), in offset order,
    one at a time as they arrive."""
    ends = {partition: end for partition, (start, end) in ranges.items() if start < end}
    consumer.assign([TopicPartition(topic, partition, ranges[partition][0]) for partition in ends])
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
            yield Record(topic, partition, msg.offset(), None if kind == TIMESTAMP_NOT_AVAILABLE else stamp,
                         msg.key(), msg.value(), dict(msg.headers() or []))
        if msg.offset() >= ends[partition] - 1:
            del ends[partition]


def _read(consumer: Consumer, topic: str, ranges: dict[int, tuple[int, int]], idle_timeout_s: float,
          max_records: int | None = None) -> list[Record]:
    """The first `max_records` (default: all) of `_records`."""
    return list(itertools.islice(_records(consumer, topic, ranges, idle_timeout_s), max_records))


def read_topic(config: Mapping[str, Any], topic: str, start: Mapping[int, int] | None = None,
               idle_timeout_s: float = 30.0) -> list[Record]:
    """Records of `topic` from `start` (partition -> offset; default and for partitions not named:
    the beginning) up to the end offsets when called, in offset order per partition.

    TopicMissing when the topic does not exist; TimeoutError when no record
    arrives for `idle_timeout_s` before the end is reached.
    """
    consumer = _consumer(config)
    try:
        ranges = {partition: (max(low, (start or {}).get(partition, low)), high)
                  for partition, (low, high) in _watermarks(consumer, topic).items()}
        return _read(consumer, topic, ranges, idle_timeout_s)
    finally:
        consumer.close()


def read_range(config: Mapping[str, Any], topic: str, partition: int, start: int, end: int,
               idle_timeout_s: float = 30.0, max_records: int | None = None) -> list[Record]:
    """Records of one partition with start <= offset < end, in order, at most `max_records` of them (the
    first): read a long range a page at a time. Offsets that hold no record (retention, compaction,
    transaction markers, aborted records) simply yield nothing."""
    consumer = _consumer(config)
    try:
        low, high = _marks(consumer, topic, partition)
        return _read(consumer, topic, {partition: (max(start, low), min(end, high))}, idle_timeout_s, max_records)
    finally:
        consumer.close()


def holds_records(config: Mapping[str, Any], topic: str, partition: int, start: int, end: int,
                  idle_timeout_s: float = 30.0) -> bool:
    """Whether any committed record lies at start <= offset < end (reads up to the first one)."""
    return bool(read_range(config, topic, partition, start, end, idle_timeout_s, max_records=1))


def tail(config: Mapping[str, Any], topic: str, count: int, partitions: Iterable[int] | None = None,
         window: int = 32, idle_timeout_s: float = 30.0) -> dict[int, list[Record]]:
    """The last `count` committed records of each partition (default: all of the topic's), in offset order.

    The log may end in transaction markers and aborted records, which hold
    offsets but no committed record, so this reads the tail backwards in
    growing windows until `count` committed records turn up or the start is
    reached. TopicMissing when `partitions` is not given and the topic does
    not exist.
    """
    consumer = _consumer(config)
    try:
        if partitions is None:
            marks = _watermarks(consumer, topic)
        else:
            marks = {p: _marks(consumer, topic, p) for p in partitions}
        found: dict[int, list[Record]] = {}
        search: dict[int, tuple[int, int, int]] = {}  # partition -> (low, end of the unread tail, window size)
        for partition, (low, high) in marks.items():
            found[partition] = []
            search[partition] = (low, high, max(window, count))
        while search:
            ranges = {p: (max(low, end - size), end) for p, (low, end, size) in search.items()}
            read: dict[int, list[Record]] = {}
            for record in _read(consumer, topic, ranges, idle_timeout_s):
                read.setdefault(record.partition, []).append(record)
            for partition, (low, _end, size) in list(search.items()):
                start = ranges[partition][0]
                found[partition] = (read.get(partition, []) + found[partition])[-count:]
                if len(found[partition]) >= count or start <= low:
                    del search[partition]
                else:
                    search[partition] = (low, start, size * 4)
        return found
    finally:
        consumer.close()


def last_records(config: Mapping[str, Any], topic: str, partitions: Iterable[int],
                 idle_timeout_s: float = 30.0) -> dict[int, Record | None]:
    """The last committed record of each partition (None for a partition without one)."""
    return {partition: (records[-1] if records else None)
            for partition, records in tail(config, topic, 1, partitions, idle_timeout_s=idle_timeout_s).items()}


# -- producing ----------------------------------------------------------------

def producer(config: Mapping[str, Any], **overrides: Any) -> Producer:
    """An idempotent producer that waits for every in-sync replica, with quiet client logs."""
    return Producer({**config, "enable.idempotence": True, "acks": "all", "message.max.bytes": MAX_MESSAGE_BYTES,
                     "message.timeout.ms": DELIVERY_TIMEOUT_S * 1000, "log_level": 2, **overrides})


def produce(client: Producer, topic: str, *, key: bytes | str | None, value: bytes | None,
            on_delivery: Callable, headers: Sequence[tuple[str, bytes]] | None = None,
            partition: int | None = None) -> None:
    """Queue one record; when librdkafka's local queue is full, serve delivery reports until there is room."""
    placement = {} if partition is None else {"partition": partition}
    while True:
        try:
            client.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery, **placement)
            break
        except BufferError:
            client.poll(QUEUE_FULL_POLL_SECONDS)
    client.poll(0)


def drain(client: Producer, timeout_s: float, progress: Callable[[], Any] = lambda: None) -> int:
    """Wait up to `timeout_s` for every queued record's delivery report; return how many are still unreported."""
    deadline = time.monotonic() + timeout_s
    remaining = len(client)
    while remaining and time.monotonic() < deadline:
        remaining = client.flush(min(0.5, max(0.0, deadline - time.monotonic())))
        progress()
    return remaining


@dataclass
class DeliveryTally:
    """Counts the broker's delivery reports; `echo`, when given, is told about each one."""

    echo: Callable[[str], Any] | None = None
    sent: int = 0
    failed: int = 0
    first_error: str = ""

    @property
    def done(self) -> int:
        return self.sent + self.failed

    def on_delivery(self, err, msg) -> None:
        if err is not None:
            self.failed += 1
            self.first_error = self.first_error or str(err)
            if self.echo:
                self.echo(f"delivery failed: {err}")
        else:
            self.sent += 1
            if self.echo:
                self.echo(f"sent {msg.key().decode()} -> {msg.topic()}[{msg.partition()}]@{msg.offset()}")

    def summary(self, count: int, topic: str, elapsed_s: float, undelivered: int) -> str:
        """One line a person or a benchmark script can read."""
        rate = self.sent / elapsed_s if elapsed_s > 0 else 0.0
        return (f"sent {self.sent} of {count} orders to {topic} in {elapsed_s:.2f} s, {rate:,.0f} orders/s; "
                f"failed {self.failed}, undelivered {undelivered}")


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
        produce(client, record.topic, key=record.key, value=record.value, headers=list(record.headers),
                partition=record.partition, on_delivery=report(index))
    client.flush(timeout_s)
    return [result or Delivery(error=f"not acknowledged within {timeout_s:.0f}s") for result in results]


# -- topics -------------------------------------------------------------------

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


def ensure_compacted_topic(config: Mapping[str, Any], topic: str, timeout_s: float = 30.0) -> bool:
    """Create `topic` (one partition, cleanup.policy=compact, the broker's default replication) unless
    it exists; True when it was created here."""
    admin = AdminClient({**config, "log_level": 2})
    if topic in admin.list_topics(timeout=10).topics:
        return False
    return bool(_create(admin, [NewTopic(topic, 1, -1, config={"cleanup.policy": "compact"})], timeout_s))


def ensure_topics(config: Mapping[str, Any], names: Sequence[str], partitions: int, *, timeout_s: float,
                  same_partitions: Sequence[str] = (), user: str = "",
                  topic_configs: Mapping[str, Mapping[str, str]] | None = None) -> None:
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
            wanted = [NewTopic(name, partitions, 1, config=dict((topic_configs or {}).get(name, {})))
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
