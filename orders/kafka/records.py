"""What the processing reads of a source record, whoever fetched it: the fast path's `FetchedRecord`, a Faust
`Message` (the stock path), a `Record` read directly from Kafka, a test's stand-in."""
from __future__ import annotations

from typing import Any, Protocol


class SourceRecord(Protocol):
    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def timestamp(self) -> float | None:
        """Seconds since the epoch (Kafka's milliseconds / 1000); None or <= 0 when the record has none."""

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Any:
        """A list of (name, bytes) pairs or a mapping of them."""


def at(topic: str, partition: int, offset: int) -> str:
    """`topic[partition]@offset`: how logs and errors name a record."""
    return f"{topic}[{partition}]@{offset}"


def coordinates(record: SourceRecord) -> str:
    return at(record.topic, record.partition, record.offset)
