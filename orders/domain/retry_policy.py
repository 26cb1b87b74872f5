"""The retry policy: how often an order is tried, how long a retry copy waits, and which copies count.

Everything that decides about retries asks this object: the handler (retry
or dead-letter, the headers' not-before), the partition tasks (when a copy
is due) and the README documents the same rules.
"""
from __future__ import annotations

from dataclasses import dataclass

from .headers import RetryCopy


@dataclass(frozen=True)
class RetryPolicy:
    #: Retries after the first attempt before an order is dead-lettered (`retries-exhausted`).
    max_retries: int
    #: Time between a failed attempt and the next one.
    delay_s: float
    #: How far past `delay_s` a copy's wait may reach before it is cut short: a copy whose not-before lies
    #: further ahead was not written with this policy (a clock running ahead, an older, longer delay).
    not_before_allowance_s: float
    #: Only copies this app sent are retried; others are orphans.
    app_id: str
    #: Where originals live: a copy names its original's coordinates on this topic.
    orders_topic: str

    @property
    def attempts(self) -> int:
        """Attempts an order gets at most: the first and its retries."""
        return self.max_retries + 1

    def retries_left(self, attempt: int) -> bool:
        """Whether a failed attempt number `attempt` (1 = the first) is followed by another one."""
        return attempt <= self.max_retries

    def not_before_ms(self, failed_at_ms: int) -> int:
        """The x-not-before-ms of the copy written for an attempt that failed at `failed_at_ms`."""
        return failed_at_ms + int(self.delay_s * 1000)

    def longest_wait_ms(self) -> int:
        """The longest a copy waits after it was written (or, at most, after this worker first saw it)."""
        return int((self.delay_s + self.not_before_allowance_s) * 1000)

    def due_at_ms(self, copy: RetryCopy, written_ms: int | None, first_seen_ms: int) -> int:
        """Epoch ms from which the copy may be tried: its not-before, but never later than what this
        policy would have set from the copy's own timestamp (`written_ms`), nor longer after this worker
        first saw it (`first_seen_ms`) than the policy's longest wait, whatever clock wrote it."""
        latest = first_seen_ms + self.longest_wait_ms()
        if written_ms is not None and written_ms > 0:
            latest = min(latest, written_ms + self.longest_wait_ms())
        return min(copy.attempt.not_before_ms, latest)

    def orphan_reason(self, copy: RetryCopy, partition: int, retry_seq_sent: int) -> str | None:
        """Why partition `partition`, which has sent `retry_seq_sent` copies, cannot have sent `copy`;
        None when it can."""
        if copy.seq is None:
            return "no x-retry-seq header: written by hand or by an older version of the app"
        if copy.app_id != self.app_id:
            return f"sent by app {copy.app_id!r}, not {self.app_id!r}"
        if (copy.attempt.topic, copy.attempt.partition) != (self.orders_topic, partition):
            return f"its original {copy.attempt.origin_key} is not on partition {partition} of {self.orders_topic}"
        if copy.seq > retry_seq_sent:
            return f"copy {copy.seq} was never sent: partition {partition} sent {retry_seq_sent}"
        return None
