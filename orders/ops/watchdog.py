"""Unsticks a worker whose Faust consumer stops delivering records.

Now and then, after partitions move between workers, Faust on the new owner
stops receiving records of some partition: table recovery waits forever
("No event received for active tp"; faust-streaming issues 74, 21, 176 report
recovery stalls), or a source partition with records behind its highwater
never reaches its task. Seen here in the scale-out test. A new rebalance
restarts recovery and seeks every partition again, so when either stall lasts
STALL_SECONDS the worker asks its group to rebalance (the two questions this
needs of Faust's and aiokafka's internals are in orders/faust_overrides).

What is not a stall: a partition its task holds on purpose (a retry copy not
due yet, a partition recovering from an error or blocked by an outside
service: it says so itself), and a log that ends in transaction markers.
A rebalance disturbs every worker of the group, so it is asked for at most
once per REBALANCE_COOLDOWN_S for the same partition and cause.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from time import monotonic
from typing import Any

import faust

from ..faust_overrides.rebalance import fetch_view, recovery_stalled_for, request_rebalance
from .lag import Watermarks, owned_partitions

log = logging.getLogger("orders")

#: A stall this long makes the worker ask for a rebalance.
STALL_SECONDS = 20.0
#: How often the watchdog looks.
CHECK_INTERVAL_S = 5.0
#: Least time between two rebalances asked for the same partition and cause.
REBALANCE_COOLDOWN_S = 180.0
#: The cause "table recovery received nothing" (not tied to a source partition).
RECOVERY = ("table recovery", -1)


class SourceProgress:
    """Remembers, per source partition, the last offset delivered and since when it has not moved."""

    def __init__(self) -> None:
        self._seen: dict = {}
        #: tp -> a highwater up to which the log was found to hold no record past the delivered one
        self._settled: dict = {}
        #: tp -> the offset delivered at the last look
        self._looked: dict = {}

    def moved(self, tp, delivered: int, now: float) -> bool:
        """Whether `tp` delivered records since the last look (noted as progress): such a partition is not
        stalled, so its watermarks need not be asked. (A round of watermarks costs the worker about 145 ms of
        CPU at 192 partitions, each asked in turn.)"""
        last = self._looked.get(tp)
        self._looked[tp] = delivered
        if last is None or last == delivered:
            return False
        if tp in self._seen:
            self._seen[tp] = (delivered, now)
        return True

    def settle(self, tp, highwater: int) -> None:
        """Nothing but transaction markers (or aborted records) lies below `highwater` past the delivered offset."""
        self._settled[tp] = highwater
        self._seen.pop(tp, None)

    def forget(self, tp) -> None:
        self._seen.pop(tp, None)
        self._looked.pop(tp, None)

    def stalled_for(self, tp, delivered: int, highwater: int, now: float) -> float:
        """Seconds that `tp` has had records waiting (highwater past delivered) without progress."""
        if highwater <= delivered + 1 or highwater <= self._settled.get(tp, -1):
            self._seen.pop(tp, None)
            return 0.0
        last, since = self._seen.get(tp, (None, now))
        if last != delivered:
            since = now
        self._seen[tp] = (delivered, since)
        return now - since


class Watchdog:
    def __init__(self, *, stall_s: float = STALL_SECONDS, cooldown_s: float = REBALANCE_COOLDOWN_S,
                 clock: Callable[[], float] = monotonic) -> None:
        self.stall_s = stall_s
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.progress = SourceProgress()
        #: (topic, partition) or RECOVERY -> when a rebalance was last asked for it
        self._asked: dict[tuple[str, int], float] = {}

    def may_ask(self, cause: tuple[str, int], now: float) -> bool:
        """Whether a rebalance may be asked for `cause` now (and note it if so)."""
        last = self._asked.get(cause)
        if last is not None and now - last < self.cooldown_s:
            return False
        self._asked[cause] = now
        return True

    async def check(self, app: faust.App, source_names: set[str], delivered_offset: Callable[[Any], int],
                    holding: Callable[[], Mapping[tuple[str, int], str]],
                    holds_records: Callable[[Any, int, int], Awaitable[bool]], watermarks: Watermarks) -> None:
        """Ask the group to rebalance when recovery or a source partition has not progressed for `stall_s`.

        `delivered_offset(tp)` gives the last offset delivered to (or applied by) a partition's task (-1:
        none); `holding()` the source partitions the tasks keep paused on purpose; `holds_records(tp, start,
        end)` whether committed records lie in [start, end): a partition whose log ends in transaction
        markers looks behind by its highwater alone, so a suspected stall is checked against the records
        actually there.
        """
        now = self.clock()
        stalled = recovery_stalled_for(app.tables.recovery, now)
        if stalled >= self.stall_s:
            if self.may_ask(RECOVERY, now):
                log.warning("table recovery received no changelog record for %.0fs; asking the group to "
                            "rebalance, which restarts recovery", stalled)
                await request_rebalance(app)
            return
        if app.tables.recovery.in_recovery:
            return
        held = holding()
        owned = [tp for tp in owned_partitions(app.consumer, source_names) if (tp.topic, tp.partition) not in held]
        for tp in [tp for tp in owned_partitions(app.consumer, source_names) if (tp.topic, tp.partition) in held]:
            self.progress.forget(tp)
        still = [tp for tp in owned if not self.progress.moved(tp, delivered_offset(tp), now)]
        for tp, (_earliest, highwater) in (await watermarks(still) if still else {}).items():
            delivered = delivered_offset(tp)
            stalled = self.progress.stalled_for(tp, delivered, highwater, now)
            if stalled < self.stall_s:
                continue
            if not await holds_records(tp, delivered + 1, highwater):
                self.progress.settle(tp, highwater)
            elif self.may_ask((tp.topic, tp.partition), now):
                log.warning("%s[%d]: records wait past offset %d but none was delivered for %.0fs (%s); asking "
                            "the group to rebalance", tp.topic, tp.partition, delivered, stalled, fetch_view(app, tp))
                await request_rebalance(app)
                return
