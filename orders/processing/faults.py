"""Faults on purpose, for the test that proves the error boundary (FAULT_INJECTION_RATE; never in production).

At each of the named points where applying a record or committing a
partition can be interrupted, `FaultInjector` raises `InjectedFault` with the
given probability: after the state counted an order but before its offset
was marked, after a retry copy or dead letter was queued but before the state
counted it, between resolving a retry copy and recording it, and just before
a commit. The test then checks that every order is still counted once or
dead-lettered.
"""
from __future__ import annotations

import random


class InjectedFault(RuntimeError):
    """Raised on purpose by FaultInjector: an error no rule classifies."""


class FaultInjector:
    def __init__(self, rate: float, rng: random.Random | None = None) -> None:
        self.rate = rate
        self._random = (rng or random.Random()).random
        self.raised = 0

    def __call__(self, point: str) -> None:
        if self._random() < self.rate:
            self.raised += 1
            raise InjectedFault(f"fault injected at {point!r} (FAULT_INJECTION_RATE={self.rate})")
