"""Exponential backoff: the delays between attempts at something that may come back.

One schedule for every retry loop of the app (registry look-ups, topic
set-up, broker reads, commits, a partition recovering from an error): the
first delay, doubled after each attempt up to a cap, spread by a random
`jitter` (a fraction of the delay either way, 0.2 by default, so several
workers do not ask an outside service in lockstep), and optionally a
deadline after which the caller gives up.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable

#: How far each delay is spread, either way, by default.
DEFAULT_JITTER = 0.2


class Backoff:
    def __init__(self, initial_s: float = 0.5, maximum_s: float = 10.0, timeout_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic, jitter: float = DEFAULT_JITTER,
                 rng: Callable[[], float] = random.random) -> None:
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self._delay = initial_s
        self._maximum = maximum_s
        self._clock = clock
        self._jitter = jitter
        self._rng = rng
        self._deadline = None if timeout_s is None else clock() + timeout_s

    def next_delay(self) -> float | None:
        """How long to wait before the next attempt; None when that attempt would start past the deadline."""
        delay = self._delay
        if self._jitter:
            delay *= 1.0 - self._jitter + 2.0 * self._jitter * self._rng()
        if self._deadline is not None and self._clock() + delay > self._deadline:
            return None
        self._delay = min(self._delay * 2, self._maximum)
        return delay
