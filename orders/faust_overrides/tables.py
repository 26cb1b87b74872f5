"""The partition-state table: its changelog is written by the partitions' transactions."""
from __future__ import annotations

import weakref
from typing import Any

import faust
from faust.streams import _current_event
from faust.types import TP


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
        """Runs before Faust's recovery reads the changelog: the app fences earlier owners here."""
        hooks = getattr(self.app, "state_hooks", None)
        if hooks is not None:
            name = self.changelog_topic_name
            await hooks.before_recovery({tp.partition for tp in assigned if tp.topic == name})
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    def store(self, partition: int, value: Any, changelog_offset: int | None) -> None:
        """Put a committed value in the local store; `changelog_offset` is where its changelog record landed
        (RocksDB keeps it, so a restart replays only the changelog after it)."""
        stand_in = _StandInEvent(partition)
        token = _current_event.set(weakref.ref(stand_in))
        try:
            self[partition] = value
        finally:
            _current_event.reset(token)
        if changelog_offset is not None:
            self.data.set_persisted_offset(TP(self.changelog_topic_name, partition), changelog_offset)
