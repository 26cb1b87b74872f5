"""Unsticks a worker whose Faust consumer stops delivering records.

Now and then, after partitions move between workers, Faust on the new owner
stops receiving records of some partition: table recovery waits forever
("No event received for active tp"; faust-streaming issues 74, 21, 176 report
recovery stalls), or a source partition with records behind its highwater
never reaches the agent. Seen here in the scale-out test. A new rebalance
restarts recovery and seeks every partition again, so when either stall lasts
STALL_SECONDS the worker asks its group to rebalance. This reaches into
Faust's and aiokafka's internals, which is why it lives alone here.
"""
from __future__ import annotations

import logging
from time import monotonic

import faust

log = logging.getLogger("orders")

STALL_SECONDS = 20.0


def recovery_stalled_for(recovery, now: float) -> float:
    """Seconds since recovery last received a changelog record (0 when not recovering)."""
    if not recovery.in_recovery or recovery._recovery_started_at is None:
        return 0.0
    last = max(recovery._active_events_received_at.values(), default=recovery._recovery_started_at)
    return now - max(last, recovery._recovery_started_at)


async def request_rebalance(app: faust.App) -> None:
    thread = app.consumer._thread

    async def rejoin() -> None:
        thread._consumer._coordinator.request_rejoin()

    await thread.call_thread(rejoin)


class SourceProgress:
    """Remembers, per source partition, the applied offset and since when it has not moved."""

    def __init__(self) -> None:
        self._seen: dict = {}

    def stalled_for(self, tp, applied: int, highwater: int, now: float) -> float:
        """Seconds that `tp` has had records waiting (highwater past applied) without progress."""
        if highwater <= applied + 1:
            self._seen.pop(tp, None)
            return 0.0
        last_applied, since = self._seen.get(tp, (None, now))
        if last_applied != applied:
            since = now
        self._seen[tp] = (applied, since)
        return now - since


def install(app: faust.App, source_topics: list, applied_offset, stall_s: float = STALL_SECONDS) -> None:
    """`applied_offset(tp)` gives the last offset the agents applied from a source partition (-1: none)."""
    progress = SourceProgress()

    @app.timer(5.0)
    async def watch_for_stalls() -> None:
        now = monotonic()
        stalled = recovery_stalled_for(app.tables.recovery, now)
        if stalled >= stall_s:
            log.warning("table recovery received no changelog record for %.0fs; asking the group to rebalance, "
                        "which restarts recovery", stalled)
            await request_rebalance(app)
            return
        if app.tables.recovery.in_recovery:
            return
        names = {topic.get_topic_name() for topic in source_topics}
        owned = [tp for tp in app.consumer.assignment() if tp.topic in names]
        if not owned:
            return
        highwaters = await app.consumer.highwaters(*owned)
        for tp in owned:
            stalled = progress.stalled_for(tp, applied_offset(tp), highwaters.get(tp, 0), now)
            if stalled >= stall_s:
                log.warning("%s[%d]: records wait past offset %d but none arrived for %.0fs; asking the group "
                            "to rebalance", tp.topic, tp.partition, applied_offset(tp), stalled)
                await request_rebalance(app)
                return
