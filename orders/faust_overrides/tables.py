"""The partition-state table (`order-stats`): its changelog is written by the partitions' transactions.

It is the one source of the aggregate its readers read: each partition's task
publishes its live state into it (as Kafka Streams' tasks write their stores,
which interactive queries read), with the records applied since its last
commit, and its committed state with the changelog offset at each commit.
"""
from __future__ import annotations

import weakref
from typing import Any

import faust
from faust.streams import _current_event
from faust.types import TP

from ..domain.partition_state import UNCOMMITTED, PartitionState, Share


class _StandInEvent:
    """What the RocksDB store reads of the current event: the message's partition."""

    def __init__(self, partition: int) -> None:
        self.message = _StandInMessage(partition)


class _StandInMessage:
    def __init__(self, partition: int) -> None:
        self.partition = partition


class PartitionStateTable(faust.Table):
    def on_key_set(self, key: Any, value: Any) -> None:
        """Only the sensors: the changelog record was written, in a transaction, before the store is."""
        self._sensor_on_set(self, key, value)

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP],
                           generation_id: int = 0) -> None:
        """Runs before Faust's recovery reads the changelog: the app takes its new partitions over here."""
        hooks = getattr(self.app, "state_hooks", None)
        if hooks is not None:
            name = self.changelog_topic_name
            await hooks.before_recovery({tp.partition for tp in assigned if tp.topic == name})
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    def publish(self, partition: int, state: PartitionState, uncommitted: int,
                changelog_offset: int | None = None) -> None:
        """Put a partition's state in the local store: its live state with the records applied since its last
        commit, or (`changelog_offset` given) its committed state, whose changelog record landed there (RocksDB
        keeps the offset, so a restart replays only the changelog after it)."""
        stand_in = _StandInEvent(partition)
        token = _current_event.set(weakref.ref(stand_in))
        try:
            self[partition] = {**state.to_value(), UNCOMMITTED: uncommitted}
        finally:
            _current_event.reset(token)
        if changelog_offset is not None:
            self.data.set_persisted_offset(TP(self.changelog_topic_name, partition), changelog_offset)

    def share(self, partition: int) -> Share | None:
        """A partition's state and its records applied since the last commit, as published (None: none)."""
        value = self.get(partition)
        if value is None:
            return None
        return PartitionState.from_value(value), int(value.get(UNCOMMITTED, 0))
