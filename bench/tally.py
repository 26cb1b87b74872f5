"""What a reader that is not the worker (the ceiling, Kafka Streams, the seed's design) reports for one drain."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Tally:
    """Orders counted, their exact price sum in micros, and the time from the first order to the last."""

    orders: int
    total_micros: int
    elapsed_s: float
    #: records that decoded but broke the domain rules (the ceiling counts them; the others fail on them)
    invalid: int = 0

    @property
    def rate(self) -> float:
        return self.orders / self.elapsed_s if self.elapsed_s > 0 else float("inf")
