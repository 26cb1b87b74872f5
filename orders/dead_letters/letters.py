"""Dead letters as the DLQ tools see them; which ones a command selects; what a replay would do.

Pure: no Kafka, no registry. The caller passes the records it read and a
`decode` function (the app's Avro codec), so everything here is unit-tested
with plain values.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from avro_codec import AvroCodecError

from ..domain import headers as h
from ..kafka.reading import Record

#: Epoch values at or above this are milliseconds: as seconds they would be after the year 5000.
EPOCH_MS_THRESHOLD = 100_000_000_000
_NUMBER = re.compile(r"^\d+(\.\d+)?$")


@dataclass(frozen=True)
class DeadLetter:
    """A DLQ record with its headers parsed and its value decoded (or the reason it does not decode).

    Header values that are missing or garbled become None: a dead letter is
    always listed, whatever wrote it.
    """

    topic: str
    partition: int
    offset: int
    time_ms: int | None
    key: bytes | None
    value: bytes | None
    reason: str | None
    attempts: int | None
    error: str | None
    original_topic: str | None
    original_partition: int | None
    original_offset: int | None
    order: dict[str, Any] | None
    undecodable: str | None
    #: the original value's size when the DLQ holds only its first bytes (`too-large`); None when whole
    truncated_from: int | None = None

    @property
    def coordinates(self) -> str:
        """Where this dead letter sits in the DLQ: topic/partition/offset."""
        return h.origin_key(self.topic, self.partition, self.offset)

    @property
    def original(self) -> str | None:
        if None in (self.original_topic, self.original_partition, self.original_offset):
            return None
        return h.origin_key(self.original_topic, self.original_partition, self.original_offset)

    @property
    def dedupe_key(self) -> str:
        """The original record's coordinates, which every DLQ copy of it shares; the DLQ's own without them."""
        return self.original or self.coordinates

    @property
    def order_id(self) -> str | None:
        return self.order.get("orderId") if self.order is not None else None

    @property
    def value_size(self) -> int:
        return len(self.value or b"")


def _text(headers: Mapping[str, bytes | None], name: str) -> str | None:
    raw = headers.get(name)
    return None if raw is None else raw.decode("utf-8", errors="replace")


def _int(headers: Mapping[str, bytes | None], name: str) -> int | None:
    text = _text(headers, name)
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def dead_letter(record: Record, decode: Callable[[bytes | None], dict[str, Any]]) -> DeadLetter:
    """Parse a DLQ record. `decode` raises AvroCodecError for a value it cannot read; other errors
    (an unreachable registry) propagate, so an outage is never mistaken for undecodable data."""
    headers = record.headers
    truncated_from = _int(headers, h.ORIGINAL_VALUE_BYTES)
    try:
        order, undecodable = decode(record.value), None
    except AvroCodecError as exc:
        order, undecodable = None, str(exc)
    if truncated_from is not None:
        order, undecodable = None, f"only the first {record_size(record)} of {truncated_from} bytes are in the DLQ"

    error_type, error_message = _text(headers, h.ERROR_TYPE), _text(headers, h.ERROR_MESSAGE)
    error = ": ".join(part for part in (error_type, error_message) if part) or None
    dead_lettered = _int(headers, h.DEAD_LETTERED_MS)
    return DeadLetter(
        topic=record.topic, partition=record.partition, offset=record.offset,
        time_ms=dead_lettered if dead_lettered is not None else record.timestamp_ms,
        key=record.key, value=record.value,
        reason=_text(headers, h.DLQ_REASON), attempts=_int(headers, h.ATTEMPTS), error=error,
        original_topic=_text(headers, h.ORIGINAL_TOPIC), original_partition=_int(headers, h.ORIGINAL_PARTITION),
        original_offset=_int(headers, h.ORIGINAL_OFFSET), order=order, undecodable=undecodable,
        truncated_from=truncated_from)


def record_size(record: Record) -> int:
    return len(record.value or b"")


def in_dlq_order(letters: Iterable[DeadLetter]) -> list[DeadLetter]:
    """Oldest first: see `dlq_order_key`."""
    return sorted(letters, key=dlq_order_key)


def parse_time(text: str) -> int:
    """Epoch milliseconds from ISO-8601 (a time without offset is UTC) or epoch seconds or milliseconds.

    A number at or above EPOCH_MS_THRESHOLD is taken as milliseconds (what the
    x-*-ms headers hold), a smaller one as seconds.
    """
    text = text.strip()
    if _NUMBER.match(text):
        number = float(text)
        return int(number if number >= EPOCH_MS_THRESHOLD else number * 1000)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO-8601 time (e.g. 2026-11-27T09:30:00Z) "
                         f"nor epoch seconds or milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command is about. Empty criteria select everything.

    Within one criterion any value matches (order ids, reasons); criteria combine
    with AND. The time range is [since, until), on the dead-letter time.
    """

    order_ids: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None

    def __post_init__(self) -> None:
        if self.since_ms is not None and self.until_ms is not None and self.since_ms >= self.until_ms:
            raise ValueError("--since must be earlier than --until")

    @property
    def is_everything(self) -> bool:
        return not (self.order_ids or self.reasons) and self.since_ms is None and self.until_ms is None

    def matches(self, letter: DeadLetter) -> bool:
        if self.order_ids and letter.order_id not in self.order_ids:
            return False
        if self.reasons and letter.reason not in self.reasons:
            return False
        if self.since_ms is not None and (letter.time_ms is None or letter.time_ms < self.since_ms):
            return False
        if self.until_ms is not None and (letter.time_ms is None or letter.time_ms >= self.until_ms):
            return False
        return True


#: What `dlq replay` does with a dead letter (`decide`).
REPLAY = "replay"
#: replayed by an earlier run, or another DLQ copy of an original replayed in this one
ALREADY_REPLAYED = "already-replayed"
#: selected, but the value does not decode and --force was not given
UNDECODABLE = "undecodable"
NOT_MATCHING = "not-matching"


def decide(letter: DeadLetter, selection: Selection, replayed: Container[str], force: bool = False) -> str:
    """What a replay does with `letter`; `replayed` holds the dedupe keys replayed so far (this run's too)."""
    if not selection.matches(letter):
        return NOT_MATCHING
    if letter.dedupe_key in replayed:
        return ALREADY_REPLAYED
    if letter.undecodable is not None and not force:
        return UNDECODABLE
    return REPLAY


def dlq_order_key(letter: DeadLetter) -> tuple[int, int, int]:
    """Oldest first (by dead-letter time, then position), so the first copy of an original comes first."""
    return (letter.time_ms if letter.time_ms is not None else -1, letter.partition, letter.offset)
