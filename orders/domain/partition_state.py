"""The aggregate, kept per source partition so that replays can be recognised.

Faust writes a table key to the changelog partition of the event being
processed, so keying the state by the source partition number keeps each key
on one changelog partition and with one owner. Next to the counts, the value
records the last offset applied from each source topic and the originals whose
retry is in flight, which makes applying a message idempotent: a message
replayed after a crash (offset already applied) or a stale retry copy (original
no longer pending) changes nothing.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .order import MICROS_PER_UNIT


@dataclass
class PartitionState:
    orders: int = 0
    total_micros: int = 0
    retries: int = 0
    dead_letters: int = 0
    #: source topic -> last offset applied from this partition of it
    applied: dict[str, int] = field(default_factory=dict)
    #: "topic/partition/offset" of originals sent to retry and not yet resolved
    pending: set[str] = field(default_factory=set)

    @classmethod
    def from_value(cls, value: Mapping[str, Any] | None) -> PartitionState:
        if not value:
            return cls()
        return cls(orders=value["orders"], total_micros=value["total_micros"], retries=value["retries"],
                   dead_letters=value["dead_letters"], applied=dict(value["applied"]),
                   pending=set(value["pending"]))

    def to_value(self) -> dict[str, Any]:
        return {"orders": self.orders, "total_micros": self.total_micros, "retries": self.retries,
                "dead_letters": self.dead_letters, "applied": self.applied, "pending": sorted(self.pending)}

    def next_offset(self, topic: str) -> int | None:
        """The offset to apply next from this partition of `topic`; None before the first one."""
        applied = self.applied.get(topic)
        return None if applied is None else applied + 1

    def mark_applied(self, topic: str, offset: int) -> None:
        self.applied[topic] = offset

    def count(self, micros: int) -> None:
        self.orders += 1
        self.total_micros += micros


def summarize(states: Iterable[PartitionState]) -> dict[str, Any]:
    """The aggregate the web view shows, over the given partitions."""
    orders = total = retries = dead = in_retry = 0
    for state in states:
        orders += state.orders
        total += state.total_micros
        retries += state.retries
        dead += state.dead_letters
        in_retry += len(state.pending)
    return {
        "orders": orders,
        "total_price": total / MICROS_PER_UNIT,
        "total_price_micros": total,
        "average": round(total / orders / MICROS_PER_UNIT, 6) if orders else 0.0,
        "retries": retries,
        "dead_letters": dead,
        "in_retry": in_retry,
    }
