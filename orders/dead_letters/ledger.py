"""What `dlq replay` has replayed: a compacted topic keyed by the dead letter's dedupe key.

A replay publishes the order and writes its ledger entry (`replayed`, naming
where the order landed) in one Kafka transaction, so the two exist together
or not at all: a run that dies mid-batch leaves neither, and the next run
replays that batch again. The published order carries the dedupe key in an
`x-replay-of` header and the dead letter's coordinates in `x-replayed-from`.

Compaction keeps the latest record per key; a tombstone (null value) means
"not replayed", which is also how an operator allows a key to be replayed
again. `Entry` and `fold` are pure; `LedgerIndex` folds the topic, read as a
stream, into a SQLite file in a temporary folder, so its lookups are exact
and its memory flat however many dead letters were replayed (a million
entries take about 150 MB of disk and a few MB of memory).
"""
from __future__ import annotations

import itertools
import json
import logging
import sqlite3
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..kafka.reading import Record, TopicMissing, partitions_of, stream_partition

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


def keyed_entry(record: Record) -> tuple[str, Entry | None]:
    """A ledger record's key and entry; None for a tombstone (or an entry treated as not replayed)."""
    if record.key is None:
        raise LedgerError(f"ledger record {record.coordinates} has no key")
    key = record.key.decode("utf-8", errors="replace")
    return key, None if record.value is None else Entry.from_record(record)


def fold(records: Iterable[Record]) -> dict[str, Entry]:
    """The current entry per key: the latest record wins, a tombstone removes the key.

    `records` in offset order per partition (a key always lives on one partition).
    """
    entries: dict[str, Entry] = {}
    for record in records:
        key, entry = keyed_entry(record)
        if entry is None:
            entries.pop(key, None)
        else:
            entries[key] = entry
    return entries


class LedgerIndex:
    """The ledger, folded and indexed by dedupe key on disk; `with LedgerIndex.read(config, topic) as index:`.

    Safe to share between threads (one statement at a time). `catch_up` folds
    what the topic gained since the last call, so a long-running reader (the
    worker's web view) reads each ledger record once."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="orders-ledger-")
        self._db = sqlite3.connect(Path(self._folder.name) / "ledger.sqlite3", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute("CREATE TABLE entry (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._lock = threading.RLock()
        #: partition -> the next offset of the ledger topic to fold
        self._next: dict[int, int] = {}

    @classmethod
    def read(cls, config: Mapping[str, Any], topic: str) -> LedgerIndex:
        """The ledger as it stands: every committed entry, folded; empty when no replay ever ran."""
        index = cls()
        try:
            index.catch_up(config, topic)
        except BaseException:
            index.close()
            raise
        return index

    def catch_up(self, config: Mapping[str, Any], topic: str) -> None:
        """Fold the records the ledger topic gained since the last call (none when there is no topic yet)."""
        with self._lock:
            try:
                marks = partitions_of(config, topic)
            except TopicMissing:
                return
            for partition, (low, high) in sorted(marks.items()):
                start = max(low, self._next.get(partition, low))
                self.fold(stream_partition(config, topic, partition, start, high))
                self._next[partition] = max(start, high)

    def fold(self, records: Iterable[Record]) -> None:
        """Apply records in offset order (the latest record of a key wins, a tombstone removes it)."""
        for batch in _batched(records, 2000):
            with self._lock, self._db:
                for record in batch:
                    key, entry = keyed_entry(record)
                    if entry is None:
                        self._db.execute("DELETE FROM entry WHERE key = ?", (key,))
                    else:
                        self.put(key, entry)

    def put(self, key: str, entry: Entry) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO entry (key, value) VALUES (?, ?)",
                             (key, entry.to_bytes().decode()))

    def get(self, key: str) -> Entry | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM entry WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        value = json.loads(row[0])
        return Entry(dead_letter=value["dead_letter"], at_ms=int(value["at_ms"]), order_id=value.get("order_id"),
                     replayed_to=value.get("replayed_to"))

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM entry WHERE key = ?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM entry").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._folder.cleanup()

    def __enter__(self) -> LedgerIndex:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
