"""Liveness and readiness, for an orchestrator's probes (`/healthz`, `/readyz`).

Liveness asks nothing of other services: a worker whose event loop answers
is alive, even while Kafka is down (restarting it would not help).
Readiness says whether this worker does its share now: it is a member of its
group with its partitions set up and recovered, none of them is blocked, and
Kafka and the registry answer (each asked at most every PROBE_EVERY_S, within
PROBE_TIMEOUT_S, so a probe every second costs them nothing).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from faust.exceptions import ConsumerNotStarted

#: How long the answer of one look at Kafka or the registry is reused.
PROBE_EVERY_S = 5.0
#: How long one look at Kafka or the registry may take.
PROBE_TIMEOUT_S = 2.0


class ServiceProbes:
    """Whether Kafka and the registry answer now; `checks` name -> a blocking call that raises when not."""

    def __init__(self, checks: dict[str, Callable[[], None]], clock: Callable[[], float] = time.monotonic) -> None:
        self.checks = checks
        self.clock = clock
        self._asked_at = -PROBE_EVERY_S
        self._problems: list[str] = []
        self._lock = asyncio.Lock()

    async def problems(self) -> list[str]:
        async with self._lock:
            if self.clock() - self._asked_at >= PROBE_EVERY_S:
                self._problems = [problem for problem in await asyncio.gather(
                    *(self._ask(name, check) for name, check in self.checks.items())) if problem]
                self._asked_at = self.clock()
            return list(self._problems)

    @staticmethod
    async def _ask(name: str, check: Callable[[], None]) -> str | None:
        try:
            await asyncio.wait_for(asyncio.to_thread(check), PROBE_TIMEOUT_S + 1)
        except Exception as exc:
            return f"{name} does not answer: {exc or type(exc).__name__}"
        return None


async def readiness(app: Any, tasks: Any, probes: ServiceProbes) -> dict[str, Any]:
    """{"ready": bool, "reasons": [...], "partitions": [...], "blocked": {partition: why}}."""
    reasons = []
    try:
        assigned = app.consumer.assignment()
    except ConsumerNotStarted:
        assigned = None
        reasons.append("the consumer has not started yet")
    if assigned is not None and getattr(app, "consumer_generation_id", 0) <= 0:
        reasons.append("the worker has not joined its group yet")
    elif assigned is not None and getattr(app, "rebalancing", False):
        reasons.append("the group is rebalancing")
    if app.tables.recovery.in_recovery:
        reasons.append("recovering the table's partitions")
    unready = tasks.unready()
    if unready:
        reasons.append(f"partitions {unready} are not set up yet (their producers or states)")
    blocked = tasks.blocked()
    for number, why in blocked.items():
        reasons.append(f"partition {number} is blocked: {why.reason}")
    reasons += await probes.problems()
    return {"ready": not reasons, "reasons": reasons, "partitions": tasks.owned(),
            "blocked": {str(number): why.to_json() for number, why in blocked.items()}}
