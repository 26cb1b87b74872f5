"""The broker reads the worker needs while it runs, off the event loop: each in a thread, asked again with backoff
while Kafka does not answer (a broker restarting, a leader moving), for up to READ_TIMEOUT_S; then the last
error is raised, for the partition task to back off and try again (and report itself blocked if it lasts).

Not through Faust's consumer: its requests queue behind the consumer's long-polling fetch (up to 1.5 s).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, TypeVar

from confluent_kafka import KafkaException

from ..backoff import Backoff
from . import reading
from .reading import Record

log = logging.getLogger("orders")
T = TypeVar("T")
P = TypeVar("P", bound=tuple)

#: How long a read is asked again before its error is raised.
READ_TIMEOUT_S = 30.0
#: Most records a direct read of records the consumer skipped brings at once.
PAGE_RECORDS = 1000


async def until_answered(what: str, read: Callable[[], T], timeout_s: float = READ_TIMEOUT_S) -> T:
    """`read()` in a thread, asked again with backoff while Kafka does not answer, for up to `timeout_s`."""
    backoff = Backoff(0.2, 5.0, timeout_s)
    while True:
        try:
            return await asyncio.to_thread(read)
        except (KafkaException, TimeoutError) as exc:
            delay = backoff.next_delay()
            if delay is None:
                raise
            log.warning("%s: Kafka did not answer (%s); asking again in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)


class Broker:
    def __init__(self, config: Mapping[str, Any], timeout_s: float = READ_TIMEOUT_S) -> None:
        self.config = config
        self.timeout_s = timeout_s
        #: earliest offsets asked for and not read yet: (topic, partition) -> the askers' futures
        self._first_asked: dict[tuple[str, int], list[asyncio.Future]] = {}
        self._first_reads: asyncio.Task | None = None

    async def earliest_offset(self, topic: str, partition: int) -> int:
        """The oldest offset still in a partition.

        A worker that takes over new partitions asks this at the first record of each, all at about the
        same time; the questions asked while one read is on its way go together into the next read, one
        request per topic and leader (192 one-partition reads through asyncio's six default threads cost a
        second of the first records' time)."""
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        self._first_asked.setdefault((topic, partition), []).append(answer)
        if self._first_reads is None or self._first_reads.done():
            self._first_reads = loop.create_task(self._read_first_offsets(), name="earliest-offsets")
        return await answer

    async def _read_first_offsets(self) -> None:
        while self._first_asked:
            asked, self._first_asked = self._first_asked, {}
            partitions = sorted(asked)
            try:
                found = await until_answered(
                    f"earliest offsets of {_named(partitions)}",
                    partial(reading.first_offsets, self.config, partitions), self.timeout_s)
            except Exception as exc:
                _settle(asked, error=exc)
            except BaseException:  # cancelled at shutdown: so are the questions
                _settle(asked, error=None)
                raise
            else:
                _settle(asked, found=found)

    async def read_page(self, topic: str, partition: int, start: int, end: int) -> list[Record]:
        """Up to PAGE_RECORDS committed records of one partition with start <= offset < end."""
        return await until_answered(f"reading {topic}[{partition}] offsets {start}..{end - 1}",
                                    partial(reading.read_range, self.config, topic, partition, start, end,
                                            max_records=PAGE_RECORDS), self.timeout_s)

    async def holds_records(self, topic: str, partition: int, start: int, end: int) -> bool:
        """Whether committed records lie at start <= offset < end (one attempt: the watchdog asks again)."""
        return await asyncio.to_thread(reading.holds_records, self.config, topic, partition, start, end)

    async def watermarks(self, tps: Iterable[P]) -> dict[P, tuple[int, int]]:
        """Each partition, as given ((topic, partition) or Faust's TP), -> (earliest offset, highwater); one
        attempt (a scrape or a check asks again)."""
        tps = list(tps)
        marks = await asyncio.to_thread(reading.watermarks, self.config, [(tp[0], tp[1]) for tp in tps])
        return {tp: marks[(tp[0], tp[1])] for tp in tps}

    async def wait_until_settled(self, topic: str, partitions: list[int], timeout_s: float) -> list[int]:
        """Wait up to `timeout_s` until every transaction open on the partitions now has ended (committed, or
        aborted by its producer, its successor or the broker's timeout): a reader of committed records then
        sees all that was written before. The partitions on which one is still open (none: all settled)."""
        try:
            had, waited = await until_answered(
                f"open transactions on {topic}",
                partial(reading.wait_for_open_transactions, self.config, topic, partitions, timeout_s),
                self.timeout_s)
        except reading.TransactionsStillOpen as exc:
            return exc.partitions
        if had:
            log.info("%s partitions %s: waited %.2fs for a transaction open on them to end", topic, had, waited)
        return []

    async def last_records(self, topic: str, partitions: list[int], timeout_s: float | None = None
                           ) -> dict[int, Record | None]:
        """The last committed record of each partition (None where there is none)."""
        return await until_answered(f"the last records of {topic}",
                                    partial(reading.last_records, self.config, topic, partitions),
                                    self.timeout_s if timeout_s is None else timeout_s)


def _settle(asked: dict[tuple[str, int], list[asyncio.Future]], found: Mapping[tuple[str, int], int] | None = None,
            error: Exception | None = None) -> None:
    """Give every question still waiting its answer from `found`, or `error`; without either, cancel it. (One
    whose asker was cancelled is done already.)"""
    for tp, answers in asked.items():
        for answer in answers:
            if answer.done():
                continue
            if found is not None:
                answer.set_result(found[tp])
            elif error is not None:
                answer.set_exception(error)
            else:
                answer.cancel()


def _named(partitions: list[tuple[str, int]]) -> str:
    return ", ".join(f"{topic}{numbers}" for topic, numbers in reading.by_topic(partitions).items())
