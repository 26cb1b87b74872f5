"""One source partition this worker owns: its live state, its last committed state, and what it will write
at its next commit.

The live state runs ahead of the committed one by the records applied since
the last commit (`uncommitted` of them, kept in `applied` so they can be
applied again); `/average/` shows the live state, as Kafka Streams'
interactive queries show a store's uncommitted writes. The retry copies and
dead letters those records caused wait in the `outbox` until the worker's
next transaction writes them, with the state (processing/commit.py). Asking
for a commit seals the work applied so far (`seal`): the transaction writes
that, while the partition goes on applying records for the next one, and its
commit makes the sealed state the committed one. An abort puts the committed
one back, empties the outbox, and the records applied since are applied
again.
What the applied records did (for the metrics and the console) is kept as
outcomes until their transaction commits, so no counter counts what a crash
or an abort takes back.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from ..domain.order import Order
from ..domain.partition_state import PartitionState
from ..kafka.records import SourceRecord, coordinates
from ..kafka.transactions import GroupMember

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


class Outgoing(NamedTuple):
    """A record the next commit writes: a retry copy or a dead letter, and the source record that caused it."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    #: None: the producer's partitioner picks one from the key
    partition: int | None = None
    timestamp_ms: int | None = None
    source: SourceRecord | None = None


class Sealed(NamedTuple):
    """The work a transaction on its way writes for a partition: the state as it was sealed, the retry copies
    and dead letters of the records applied until then, and what those records did."""

    state: PartitionState
    outbox: list[Outgoing]
    outcomes: list[Outcome]
    #: how many of the partition's `applied` records it covers (the first ones)
    records: int


class Partition:
    def __init__(self, number: int, state: PartitionState, member: GroupMember) -> None:
        self.number = number
        self.state = state
        self.committed = state.copy()
        #: the group membership the partition was assigned under: its commits count only while it is current
        self.member = member
        #: what the next commit writes besides the state, in the order the records were applied
        self.outbox: list[Outgoing] = []
        self.outcomes: list[Outcome] = []
        #: the delivered records applied since the last commit, in the order they were applied (those of a
        #: transaction on its way first)
        self.applied: list[SourceRecord] = []
        #: the work of the transaction on its way (None: none is)
        self.sealed: Sealed | None = None
        #: monotonic time of the first change not sealed yet; None when there is none
        self.changed_at: float | None = None
        #: let go (revoked, shut down) or taken over by another worker (a commit found the group moved on):
        #: apply nothing more to this object
        self.lost = False

    @property
    def uncommitted(self) -> int:
        """Records applied since the last commit (those of a transaction on its way included)."""
        return len(self.applied)

    def send(self, topic: str, *, key: bytes | None, value: bytes | None,
             headers: Sequence[tuple[str, bytes]] = (), partition: int | None = None,
             timestamp_ms: int | None = None, source: SourceRecord | None = None) -> None:
        """Put a record in the outbox: the next commit writes it, or an abort drops it."""
        self.outbox.append(Outgoing(topic, key, value, headers, partition, timestamp_ms, source))

    def changed(self, now: float) -> None:
        """Records were applied (and appended to `applied`)."""
        if self.changed_at is None:
            self.changed_at = now

    def seal(self) -> Sealed:
        """Close the work applied so far for a transaction (called between records, never inside one): the
        records applied from now on go into the next. One transaction at a time per partition."""
        if self.sealed is not None:
            raise RuntimeError(f"partition {self.number}: a transaction is on its way already")
        self.sealed = Sealed(self.state.copy(), self.outbox, self.outcomes, len(self.applied))
        self.outbox, self.outcomes = [], []
        self.changed_at = None
        return self.sealed

    def unseal(self, now: float) -> None:
        """Take the sealed work back, its transaction withdrawn before it began: the next seal covers it and
        what was applied since."""
        sealed, self.sealed = self.sealed, None
        if sealed is None:
            raise RuntimeError(f"partition {self.number}: no transaction was on its way")
        self.outbox = sealed.outbox + self.outbox
        self.outcomes = sealed.outcomes + self.outcomes
        self.changed(now)

    def restore(self) -> list[SourceRecord]:
        """Back to the last committed state; return the records applied since, to be applied again. Not while
        a transaction is on its way: its outcome comes first."""
        self.state = self.committed.copy()
        self.outbox, self.outcomes = [], []
        self.sealed = None
        self.changed_at = None
        applied, self.applied = self.applied, []
        return applied

    def mark_committed(self) -> tuple[list[Outcome], list[SourceRecord]]:
        """The sealed work is committed: its state is the committed one. Its outcomes and records."""
        sealed, self.sealed = self.sealed, None
        if sealed is None:
            raise RuntimeError(f"partition {self.number}: no transaction was on its way")
        self.committed = sealed.state
        done, self.applied = self.applied[:sealed.records], self.applied[sealed.records:]
        return sealed.outcomes, done
