"""What `dlq replay` has replayed: a compacted topic keyed by the dead letter's dedupe key.

Every replay goes through two ledger records for its key:

1. `publishing`, written (and acknowledged) before the order is published, with
   the orders topic's end offsets at that moment;
2. `replayed`, written after the broker acknowledged the published order,
   naming where it landed.

The published order carries the dedupe key in an `x-replay-of` header. A run
that finds a key still `publishing` (the previous run died between the two
writes) scans the orders topic from the recorded offsets for that header: found,
the replay happened and is recorded as `replayed`; not found, it did not, and a
tombstone clears the key. So a replay is published once even across a crash.

Compaction keeps the latest record per key; a tombstone (null value) means
"not replayed", which is also how an operator allows a key to be replayed again.
This module is pure: values in and out, no Kafka.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ...kafka_io import Record

PUBLISHING = "publishing"
REPLAYED = "replayed"

#: Headers of a replayed order: the dedupe key it replays, and the dead letter it was copied from.
REPLAY_OF = "x-replay-of"
REPLAYED_FROM = "x-replayed-from"


class LedgerError(ValueError):
    """The ledger topic holds a record this tool did not write."""


@dataclass(frozen=True)
class Entry:
    state: str
    #: coordinates of the dead letter replayed (topic/partition/offset)
    dead_letter: str
    at_ms: int
    order_id: str | None = None
    #: where the replayed order landed (topic/partition/offset); only when `replayed`
    replayed_to: str | None = None
    #: orders partition -> its end offset just before publishing; only when `publishing`
    orders_from: dict[int, int] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        value = {"state": self.state, "dead_letter": self.dead_letter, "at_ms": self.at_ms,
                 "order_id": self.order_id}
        if self.state == REPLAYED:
            value["replayed_to"] = self.replayed_to
        else:
            value["orders_from"] = {str(p): offset for p, offset in sorted(self.orders_from.items())}
        return json.dumps(value).encode()

    @classmethod
    def from_record(cls, record: Record) -> Entry:
        where = f"{record.topic}/{record.partition}/{record.offset}"
        try:
            value = json.loads(record.value)
            if value["state"] not in (PUBLISHING, REPLAYED):
                raise ValueError(f"unknown state {value['state']!r}")
            return cls(state=value["state"], dead_letter=value["dead_letter"], at_ms=int(value["at_ms"]),
                       order_id=value.get("order_id"), replayed_to=value.get("replayed_to"),
                       orders_from={int(p): int(o) for p, o in value.get("orders_from", {}).items()})
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LedgerError(f"ledger record {where} was not written by `dlq replay` ({exc!r}); "
                              f"remove it with a tombstone for its key or fix DLQ_REPLAYED_TOPIC") from None


def fold(records: Iterable[Record]) -> dict[str, Entry]:
    """The current entry per key: the latest record wins, a tombstone removes the key.

    `records` in offset order per partition (a key always lives on one partition).
    """
    entries: dict[str, Entry] = {}
    for record in records:
        if record.key is None:
            raise LedgerError(f"ledger record {record.topic}/{record.partition}/{record.offset} has no key")
        key = record.key.decode("utf-8", errors="replace")
        if record.value is None:
            entries.pop(key, None)
        else:
            entries[key] = Entry.from_record(record)
    return entries


def scan_start(pending: Mapping[str, Entry]) -> dict[int, int]:
    """Per orders partition, the lowest offset from which any pending replay may have landed."""
    start: dict[int, int] = {}
    for entry in pending.values():
        for partition, offset in entry.orders_from.items():
            start[partition] = min(offset, start.get(partition, offset))
    return start


def landed(records: Iterable[Record], keys: Iterable[str]) -> dict[str, str]:
    """Dedupe key -> coordinates of the first orders record whose `x-replay-of` names it."""
    wanted = set(keys)
    found: dict[str, str] = {}
    for record in records:
        raw = record.headers.get(REPLAY_OF)
        key = raw.decode("utf-8", errors="replace") if raw is not None else None
        if key in wanted and key not in found:
            found[key] = f"{record.topic}/{record.partition}/{record.offset}"
    return found
