"""Unsticks a worker whose Faust consumer stops delivering records.

Now and then, after partitions move between workers, Faust on the new owner
stops receiving records of some partition: table recovery waits forever
("No event received for active tp"; faust-streaming issues 74, 21, 176 report
recovery stalls), or a source partition with records behind its highwater
never reaches the agent. Seen here in the scale-out test. A new rebalance
restarts recovery and seeks every partition again, so when either stall lasts
STALL_SECONDS the worker asks its group to rebalance (the two questions this
needs of Faust's and aiokafka's internals are in orders/faust_overrides).
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any

import faust

from ..faust_overrides.rebalance import recovery_stalled_for, request_rebalance
from .lag import Watermarks, owned_partitions

log = logging.getLogger("orders")

#: A stall this long makes the worker ask for a rebalance.
STALL_SECONDS = 20.0
#: How often the watchdog looks.
CHECK_INTERVAL_S = 5.0


class SourceProgress:
    """Remembers, per source partition, the applied offset and since when it has not moved."""

    def __init__(self) -> None:
        self._seen: dict = {}
        #: tp -> a highwater up to which the log was found to hold no record past the applied one
        self._settled: dict = {}

    def settle(self, tp, highwater: int) -> None:
        """Nothing but transaction markers (or aborted records) lies below `highwater` past the applied offset."""
        self._settled[tp] = highwater
        self._seen.pop(tp, None)

    def stalled_for(self, tp, applied: int, highwater: int, now: float) -> float:
        """Seconds that `tp` has had records waiting (highwater past applied) without progress."""
        if highwater <= applied + 1 or highwater <= self._settled.get(tp, -1):
            self._seen.pop(tp, None)
            return 0.0
        last_applied, since = self._seen.get(tp, (None, now))
        if last_applied != applied:
            since = now
        self._seen[tp] = (applied, since)
        return now - since


async def check_for_stalls(app: faust.App, source_names: set[str], applied_offset: Callable[[Any], int],
                           progress: SourceProgress, stall_s: float,
                           records_between: Callable[[Any, int, int], Awaitable[int]], watermarks: Watermarks
                           ) -> None:
    """Ask the group to rebalance when recovery or a source partition has not progressed for `stall_s`.

    `applied_offset(tp)` gives the last offset the agents applied from a source partition (-1: none);
    `records_between(tp, start, end)` counts the committed records in [start, end): a partition whose
    log ends in transaction markers looks behind by its highwater alone, so a suspected stall is checked
    against the records actually there.
    """
    now = monotonic()
    stalled = recovery_stalled_for(app.tables.recovery, now)
    if stalled >= stall_s:
        log.warning("table recovery received no changelog record for %.0fs; asking the group to rebalance, "
                    "which restarts recovery", stalled)
        await request_rebalance(app)
        return
    if app.tables.recovery.in_recovery:
        return
    owned = owned_partitions(app.consumer, source_names)
    for tp, (_earliest, highwater) in (await watermarks(owned) if owned else {}).items():
        applied = applied_offset(tp)
        stalled = progress.stalled_for(tp, applied, highwater, now)
        if stalled >= stall_s and not await records_between(tp, applied + 1, highwater):
            progress.settle(tp, highwater)
        elif stalled >= stall_s:
            log.warning("%s[%d]: records wait past offset %d but none arrived for %.0fs; asking the group "
                        "to rebalance", tp.topic, tp.partition, applied_offset(tp), stalled)
            await request_rebalance(app)
            return
