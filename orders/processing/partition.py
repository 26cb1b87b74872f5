"""One source partition this worker owns: its live state, its last committed state, its transaction.

The live state runs ahead of the committed one by the records applied in the
open transaction; `/average/` shows the live state. A commit makes the live
state the committed one; an abort puts the committed one back, and the
records applied since are applied again. What the applied records did (for
metrics and the console) is kept as outcomes until their transaction commits,
so nothing is reported that a crash or an abort takes back.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ..domain.partition_state import PartitionState

PROCESSED = "processed"
RETRIED = "retried"
DEAD_LETTERED = "dead-lettered"


@dataclass(frozen=True)
class Outcome:
    """What applying one record did, reported once its transaction has committed."""

    kind: str
    label: str
    attempt: int
    #: the Kafka timestamp (seconds) of the record that got the order counted; None when it had none
    timestamp_s: float | None = None
    #: the x-dlq-reason (dead letters)
    reason: str | None = None
    #: the error or the order, for the console line
    detail: str = ""
    order: dict[str, Any] | None = None


class Partition:
    def __init__(self, number: int, state: PartitionState, output: Any) -> None:
        self.number = number
        self.state = state
        self.committed = state.copy()
        self.output = output
        #: held while records are applied or the transaction commits: one of them at a time
        self.lock = asyncio.Lock()
        self.outcomes: list[Outcome] = []
        #: monotonic time of the first change since the last commit; None when nothing is uncommitted
        self.changed_at: float | None = None
        #: let go (revoked, shut down) or taken over by another worker (our producer was fenced):
        #: apply nothing more to this object
        self.lost = False

    def changed(self, now: float) -> None:
        if self.changed_at is None:
            self.changed_at = now

    def restore(self) -> None:
        """Back to the last committed state; what was applied since is forgotten."""
        self.state = self.committed.copy()
        self.outcomes.clear()
        self.changed_at = None

    def mark_committed(self) -> list[Outcome]:
        """The live state is committed; return the outcomes of the transaction."""
        self.committed = self.state.copy()
        outcomes, self.outcomes = self.outcomes, []
        self.changed_at = None
        return outcomes
