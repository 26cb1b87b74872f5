"""Liveness and readiness, for an orchestrator's probes (`/healthz`, `/readyz`).

Liveness asks nothing of other services: a worker whose event loop answers
is alive, even while Kafka is down (restarting it would not help).
Readiness says whether this worker does its share now: it is a member of its
group with its partitions set up and recovered, and none of them is blocked.
"""
from __future__ import annotations

from typing import Any

from faust.exceptions import ConsumerNotStarted


def readiness(app: Any, tasks: Any) -> dict[str, Any]:
    """{"ready": bool, "reasons": [...], "partitions": [...], "blocked": {partition: why}}."""
    reasons = []
    try:
        assigned = app.consumer.assignment()
    except ConsumerNotStarted:
        assigned = None
        reasons.append("the consumer has not started yet")
    if assigned is not None and getattr(app, "rebalancing", False):
        reasons.append("the group is rebalancing")
    if app.tables.recovery.in_recovery:
        reasons.append("recovering the table's partitions")
    unready = tasks.unready()
    if unready:
        reasons.append(f"partitions {unready} are not set up yet (their producers or states)")
    blocked = tasks.blocked()
    for number, why in blocked.items():
        reasons.append(f"partition {number} is blocked: {why.reason}")
    return {"ready": not reasons, "reasons": reasons, "partitions": tasks.owned(),
            "blocked": {str(number): why.to_json() for number, why in blocked.items()}}
