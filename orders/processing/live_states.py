"""Partition states kept in memory and written to the table just before Faust commits offsets.

Writing the table per order sends one changelog record per order, which was
most of what a worker did (FAUST-NOTES). Here the agents change the states in
memory and mark them changed; `flush` writes each changed state once, and the
app calls it when Faust is about to commit offsets (a sensor's
`on_commit_initiated`), before Faust flushes the producer and commits: the Kafka
Streams record cache, flushed before the offsets it covers are committed. So
the changelog gets about one record per changed partition per commit interval,
and a committed offset never runs ahead of the state in the changelog.

Both agents work on the same state object of a partition (an order and a
retry copy of an earlier one), so neither can write back a copy that misses
the other's changes. On a rebalance the states are written and forgotten: the
partitions may come back recovered from a changelog another worker wrote.
"""
from __future__ import annotations

import weakref
from collections.abc import MutableMapping
from typing import Any

from faust.streams import _current_event
from faust.types import EventT

from ..domain.partition_state import PartitionState


class LiveStates:
    def __init__(self, table: MutableMapping[int, Any]) -> None:
        self._table = table
        self._states: dict[int, PartitionState] = {}
        #: changed partitions -> one of their events (see `flush`)
        self._changed: dict[int, EventT] = {}

    def get(self, partition: int) -> PartitionState:
        """The partition's state, to change in place; call `changed` after each change."""
        state = self._states.get(partition)
        if state is None:
            state = self._states[partition] = PartitionState.from_value(self._table.get(partition))
        return state

    def peek(self, partition: int) -> PartitionState:
        """The newest state of the partition, for reading only."""
        state = self._states.get(partition)
        return state if state is not None else PartitionState.from_value(self._table.get(partition))

    def partitions(self) -> set[int]:
        return set(self._states)

    def changed(self, partition: int, event: EventT) -> None:
        """Note that the partition's state changed while processing `event` (a record of that partition)."""
        self._changed[partition] = event

    def flush(self) -> int:
        """Write every changed state to the table; return how many were written.

        Faust writes a table key to the changelog partition (and RocksDB shard)
        of the current event, so each write runs with one of the partition's own
        events current.
        """
        changed, self._changed = self._changed, {}
        for partition, event in changed.items():
            token = _current_event.set(weakref.ref(event))
            try:
                self._table[partition] = self._states[partition].to_value()
            finally:
                _current_event.reset(token)
        return len(changed)

    def forget(self) -> None:
        """Write what changed and drop every state; the next `get` reads the table again."""
        self.flush()
        self._states.clear()
