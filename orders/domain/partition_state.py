"""The aggregate, kept per source partition so that replays can be recognised.

Faust writes a table key to the changelog partition of the same number, so
keying the state by the source partition number keeps each key on one
changelog partition and with one owner. Next to the counts, the value records
the last offset applied from each source topic and the sequence numbers of the
retry copies the partition sent and resolved, which makes applying a record
idempotent: a record at or below its topic's applied offset, or a retry copy at
or below the resolved sequence number, changes nothing. The value has a fixed
size, however many orders are in retry.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .order import MICROS_PER_UNIT

log = logging.getLogger(__name__)


@dataclass
class PartitionState:
    orders: int = 0
    total_micros: int = 0
    retries: int = 0
    dead_letters: int = 0
    #: source topic -> last offset applied from this partition of it
    applied: dict[str, int] = field(default_factory=dict)
    #: sequence number of the last retry copy this partition sent
    retry_seq_sent: int = 0
    #: sequence number of the last retry copy this partition resolved (processed or found missing)
    retry_seq_done: int = 0

    @classmethod
    def from_value(cls, value: Mapping[str, Any] | None) -> PartitionState:
        if not value:
            return cls()
        if value.get("pending"):
            # A state written by the version that kept a set of pending originals: their copies carry no
            # sequence number, so they are dead-lettered as orphaned retries (and can be replayed).
            log.warning("partition state lists %d retries in flight from an older version; their copies will "
                        "be dead-lettered as orphaned-retry (dlq replay --reason orphaned-retry sends them again)",
                        len(value["pending"]))
        return cls(orders=value["orders"], total_micros=value["total_micros"], retries=value["retries"],
                   dead_letters=value["dead_letters"], applied=dict(value["applied"]),
                   retry_seq_sent=value.get("retry_seq_sent", 0), retry_seq_done=value.get("retry_seq_done", 0))

    def to_value(self) -> dict[str, Any]:
        return {"orders": self.orders, "total_micros": self.total_micros, "retries": self.retries,
                "dead_letters": self.dead_letters, "applied": dict(self.applied),
                "retry_seq_sent": self.retry_seq_sent, "retry_seq_done": self.retry_seq_done}

    def copy(self) -> PartitionState:
        return replace(self, applied=dict(self.applied))

    @property
    def in_retry(self) -> int:
        """Orders whose retry copy is sent and not yet resolved."""
        return self.retry_seq_sent - self.retry_seq_done

    def next_offset(self, topic: str) -> int | None:
        """The offset to apply next from this partition of `topic`; None before the first one."""
        applied = self.applied.get(topic)
        return None if applied is None else applied + 1

    def mark_applied(self, topic: str, offset: int) -> None:
        self.applied[topic] = offset

    def count(self, micros: int) -> None:
        self.orders += 1
        self.total_micros += micros

    def next_retry_seq(self) -> int:
        """Number a new retry copy (and count it)."""
        self.retry_seq_sent += 1
        self.retries += 1
        return self.retry_seq_sent


#: A partition's share of the aggregate: its live state and the records applied since its last commit.
Share = tuple[PartitionState, int]
#: Where a share is written as one JSON object (the table's value, /partition-stats/): the records applied
#: since the last commit, next to the state's own fields (a committed state written to the changelog has none).
UNCOMMITTED = "uncommitted"


@dataclass(frozen=True)
class Aggregate:
    """The aggregate over some partitions: what `/average/`, `/metrics` and the console show."""

    orders: int = 0
    total_micros: int = 0
    retries: int = 0
    dead_letters: int = 0
    #: orders whose retry copy is sent and not yet resolved
    in_retry: int = 0
    #: records applied to these figures whose transaction has not committed yet
    uncommitted: int = 0
    #: partitions the figures cover
    partitions: int = 0

    @classmethod
    def of(cls, shares: Iterable[Share]) -> Aggregate:
        orders = total = retries = dead = in_retry = uncommitted = partitions = 0
        for state, applied in shares:
            orders += state.orders
            total += state.total_micros
            retries += state.retries
            dead += state.dead_letters
            in_retry += state.in_retry
            uncommitted += applied
            partitions += 1
        return cls(orders, total, retries, dead, in_retry, uncommitted, partitions)

    @property
    def total_price(self) -> float:
        return self.total_micros / MICROS_PER_UNIT

    @property
    def average(self) -> float:
        return round(self.total_micros / self.orders / MICROS_PER_UNIT, 6) if self.orders else 0.0

    def to_json(self) -> dict[str, Any]:
        """The shape `/average/` serves (and the live page reads)."""
        return {"orders": self.orders, "total_price": self.total_price, "total_price_micros": self.total_micros,
                "average": self.average, "retries": self.retries, "dead_letters": self.dead_letters,
                "in_retry": self.in_retry, "uncommitted": self.uncommitted, "partitions": self.partitions}
