"""What `dlq replay` has replayed: a compacted topic keyed by the dead letter's dedupe key.

A replay publishes the order and writes its ledger entry (`replayed`, naming
where the order landed) in one Kafka transaction, so the two exist together
or not at all: a run that dies mid-batch leaves neither, and the next run
replays that batch again. The published order carries the dedupe key in an
`x-replay-of` header and the dead letter's coordinates in `x-replayed-from`.

Compaction keeps the latest record per key; a tombstone (null value) means
"not replayed", which is also how an operator allows a key to be replayed
again. Everything here is pure (values in and out) except `load`, which reads
the topic and folds it.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..kafka.reading import Record, TopicMissing, read_topic

log = logging.getLogger(__name__)

REPLAYED = "replayed"
#: Written by the version that recorded a replay in two steps; such an entry never meant "replayed".
_OLD_PUBLISHING = "publishing"

#: Headers of a replayed order: the dedupe key it replays, and the dead letter it was copied from.
REPLAY_OF = "x-replay-of"
REPLAYED_FROM = "x-replayed-from"


class LedgerError(ValueError):
    """The ledger topic holds a record this tool did not write."""


@dataclass(frozen=True)
class Entry:
    #: coordinates of the dead letter replayed (topic/partition/offset)
    dead_letter: str
    at_ms: int
    order_id: str | None = None
    #: where the replayed order landed (topic/partition/offset)
    replayed_to: str | None = None
    state: str = REPLAYED

    def to_bytes(self) -> bytes:
        return json.dumps({"state": self.state, "dead_letter": self.dead_letter, "at_ms": self.at_ms,
                           "order_id": self.order_id, "replayed_to": self.replayed_to}).encode()

    @classmethod
    def from_record(cls, record: Record) -> Entry | None:
        """The entry a ledger record holds; None for an older version's unfinished `publishing` entry."""
        where = record.coordinates
        try:
            value = json.loads(record.value)
            if value["state"] == _OLD_PUBLISHING:
                log.warning("ledger record %s: an unfinished replay of %s by an older version; treated as not "
                            "replayed (check %s for an order with %s before replaying it)", where,
                            value.get("dead_letter"), "the orders topic", REPLAY_OF)
                return None
            if value["state"] != REPLAYED:
                raise ValueError(f"unknown state {value['state']!r}")
            return cls(dead_letter=value["dead_letter"], at_ms=int(value["at_ms"]), order_id=value.get("order_id"),
                       replayed_to=value.get("replayed_to"))
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
            raise LedgerError(f"ledger record {record.coordinates} has no key")
        key = record.key.decode("utf-8", errors="replace")
        entry = None if record.value is None else Entry.from_record(record)
        if entry is None:
            entries.pop(key, None)
        else:
            entries[key] = entry
    return entries


def load(config: Mapping[str, Any], topic: str) -> dict[str, Entry]:
    """The ledger as it stands: every committed entry, folded; empty when no replay ever ran."""
    try:
        return fold(read_topic(config, topic))
    except TopicMissing:
        return {}
