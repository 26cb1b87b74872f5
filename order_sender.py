"""Sending many records through a confluent-kafka producer and accounting for every one.

Kept apart from the `produce-orders` command so the accounting and the back-pressure
handling can be tested with a fake producer.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

#: How long `produce` waits for delivery reports when librdkafka's local queue is full.
QUEUE_FULL_POLL_SECONDS = 0.05


@dataclass
class DeliveryTally:
    """Counts the broker's delivery reports; `echo`, when given, is told about each one."""

    echo: Callable[[str], Any] | None = None
    sent: int = 0
    failed: int = 0
    first_error: str = ""

    @property
    def done(self) -> int:
        return self.sent + self.failed

    def on_delivery(self, err, msg) -> None:
        if err is not None:
            self.failed += 1
            self.first_error = self.first_error or str(err)
            if self.echo:
                self.echo(f"delivery failed: {err}")
        else:
            self.sent += 1
            if self.echo:
                self.echo(f"sent {msg.key().decode()} -> {msg.topic()}[{msg.partition()}]@{msg.offset()}")

    def summary(self, count: int, topic: str, elapsed_s: float, undelivered: int) -> str:
        """One line a person or a benchmark script can read."""
        rate = self.sent / elapsed_s if elapsed_s > 0 else 0.0
        return (f"sent {self.sent} of {count} orders to {topic} in {elapsed_s:.2f} s, {rate:,.0f} orders/s; "
                f"failed {self.failed}, undelivered {undelivered}")


def produce(producer, topic: str, key: str, value: Any, on_delivery: Callable) -> None:
    """Queue one record; when librdkafka's local queue is full, serve delivery reports until there is room."""
    while True:
        try:
            producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
            break
        except BufferError:
            producer.poll(QUEUE_FULL_POLL_SECONDS)
    producer.poll(0)


def drain(producer, timeout_s: float, progress: Callable[[], Any] = lambda: None) -> int:
    """Wait up to `timeout_s` for every queued record's delivery report; return how many are still unreported."""
    deadline = time.monotonic() + timeout_s
    remaining = len(producer)
    while remaining and time.monotonic() < deadline:
        remaining = producer.flush(min(0.5, max(0.0, deadline - time.monotonic())))
        progress()
    return remaining
