"""Partition states held in memory while batches work on them, written to the table once per batch.

Writing the table per order sends one changelog record per order, which is
most of what a worker does (FAUST-NOTES). Instead, a batch opens the states of
the partitions it touches, changes them in memory and closes them at its end,
when each changed state is written once: the Kafka Streams record-cache idea,
flushed before Faust acknowledges the batch's events, so before any offset they
cover can be committed (Faust flushes the producer, changelog included, before
it commits offsets).

Both agents may work on the same partition at once (an order and a retry copy
of an earlier order). They then share one state object: `open` hands out the
object already open, and only a partition nobody holds is read from the table.
So neither agent can write back a copy that misses the other's changes, however
their awaits interleave.
"""
from __future__ import annotations

import weakref
from typing import Any, MutableMapping

from faust.streams import _current_event
from faust.types import EventT

from .partition_state import PartitionState


class LiveStates:
    def __init__(self, table: MutableMapping[int, Any]) -> None:
        self._table = table
        #: partition -> [state, number of batches holding it]
        self._open: dict[int, list] = {}

    def open(self, partition: int) -> PartitionState:
        """The partition's state, shared with any other batch holding it; call `close` once per `open`."""
        entry = self._open.get(partition)
        if entry is None:
            entry = self._open[partition] = [PartitionState.from_value(self._table.get(partition)), 0]
        entry[1] += 1
        return entry[0]

    def peek(self, partition: int) -> PartitionState:
        """The newest state of the partition, for reading only."""
        entry = self._open.get(partition)
        return entry[0] if entry is not None else PartitionState.from_value(self._table.get(partition))

    def open_partitions(self) -> set[int]:
        return set(self._open)

    def close(self, partition: int, event: EventT, changed: bool) -> None:
        """Write the state if this batch changed it, and release it.

        `event` is one of the batch's events from this partition: Faust writes a
        table key to the changelog partition (and RocksDB shard) of the current
        event, which after a batch is not necessarily one of this partition.
        """
        entry = self._open[partition]
        if changed:
            token = _current_event.set(weakref.ref(event))
            try:
                self._table[partition] = entry[0].to_value()
            finally:
                _current_event.reset(token)
        entry[1] -= 1
        if entry[1] == 0:
            del self._open[partition]
