"""The source partitions this worker owns, each worked by a `PartitionTask`: taking them over, letting them
go, handing them the agents' records (Kafka Streams' `TaskManager`).

- **Taking over** (`on_assigned`, called before Faust's table recovery reads
  the changelog): the group membership the partitions were assigned under is
  noted (their commits count only while it is current), then their committed
  states are read from the changelog, once no transaction of an earlier
  owner is open on it. This runs inside the group's rebalance callback, during
  which aiokafka sends no heartbeats, so it is bounded well within a session
  timeout (`assign_timeout_s`): a partition that cannot be set up by then (the
  broker does not answer, or an earlier owner's transaction is still open:
  one a killed worker left is aborted by the broker up to 20 s later) still
  gets its task, which takes it over once it can while its records wait.
- **Letting go** (`on_revoked`, `stop`): each task finishes the record at
  hand and commits what it applied, within FINAL_COMMIT_TIMEOUT_S; the last
  commits wait for any commit on its way and then go in one transaction
  (`LastCommits`).
- **Handing over records** (`submit`): into the inboxes of the partitions'
  tasks, without waiting for them to be applied; an agent waits only while
  the backlog of partitions that are not held exceeds the flow's budget.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from ..domain.partition_state import PartitionState
from ..kafka.transactions import GroupMember
from .commit import LastCommits
from .flow import Flow, SourcePartition
from .partition import Partition
from .task import Blocked, PartitionTask, StillSettling

log = logging.getLogger("orders")

#: How long revocation or shutdown waits for a partition's last commit before leaving it to the next owner.
FINAL_COMMIT_TIMEOUT_S = 5.0
#: How long the partitions let go wait for each other's commits on their way, so that their last commits go in
#: one transaction; what is left of FINAL_COMMIT_TIMEOUT_S is the last transaction's.
LAST_COMMITS_PATIENCE_S = FINAL_COMMIT_TIMEOUT_S / 2
#: How long one attempt to take partitions over waits for an earlier owner's transaction to end.
TAKE_OVER_WAIT_S = 1.5

#: Builds the task of a partition (set up already, or None when it must set itself up).
NewTask = Callable[[int, "Partition | None", "PartitionTasks"], PartitionTask]


class NotAMember(RuntimeError):
    """The worker has no current membership of the consumer group (it is joining, or was cut off)."""


def group_by_partition(records: Iterable[Any]) -> dict[int, list[Any]]:
    """Records per partition, each list in delivery order."""
    groups: dict[int, list[Any]] = {}
    for msg in records:
        groups.setdefault(msg.partition, []).append(msg)
    return groups


class PartitionTasks:
    def __init__(self, *, new_task: NewTask, membership: Callable[[], GroupMember | None],
                 load_states: Callable[[list[int], float], Awaitable[Mapping[int, PartitionState]]], flow: Flow,
                 request_rebalance: Callable[[], Awaitable[None]],
                 on_blocked: Callable[[int, Blocked | None], None] = lambda number, blocked: None,
                 chunk: int = 1000, assign_timeout_s: float = 3.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._new_task = new_task
        self._membership = membership
        self._load_states = load_states
        self.flow = flow
        self._request_rebalance = request_rebalance
        self._on_blocked = on_blocked
        self._chunk = chunk
        #: the most taking partitions over may hold the rebalance callback (the app: half the session timeout)
        self.assign_timeout_s = assign_timeout_s
        self.monotonic = monotonic
        self.tasks: dict[int, PartitionTask] = {}
        flow.backlog = self.backlog

    # -- ownership ------------------------------------------------------------------

    async def on_assigned(self, numbers: Iterable[int]) -> None:
        """Take over new partitions and start their tasks. Never raises: a partition that cannot be set up
        now sets itself up, with backoff, in its task."""
        new = sorted(set(numbers) - set(self.tasks))
        if not new:
            return
        try:
            parts = await asyncio.wait_for(self._take_over(new), self.assign_timeout_s)
        except Exception as exc:  # each task tries again on its own
            log.warning("partitions %s: cannot take them over yet (%s); their tasks keep trying", new,
                        str(exc) or f"not done within {self.assign_timeout_s:.1f}s")
            parts = {}
        else:
            settling = [number for number in new if number not in parts]
            if settling:
                log.info("partitions %s: an earlier owner's transaction is still open on their changelog; their "
                         "tasks take them over once it has ended", settling)
        for number in new:
            task = self.tasks[number] = self._new_task(number, parts.get(number), self)
            task.start()
        self.flow.share(2 * len(self.tasks), floor=self._chunk)

    async def take_over(self, number: int) -> Partition:
        """One partition set up (a task whose partition could not be set up on assignment asks this); StillSettling
        while an earlier owner's transaction is open on its changelog."""
        parts = await self._take_over([number])
        if number not in parts:
            raise StillSettling(f"partition {number}: an earlier owner's transaction is still open on its "
                                f"changelog (after {TAKE_OVER_WAIT_S:.1f}s)")
        return parts[number]

    async def _take_over(self, numbers: list[int]) -> dict[int, Partition]:
        """The partitions whose committed states could be read (the others' changelogs have an earlier owner's
        transaction open after TAKE_OVER_WAIT_S)."""
        started = self.monotonic()
        member = self._membership()
        if member is None or member.generation < 0:
            raise NotAMember(f"the worker is not a member of the consumer group ({member}): partitions {numbers} "
                             f"are set up once it has joined")
        states = await self._load_states(numbers, TAKE_OVER_WAIT_S)
        if states:
            log.info("took over partitions %s in %.2f s (generation %d): their committed states were read once no "
                     "earlier owner's transaction was open", sorted(states), self.monotonic() - started,
                     member.generation)
        return {number: Partition(number, state, member) for number, state in states.items()}

    async def on_revoked(self, numbers: Iterable[int]) -> None:
        """Let partitions go: each task commits what it applied (within a bound, all at once) and ends."""
        tasks = [task for task in (self.tasks.pop(number, None) for number in set(numbers)) if task]
        together = LastCommits(len(tasks), self.monotonic() + LAST_COMMITS_PATIENCE_S, self.monotonic)
        await asyncio.gather(*(task.stop(FINAL_COMMIT_TIMEOUT_S, together) for task in tasks))
        self.flow.share(2 * len(self.tasks), floor=self._chunk)
        self.flow.progressed()

    async def stop(self) -> None:
        """At shutdown: the same as losing every partition in a rebalance."""
        await self.on_revoked(list(self.tasks))

    async def request_rebalance(self) -> None:
        await self._request_rebalance()

    def blocked_changed(self, number: int, blocked: Blocked | None) -> None:
        self._on_blocked(number, blocked)

    # -- records --------------------------------------------------------------------

    async def submit(self, topic: str, records: Sequence[Any], partition: int | None = None) -> None:
        """Hand an agent's records of `topic` to their partitions' tasks (`partition`: all of that one);
        then wait, if need be, until the backlog is within the flow's budget."""
        if not records:
            return
        groups = {partition: records} if partition is not None else group_by_partition(records)
        for number, group in groups.items():
            task = self.tasks.get(number)
            if task is None or task.lost:
                log.debug("skip %d record(s) of %s[%d]: not owned here (any more)", len(group), topic, number)
                continue
            task.receive(topic, list(group))
        await self.flow.wait_for_room()

    def backlog(self) -> int:
        return sum(task.backlog() for task in self.tasks.values())

    # -- what the pages, the metrics and the watchdog ask -------------------------------

    def _parts(self) -> dict[int, Partition]:
        return {number: task.part for number, task in self.tasks.items()
                if task.part is not None and not task.part.lost}

    def resume_offsets(self) -> dict[SourcePartition, int]:
        """(topic, partition) -> the next offset after the committed state, for every owned source partition
        that has one: where the consumer resumes after a rebalance, and the group's offset."""
        offsets = {}
        for number, part in self._parts().items():
            for topic, applied in part.committed.applied.items():
                offsets[(topic, number)] = applied + 1
        return offsets

    def owned(self) -> list[int]:
        """The partitions this worker owns and has set up."""
        return sorted(self._parts())

    def applied_offset(self, topic: str, number: int) -> int:
        """Last offset applied from a source partition; -1 before the first (or when not owned)."""
        part = self._parts().get(number)
        expected = None if part is None else part.state.next_offset(topic)
        return -1 if expected is None else expected - 1

    def received_offset(self, topic: str, number: int) -> int:
        """Last offset delivered to a partition's task, or applied by it; -1 before the first."""
        task = self.tasks.get(number)
        received = -1 if task is None else task.received.get(topic, -1)
        return max(received, self.applied_offset(topic, number))

    def holding(self) -> dict[SourcePartition, str]:
        """Source partitions the tasks keep paused on purpose, and why."""
        held: dict[SourcePartition, str] = {}
        for task in self.tasks.values():
            held.update(task.holding())
        return held

    def blocked(self) -> dict[int, Blocked]:
        return {number: task.blocked for number, task in sorted(self.tasks.items()) if task.blocked is not None}

    def unready(self) -> list[int]:
        """Owned partitions whose task has not set them up yet."""
        return sorted(number for number, task in self.tasks.items() if task.part is None)
