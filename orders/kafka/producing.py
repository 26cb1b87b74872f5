"""Producing to Kafka outside the partitions' transactions (confluent-kafka): `produce-orders`, the DLQ tools,
the tests. Produce with back-pressure, account for every delivery report, deliver a list and wait for the
broker's answer to each. The one loop that waits out librdkafka's full local queue is `produce`.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Producer

from ..domain.headers import origin_key
from .records import at

#: The largest record the local broker takes (its message.max.bytes); dead letters can be that large.
MAX_MESSAGE_BYTES = 2_097_152
#: The producer gives up on a record after this long and reports it failed; `deliver` waits a little longer,
#: so a record it reports unacknowledged is one the client has given up on, not one still on its way.
DELIVERY_TIMEOUT_S = 60
#: How long `produce` serves delivery reports when librdkafka's local queue is full, before it tries again.
QUEUE_FULL_POLL_SECONDS = 0.05
#: Codes librdkafka gives once a transactional producer is fenced (another producer with its transactional
#: id started) or otherwise fatally broken; produce() reports _FATAL without the fatal flag.
FENCED_OR_FATAL = (KafkaError._FENCED, KafkaError._FATAL, KafkaError.PRODUCER_FENCED,
                   KafkaError.INVALID_PRODUCER_EPOCH)


def error_text(error: Any) -> str:
    """A KafkaError (or a KafkaException carrying one) as one line of text."""
    if hasattr(error, "args") and error.args and isinstance(error.args[0], KafkaError):
        error = error.args[0]
    return error.str() if isinstance(error, KafkaError) else str(error)


def producer(config: Mapping[str, Any], **overrides: Any) -> Producer:
    """An idempotent producer that waits for every in-sync replica, with quiet client logs."""
    return Producer({**config, "enable.idempotence": True, "acks": "all", "message.max.bytes": MAX_MESSAGE_BYTES,
                     "message.timeout.ms": DELIVERY_TIMEOUT_S * 1000, "log_level": 2, **overrides})


def produce(client: Producer, topic: str, *, key: bytes | str | None, value: bytes | None,
            on_delivery: Callable | None = None, headers: Sequence[tuple[str, bytes]] | None = None,
            partition: int | None = None, timestamp_ms: int | None = None,
            wait_s: float = QUEUE_FULL_POLL_SECONDS, attempts: int | None = None) -> None:
    """Queue one record. While librdkafka's local queue is full, serve delivery reports for `wait_s` and try
    again, `attempts` times in all at most (None: until there is room; past them the BufferError is raised)."""
    extra: dict[str, Any] = {}
    if partition is not None:
        extra["partition"] = partition
    if timestamp_ms is not None:
        extra["timestamp"] = timestamp_ms
    if on_delivery is not None:
        extra["on_delivery"] = on_delivery
    tries = 0
    while True:
        try:
            client.produce(topic, key=key, value=value, headers=headers, **extra)
            break
        except BufferError:
            tries += 1
            if attempts is not None and tries >= attempts:
                raise
            client.poll(wait_s)
    client.poll(0)


def drain(client: Producer, timeout_s: float, progress: Callable[[], Any] = lambda: None) -> int:
    """Wait up to `timeout_s` for every queued record's delivery report; return how many are still unreported."""
    deadline = time.monotonic() + timeout_s
    remaining = len(client)
    while remaining and time.monotonic() < deadline:
        remaining = client.flush(min(0.5, max(0.0, deadline - time.monotonic())))
        progress()
    return remaining


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
                self.echo(f"sent {msg.key().decode()} -> {at(msg.topic(), msg.partition(), msg.offset())}")

    def summary(self, count: int, topic: str, elapsed_s: float, undelivered: int) -> str:
        """One line a person or a benchmark script can read."""
        rate = self.sent / elapsed_s if elapsed_s > 0 else 0.0
        return (f"sent {self.sent} of {count} orders to {topic} in {elapsed_s:.2f} s, {rate:,.0f} orders/s; "
                f"failed {self.failed}, undelivered {undelivered}")


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    #: None: the client's partitioner picks one from the key
    partition: int | None = None


@dataclass(frozen=True)
class Delivery:
    """The broker's answer for one record: where it landed, or why it did not."""

    landed_at: str | None = None
    error: str | None = None


def deliver(client: Producer, records: Sequence[Outgoing], timeout_s: float = DELIVERY_TIMEOUT_S + 30
            ) -> list[Delivery]:
    """Send `records` and wait for the broker's acknowledgement of each; one Delivery per record, in order."""
    results: list[Delivery | None] = [None] * len(records)

    def report(index: int):
        def on_delivery(err, msg) -> None:
            results[index] = Delivery(error=str(err)) if err is not None else \
                Delivery(landed_at=origin_key(msg.topic(), msg.partition(), msg.offset()))
        return on_delivery

    for index, record in enumerate(records):
        produce(client, record.topic, key=record.key, value=record.value, headers=list(record.headers),
                partition=record.partition, on_delivery=report(index))
    client.flush(timeout_s)
    return [result or Delivery(error=f"not acknowledged within {timeout_s:.0f}s") for result in results]
