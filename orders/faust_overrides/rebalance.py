"""Two questions the watchdog and the processor ask Faust and aiokafka, which have no public API for them."""
from __future__ import annotations

from typing import Any

import faust


def recovery_stalled_for(recovery: Any, now: float) -> float:
    """Seconds since table recovery last received a changelog record (0 when not recovering)."""
    if not recovery.in_recovery or recovery._recovery_started_at is None:
        return 0.0
    last = max(recovery._active_events_received_at.values(), default=recovery._recovery_started_at)
    return now - max(last, recovery._recovery_started_at)


async def request_rebalance(app: faust.App) -> None:
    """Ask the consumer group to rebalance: every member rejoins, Faust recovers and seeks again.
    Not while the worker stops: its consumer thread may be gone."""
    if app.should_stop:
        return
    thread = app.consumer._thread

    async def rejoin() -> None:
        thread._consumer._coordinator.request_rejoin()

    await thread.call_thread(rejoin)
