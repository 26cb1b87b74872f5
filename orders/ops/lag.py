"""How far the agents are behind the source partitions this worker owns (the /metrics lag, the watchdog)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
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


def owned_partitions(consumer: Any, topic_names: Iterable[str]) -> list[TP]:
    """The partitions of `topic_names` assigned to this worker ([] before the consumer starts)."""
    names = set(topic_names)
    try:
        return [tp for tp in consumer.assignment() if tp.topic in names]
    except ConsumerNotStarted:  # the web server answers before the consumer has started
        return []


Watermarks = Callable[[list[TP]], Awaitable[Mapping[TP, tuple[int, int]]]]


async def consumer_lag(consumer: Any, topic_names: Iterable[str], lag_of: Callable[[TP, int, int], int],
                       watermarks: Watermarks) -> dict[tuple[str, int], int]:
    """Records waiting in each source partition this worker owns: `lag_of(tp, highwater, earliest offset)`.

    `watermarks` asks the broker for each partition's (earliest, highwater) offsets; not through Faust's
    consumer, whose requests queue behind its long-polling fetch (up to 1.5 s, longer than a scrape may take).
    """
    owned = owned_partitions(consumer, topic_names)
    if not owned:
        return {}
    marks = await watermarks(owned)
    # Applied offsets are read (by lag_of) after the await: any record applied meanwhile is
    # then below the highwater read before it, and the lag is never overstated.
    return {(tp.topic, tp.partition): lag_of(tp, high, low) for tp, (low, high) in marks.items()}
