"""What the watchdog and the processing ask Faust and aiokafka about the consumer group, which have no public
API for it: how long recovery has received nothing, this worker's membership, and asking for a rebalance."""
from __future__ import annotations

from typing import Any

import faust

from ..kafka.transactions import GroupMember


def recovery_stalled_for(recovery: Any, now: float) -> float:
    """Seconds since table recovery last received a changelog record (0 when not recovering)."""
    if not recovery.in_recovery or recovery._recovery_started_at is None:
        return 0.0
    last = max(recovery._active_events_received_at.values(), default=recovery._recovery_started_at)
    return now - max(last, recovery._recovery_started_at)


async def request_rebalance(app: faust.App) -> None:
    """Ask the consumer group to rebalance: every member rejoins, Faust recovers and seeks again.
    Not while the worker stops: its consumer thread may be gone.

    Handed to the consumer thread without waiting for it (`cast_thread`, not `call_thread`): a partition task
    asks this, and when the thread is in a rebalance already it waits for the revocation, which waits for the
    tasks; waiting here would hold the rebalance until the revocation's time bound."""
    if app.should_stop:
        return
    thread = app.consumer._thread

    async def rejoin() -> None:
        thread._consumer._coordinator.request_rejoin()

    await thread.cast_thread(rejoin)


def group_member(app: faust.App) -> GroupMember | None:
    """This worker's membership of the consumer group as aiokafka's group coordinator holds it now (the
    generation and member id of the last join; generation -1 while it has none), as Faust reads the
    generation itself on each assignment (`ConsumerRebalanceListener.on_partitions_assigned`:
    `_thread._ensure_consumer()._coordinator.generation`).
    None before the consumer has started."""
    thread = getattr(app.consumer, "_thread", None)
    consumer = getattr(thread, "_consumer", None)
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None or not hasattr(coordinator, "generation"):
        return None
    return GroupMember(group_id=coordinator.group_id, generation=coordinator.generation,
                       member_id=coordinator.member_id, instance_id=coordinator._group_instance_id)


def fetch_view(app: faust.App, tp: Any) -> str:
    """How Faust and aiokafka see one source partition, for a stall's log line: in Faust's active set (what
    `getmany` asks for) or paused or buffered, aiokafka's position, a pending offset reset, records fetched
    and not yet taken."""
    parts: list[str] = []
    try:
        consumer = app.consumer
        parts += [f"active={tp in (consumer._active_partitions or ())}",
                  f"faust-paused={tp in consumer._paused_partitions}",
                  f"buffer-full={tp in consumer._buffered_partitions}"]
        kafka_consumer = consumer._thread._consumer
        assignment = kafka_consumer._subscription.subscription.assignment
        key = next((candidate for candidate in assignment.tps
                    if (candidate.topic, candidate.partition) == (tp.topic, tp.partition)), None)
        if key is None:
            parts.append("not in aiokafka's assignment")
        else:
            state = assignment.state_value(key)
            parts += [f"position={state.position if state.has_valid_position else None}",
                      f"awaiting-reset={state.awaiting_reset}",
                      f"fetched-not-taken={key in kafka_consumer._fetcher._records}"]
    except Exception as exc:  # a diagnostic: never the reason a check fails
        parts.append(f"the consumer's view unavailable ({exc!r})")
    return ", ".join(parts)
