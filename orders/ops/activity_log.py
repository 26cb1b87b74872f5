"""What the worker tells its console: a line per event at demo rates, summaries at high rates.

Each processed order, retry and dead letter gets its own readable line while
fewer than `lines_per_second` lines were written in the current second
(`record` says whether); events beyond that are only counted, and `summary()`
reports them (with the totals) once per summary interval. At 20 orders a second the console reads like the
demo; at 50,000 it stays readable and logging costs almost nothing.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from ..domain.partition_state import Aggregate

PROCESSED = "processed"
RETRIED = "retried"
DEAD_LETTERED = "dead-lettered"


class ActivityLog:
    def __init__(self, lines_per_second: int, clock: Callable[[], float] = time.time) -> None:
        # Wall-clock seconds, as the log's timestamps count them: with another clock a second
        # of the log could hold the share of two.
        self._lines_per_second = lines_per_second
        self._clock = clock
        self._second = -1
        self._lines_this_second = 0
        self._since = clock()
        self._counts = {PROCESSED: 0, RETRIED: 0, DEAD_LETTERED: 0}
        self._left_out = 0

    def record(self, kind: str) -> bool:
        """Count an event of `kind`; True if it gets a line of its own (this second's share is not used up)."""
        self._counts[kind] += 1
        second = int(self._clock())
        if second != self._second:
            self._second, self._lines_this_second = second, 0
        if self._lines_this_second < self._lines_per_second:
            self._lines_this_second += 1
            return True
        self._left_out += 1
        return False

    def record_without_lines(self, kind: str, events: int) -> None:
        """Count `events` of `kind` that get no line of their own (the caller found this second's share
        used up by `record`), without asking the clock for each."""
        self._counts[kind] += events
        self._left_out += events

    def summary(self, totals: Aggregate) -> str | None:
        """The line for the interval since the last summary, or None when every event had its own line."""
        now = self._clock()
        elapsed, self._since = now - self._since, now
        counts, left_out = self._counts, self._left_out
        self._counts = dict.fromkeys(counts, 0)
        self._left_out = 0
        if not left_out:
            return None
        rate = counts[PROCESSED] / elapsed if elapsed > 0 else 0.0
        return (f"last {elapsed:.1f}s: {counts[PROCESSED]:,} processed ({rate:,.0f}/s), "
                f"{counts[RETRIED]:,} retried, {counts[DEAD_LETTERED]:,} dead-lettered "
                f"({left_out:,} not logged one by one) | orders={totals.orders:,} "
                f"average={totals.average:.2f} dead_letters={totals.dead_letters:,}")
