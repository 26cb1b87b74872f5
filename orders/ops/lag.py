"""How far the agents are behind the source partitions this worker owns (the /metrics lag, the watchdog)."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from faust.exceptions import ConsumerNotStarted
from faust.types import TP


def partition_lag(highwater: int, applied: int, earliest: int) -> int:
    """Records in a partition that the agents have not applied yet.

    `highwater` is the offset the next produced record will get, `applied` the
    last offset applied (-1 before the first), `earliest` the partition's first
    offset still in the log (where a partition with nothing applied starts).
    """
    next_offset = applied + 1 if applied >= 0 else earliest
    return max(0, highwater - next_offset)


async def owned_highwaters(consumer: Any, topic_names: Iterable[str]) -> dict[TP, int]:
    """Highwater of each partition of `topic_names` assigned to this worker ({} before the consumer starts)."""
    names = set(topic_names)
    try:
        owned = [tp for tp in consumer.assignment() if tp.topic in names]
    except ConsumerNotStarted:  # the web server answers before the consumer has started
        return {}
    return dict(await consumer.highwaters(*owned)) if owned else {}


async def consumer_lag(consumer: Any, topic_names: Iterable[str], lag_of: Callable[[TP, int, int], int]
                       ) -> dict[tuple[str, int], int]:
    """Records waiting in each source partition this worker owns: `lag_of(tp, highwater, earliest offset)`."""
    highwaters = await owned_highwaters(consumer, topic_names)
    if not highwaters:
        return {}
    earliest = await consumer.earliest_offsets(*highwaters)
    # Applied offsets are read (by lag_of) after the awaits: any record applied meanwhile is
    # then below the highwater read before it, and the lag is never overstated.
    return {(tp.topic, tp.partition): lag_of(tp, highwater, earliest[tp]) for tp, highwater in highwaters.items()}
