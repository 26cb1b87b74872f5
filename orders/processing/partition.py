"""One source partition this worker owns: its live state, its last committed state, its open transaction.

The live state runs ahead of the committed one by the records applied in the
open transaction (`uncommitted` of them, kept in `applied` so they can be
applied again); `/average/` shows the live state, as Kafka Streams'
interactive queries show a store's uncommitted writes. A commit makes the
live state the committed one; an abort puts the committed one back, and the
records applied since are applied again. What the applied records did (for
the metrics and the console) is kept as outcomes until their transaction
commits, so no counter counts what a crash or an abort takes back.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from ..domain.order import Order
from ..domain.partition_state import PartitionState
from ..kafka.records import SourceRecord, coordinates

PROCESSED = "processed"
RETRIED = "retried"
DEAD_LETTERED = "dead-lettered"


class Outcome(NamedTuple):
    """What applying one record did, reported once its transaction has committed (a tuple: one is made
    for every order)."""

    kind: str
    #: the record (its coordinates name it in the console)
    msg: SourceRecord
    #: the order; None when the record did not decode or was not a valid order
    order: Order | None
    attempt: int
    #: seconds from the record's Kafka timestamp to its application (counted orders); None without a timestamp
    latency_s: float | None = None
    #: the x-dlq-reason (dead letters)
    reason: str | None = None
    #: the error, for the console line
    detail: str = ""
    #: the orderId of a record that decoded but is not a valid order (`order` is None then)
    order_id: str | None = None

    @property
    def label(self) -> str:
        return label(self.order.order_id if self.order else self.order_id, self.msg)


def label(order_id: str | None, msg: SourceRecord) -> str:
    """How the console names a record: its orderId when it has one, and where it came from."""
    return f"{order_id or '<no orderId>'} ({coordinates(msg)})"


class Partition:
    def __init__(self, number: int, state: PartitionState, output: Any) -> None:
        self.number = number
        self.state = state
        self.committed = state.copy()
        self.output = output
        self.outcomes: list[Outcome] = []
        #: the delivered records applied in the open transaction, in the order they were applied
        self.applied: list[SourceRecord] = []
        #: monotonic time of the first change since the last commit; None when nothing is uncommitted
        self.changed_at: float | None = None
        #: let go (revoked, shut down) or taken over by another worker (our producer was fenced):
        #: apply nothing more to this object
        self.lost = False

    @property
    def uncommitted(self) -> int:
        """Records applied since the last commit."""
        return len(self.applied)

    def changed(self, now: float) -> None:
        """Records were applied (and appended to `applied`)."""
        if self.changed_at is None:
            self.changed_at = now

    def restore(self) -> list[SourceRecord]:
        """Back to the last committed state; return the records applied since, to be applied again."""
        self.state = self.committed.copy()
        self.outcomes.clear()
        self.changed_at = None
        applied, self.applied = self.applied, []
        return applied

    def mark_committed(self) -> list[Outcome]:
        """The live state is committed; return the outcomes of the transaction."""
        self.committed = self.state.copy()
        outcomes, self.outcomes = self.outcomes, []
        self.changed_at = None
        self.applied = []
        return outcomes
