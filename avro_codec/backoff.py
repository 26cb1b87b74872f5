"""Exponential backoff: the delays between attempts at something that may come back.

One schedule for every retry loop of the app (registry look-ups, topic set-up,
outputs the broker refused): the first delay, doubled after each attempt up to
a cap, and optionally a deadline after which the caller gives up.
"""
from __future__ import annotations

import time
from collections.abc import Callable


class Backoff:
    def __init__(self, initial_s: float = 0.5, maximum_s: float = 10.0, timeout_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._delay = initial_s
        self._maximum = maximum_s
        self._clock = clock
        self._deadline = None if timeout_s is None else clock() + timeout_s

    def next_delay(self) -> float | None:
        """How long to wait before the next attempt; None when that attempt would start past the deadline."""
        delay = self._delay
        if self._deadline is not None and self._clock() + delay > self._deadline:
            return None
        self._delay = min(delay * 2, self._maximum)
        return delay
