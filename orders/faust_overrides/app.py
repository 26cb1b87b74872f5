"""The Faust app class the worker runs: Faust's, with the consumer and recovery of this package.

The app tells these overrides what they need through `state_hooks`, set once
the processing objects exist (see `StateHooks`).
"""
from __future__ import annotations

from typing import Protocol

import faust

from .consumer import OrdersTransport, RecordBatches
from .recovery import MarkerAwareTableManager


class StateHooks(Protocol):
    #: the topics the partition tasks read; the consumer seeks each of their partitions after a rebalance
    source_topics: frozenset[str]

    async def before_recovery(self, partitions: set[int]) -> None:
        """The table's changelog partitions just assigned to this worker, before recovery reads them."""

    async def changelog_ends(self, partitions: list[int]) -> dict[int, int]:
        """Partition -> offset of the changelog's last committed record (-1: none)."""

    def resume_offsets(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> the next offset to apply, for the source partitions with a state."""


class TransactionalStateApp(faust.App):
    state_hooks: StateHooks | None = None
    #: topic name -> where the consumer hands that topic's records to its agent, batch by batch (the fast
    #: path); topics not named here go Faust's stock way, event by event
    record_batches: dict[str, RecordBatches] = {}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, TableManager=MarkerAwareTableManager, **kwargs)

    def _new_transport(self):  # faust.App._new_transport, with this package's consumer
        return OrdersTransport(self.conf.broker_consumer, self)
