"""Flow control between the consumer and the partition tasks, the Kafka way: per partition.

The agents hand records to the partition tasks without waiting for them to be
applied. Two levers keep what is fetched but not applied bounded:

- a partition that cannot take records now is *paused* in the consumer
  (Faust's `Consumer.pause_partitions`, which stops fetching it and
  delivering what was fetched), and resumed when it can: a retry partition
  whose next copy is not due yet (as Spring Kafka's retry topics do), a
  partition recovering from an error or blocked by an outside service, a
  partition whose inbox holds more than its share;
- the records waiting in the inboxes of partitions that are not held (the
  *backlog*) are kept under a budget: while it is exceeded, the agents wait
  before they hand over more, which holds the consumer back as a whole, as
  a bounded queue would. Held partitions do not count: one waiting copy or
  one blocked partition never holds up the others.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

#: A source partition: (topic, partition).
SourcePartition = tuple[str, int]
#: How long an agent waits for room before it looks again (a task that went away never signals).
ROOM_CHECK_S = 1.0


class Flow:
    def __init__(self, *, pause: Callable[[list[SourcePartition]], None],
                 resume: Callable[[list[SourcePartition]], None], budget: int) -> None:
        self._pause = pause
        self._resume = resume
        #: most records waiting in the inboxes of partitions that are not held
        self.budget = budget
        #: most records one source partition's inbox holds before it is paused (set with the assignment)
        self.partition_limit = budget
        #: the current backlog; the owner of the tasks sets it
        self.backlog: Callable[[], int] = lambda: 0
        self._paused: set[SourcePartition] = set()
        self._room = asyncio.Event()
        self._waiting = 0

    def share(self, source_partitions: int, floor: int) -> None:
        """Set each source partition's share of the budget for `source_partitions` of them (at least `floor`)."""
        self.partition_limit = max(floor, self.budget // max(1, source_partitions))

    # -- pausing --------------------------------------------------------------

    def hold(self, tp: SourcePartition, paused: bool) -> None:
        """Pause or resume one source partition; a no-op when it already is."""
        if paused and tp not in self._paused:
            self._paused.add(tp)
            self._pause([tp])
        elif not paused and tp in self._paused:
            self._paused.discard(tp)
            self._resume([tp])

    def is_paused(self, tp: SourcePartition) -> bool:
        return tp in self._paused

    def forget(self, tps: Iterable[SourcePartition]) -> None:
        """Partitions this worker lets go: resume what it paused (a new owner starts unpaused)."""
        self.hold_all(tps, False)

    def hold_all(self, tps: Iterable[SourcePartition], paused: bool) -> None:
        for tp in tps:
            self.hold(tp, paused)

    # -- the backlog ----------------------------------------------------------

    async def wait_for_room(self) -> None:
        """Return once the backlog is within the budget."""
        while self.backlog() > self.budget:
            self._waiting += 1
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), ROOM_CHECK_S)
            except TimeoutError:
                pass
            finally:
                self._waiting -= 1

    def progressed(self) -> None:
        """A task applied records or let some go: wake an agent waiting for room, if there is room now."""
        if self._waiting and self.backlog() <= self.budget:
            self._room.set()
