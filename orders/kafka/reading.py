"""Reading Kafka outside Faust's consumer (confluent-kafka, blocking; callers on the event loop use a thread).

- a range of one partition, a page at a time, or a whole topic up to its end offsets;
- the last committed records of partitions (a log may end in transaction markers);
- watermarks and end offsets.

Reads assign partitions directly (no consumer group joins, nothing is
committed) and see committed records only (`read_committed`, librdkafka's
default), the way every consumer of the app's transactional outputs must.
"""
from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from ..domain.headers import origin_key

T = TypeVar("T")


class TopicMissing(LookupError):
    """The topic does not exist."""


class TransactionsStillOpen(Exception):
    """A wait for the transactions open on some partitions ended with some still open (`partitions`)."""

    def __init__(self, topic: str, partitions: list[int], waited_s: float) -> None:
        super().__init__(f"{topic} partitions {partitions}: a transaction is still open after {waited_s:.1f}s")
        self.partitions = partitions


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
        return origin_key(self.topic, self.partition, self.offset)


def _consumer(config: Mapping[str, Any], isolation: str = "read_committed") -> Consumer:
    # A group id is required by the client but never joined: partitions are assigned, offsets never committed.
    return Consumer({**config, "group.id": f"orders-reader-{uuid.uuid4().hex}", "enable.auto.commit": False,
                     "enable.partition.eof": True, "auto.offset.reset": "earliest",
                     "isolation.level": isolation, "log_level": 2,
                     # The end of a range is often a transaction marker, which only the next (empty) fetch
                     # reveals; a short wait keeps that from costing librdkafka's default half second.
                     "fetch.wait.max.ms": 20})


def _offsets(consumer: Consumer, topic: str, partitions: Iterable[int], where: int) -> dict[int, int]:
    """Each partition's first offset (`where` OFFSET_BEGINNING) or the offset its next record will get
    (OFFSET_END; read_committed: the last stable offset), in one ListOffsets request per leader. Asked one
    partition at a time (`get_watermark_offsets`), taking 192 partitions over cost about a second here."""
    asked = [TopicPartition(topic, partition, where) for partition in partitions]
    if not asked:
        return {}
    found = {}
    for answer in consumer.offsets_for_times(asked, timeout=10):
        if answer.error is not None:
            raise KafkaException(answer.error)
        found[answer.partition] = answer.offset
    return found


def _marks(consumer: Consumer, topic: str, partitions: Iterable[int]) -> dict[int, tuple[int, int]]:
    """Partition -> (oldest offset still in the log, offset the next record will get)."""
    partitions = list(partitions)
    lows = _offsets(consumer, topic, partitions, OFFSET_BEGINNING)
    highs = _offsets(consumer, topic, partitions, OFFSET_END)
    return {partition: (lows[partition], highs[partition]) for partition in partitions}


def _watermarks(consumer: Consumer, topic: str) -> dict[int, tuple[int, int]]:
    found = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if found is None or found.error is not None:
        raise TopicMissing(f"topic {topic} does not exist")
    return _marks(consumer, topic, sorted(found.partitions))


def by_topic(partitions: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
    """(topic, partition) pairs grouped: topic -> its partitions, in the order given."""
    grouped: dict[str, list[int]] = {}
    for topic, partition in partitions:
        grouped.setdefault(topic, []).append(partition)
    return grouped


def _per_partition(config: Mapping[str, Any], partitions: Iterable[tuple[str, int]],
                   ask: Callable[[Consumer, str, list[int]], Mapping[int, T]]) -> dict[tuple[str, int], T]:
    """`ask(consumer, topic, numbers)` of each topic, through one consumer, keyed (topic, partition)."""
    consumer = _consumer(config)
    try:
        return {(topic, partition): answer for topic, numbers in by_topic(partitions).items()
                for partition, answer in ask(consumer, topic, numbers).items()}
    finally:
        consumer.close()


def watermarks(config: Mapping[str, Any], partitions: Iterable[tuple[str, int]]
               ) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) -> (oldest offset still in the log, offset the next record will get)."""
    return _per_partition(config, partitions, _marks)


def ping(config: Mapping[str, Any], topic: str, timeout_s: float) -> None:
    """Ask a broker for `topic`'s metadata once; KafkaException (or TopicMissing) unless it answers in time."""
    consumer = _consumer(config)
    try:
        found = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if found is None or found.error is not None:
            raise TopicMissing(f"topic {topic} does not exist")
    finally:
        consumer.close()


def _open_transactions(committed: Consumer, uncommitted: Consumer, topic: str, partitions: Iterable[int]
                       ) -> dict[int, tuple[int, int]]:
    """The partitions of `topic` on which a transaction is open: partition -> (last stable offset, highwater).
    A consumer reading committed records ends at the last stable offset: before the first record of the
    oldest transaction still open there."""
    partitions = list(partitions)
    stable = _offsets(committed, topic, partitions, OFFSET_END)
    high = _offsets(uncommitted, topic, partitions, OFFSET_END)
    return {partition: (stable[partition], high[partition]) for partition in partitions
            if stable[partition] < high[partition]}


def wait_for_open_transactions(config: Mapping[str, Any], topic: str, partitions: Iterable[int], timeout_s: float,
                               poll_s: float = 0.05) -> tuple[list[int], float]:
    """Wait until every transaction open on the partitions now has ended (committed or aborted). Returns the
    partitions that had one and the seconds waited; TransactionsStillOpen naming those still open after
    `timeout_s`.

    A commit returns before the broker has written its markers to every partition (the transaction
    coordinator does that next), so a partition written by a transaction that just committed can show it
    open for a moment. (Consumers, not an AdminClient's list_offsets: a new AdminClient of librdkafka 2.16
    waits for its once-a-second timer to connect, 1 to 3 s, where a consumer answers in milliseconds.)"""
    committed, uncommitted = _consumer(config), _consumer(config, "read_uncommitted")
    try:
        started = time.monotonic()
        waiting = {p: high for p, (_stable, high) in
                   _open_transactions(committed, uncommitted, topic, partitions).items()}
        had = sorted(waiting)
        while waiting:
            if time.monotonic() - started > timeout_s:
                raise TransactionsStillOpen(topic, sorted(waiting), time.monotonic() - started)
            time.sleep(poll_s)
            still = _open_transactions(committed, uncommitted, topic, waiting)
            # Settled once the last stable offset is past what was written when we looked first.
            waiting = {p: high for p, high in waiting.items() if p in still and still[p][0] < high}
        return had, time.monotonic() - started
    finally:
        committed.close()
        uncommitted.close()


def first_offsets(config: Mapping[str, Any], partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the oldest offset still in the log (its low watermark), one request per topic
    and leader."""
    return _per_partition(config, partitions,
                          lambda consumer, topic, numbers: _offsets(consumer, topic, numbers, OFFSET_BEGINNING))


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


#: What librdkafka may prefetch for a streaming read, per consumer (one per partition): the read's memory is
#: about this, times the partitions read at once, whatever the topic's size. librdkafka's defaults (100,000
#: messages, 64 MiB queued; 1 MiB fetches) cost about 8 MiB a partition here; these about 3 (and read 100,000
#: dead letters in 7 s where 256 KiB fetches took 16).
STREAM_PREFETCH = {"queued.max.messages.kbytes": 1024, "queued.min.messages": 5000,
                   "max.partition.fetch.bytes": 524_288, "fetch.max.bytes": 2_097_152}


def partitions_of(config: Mapping[str, Any], topic: str) -> dict[int, tuple[int, int]]:
    """Partition -> (earliest offset, end offset) of `topic`; TopicMissing when it does not exist."""
    consumer = _consumer(config)
    try:
        return _watermarks(consumer, topic)
    finally:
        consumer.close()


def stream_partition(config: Mapping[str, Any], topic: str, partition: int, start: int, end: int,
                     idle_timeout_s: float = 30.0) -> Iterator[Record]:
    """The committed records of one partition with start <= offset < end, one at a time, in order, with
    memory bounded by STREAM_PREFETCH whatever the range (one consumer of its own, closed at the end)."""
    if start >= end:
        return
    consumer = Consumer({**config, "group.id": f"orders-reader-{uuid.uuid4().hex}", "enable.auto.commit": False,
                         "enable.partition.eof": True, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed", "log_level": 2, "fetch.wait.max.ms": 20,
                         **STREAM_PREFETCH})
    try:
        yield from _records(consumer, topic, {partition: (start, end)}, idle_timeout_s)
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
        low, high = _marks(consumer, topic, [partition])[partition]
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
            marks = _marks(consumer, topic, partitions)
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
