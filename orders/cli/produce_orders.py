"""`faust -A app produce-orders`: random orders to the orders topic, on confluent-kafka.

The values are encoded by the app's own Avro codec (the same registry client and
schema id as the worker and `faust send`) and sent by a plain confluent-kafka
`Producer`. With `--interval` above 0 (the demo) it prints each order and its
delivery. With `--interval 0` it sends as fast as librdkafka takes them, shows a
progress bar instead, and so serves as a load generator. Both end with one
summary line.
"""
from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import click
from confluent_kafka import Producer
from faust.cli import option

from avro_codec import AvroCodecError

from ..app import app, settings
from ..client_config import confluent_config
from ..kafka import producing
from ..startup import EXIT_CANNOT_START, STARTUP_ERRORS, prepare_topics_and_registry

PRODUCTS = ["Laptop", "Phone", "Tablet", "Monitor", "Keyboard", "Mouse", "Headphones", "Camera"]
DRAIN_TIMEOUT_SECONDS = 30
#: The fast path yields to the event loop (so Ctrl-C is handled) and redraws the bar this often.
FAST_BATCH = 2000

# Throughput settings for --interval 0: big batches, a short wait to fill them, a deep local queue.
FAST_PRODUCER_CONFIG = {"linger.ms": 20, "batch.num.messages": 100_000, "batch.size": 1_000_000,
                        "queue.buffering.max.messages": 1_000_000}


def order_producer(fast: bool) -> Producer:
    return producing.producer(confluent_config(settings), **(FAST_PRODUCER_CONFIG if fast else {}))


def random_order() -> dict:
    # getrandbits, not uuid4: four times cheaper, which shows at a million orders.
    return {"orderId": f"o-{random.getrandbits(48):012x}", "product": random.choice(PRODUCTS),
            "price": round(random.uniform(5, 2000), 2), "quantity": random.randint(1, 3), "currency": "USD"}


def send_order(producer: Producer, topic: str, order: dict, on_delivery: Callable) -> None:
    """Queue one order, keyed by orderId; its value is Confluent-framed Avro of the app's schema."""
    producing.produce(producer, topic, key=order["orderId"], value=app.runtime.codec.encode_fitting(order),
                     on_delivery=on_delivery)


@app.command(
    option("--count", type=click.IntRange(min=1), default=20, show_default=True, help="Orders to send."),
    option("--interval", type=click.FloatRange(min=0), default=2.0, show_default=True,
           help="Seconds between orders; 0 sends as fast as possible, with a progress bar instead of a line "
                "per order."),
)
async def produce_orders(self, count: int, interval: float) -> None:
    """Send random orders to the orders topic, keyed by orderId, and summarize their delivery."""
    topic = settings.orders_topic
    try:
        prepare_topics_and_registry(settings, app.runtime.registry)
        app.runtime.codec.register_schema()  # an outage or a refused schema ends the command here, not mid-way
    except STARTUP_ERRORS as exc:
        print(f"produce-orders cannot start: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CANNOT_START) from None
    except AvroCodecError as exc:
        raise SystemExit(f"produce-orders: cannot encode orders for {topic}: {exc}") from None

    tally = producing.DeliveryTally(echo=self.say if interval else None)
    producer = order_producer(fast=not interval)
    started = time.monotonic()
    try:
        if interval:
            await send_paced(producer, topic, count, interval, tally, self.say)
        else:
            with click.progressbar(length=count, label=f"sending {count} orders to {topic}", show_pos=True,
                                   file=self.stdout) as bar:
                await send_fast(producer, topic, count, tally, bar)
    except asyncio.CancelledError:  # Ctrl-C or SIGTERM: report what was delivered, then stop
        print("produce-orders: interrupted", file=sys.stderr)
    undelivered = producing.drain(producer, DRAIN_TIMEOUT_SECONDS)
    self.say(tally.summary(count, topic, time.monotonic() - started, undelivered))
    if tally.sent < count:
        first = f"; first error: {tally.first_error}" if tally.first_error else ""
        raise SystemExit(f"produce-orders: {count - tally.sent} of {count} orders not delivered{first}")


async def send_paced(producer: Producer, topic: str, count: int, interval: float, tally: producing.DeliveryTally,
                     say: Callable[[str], Any]) -> None:
    """The demo: one order every `interval` seconds, each printed with its delivery."""
    for i in range(count):
        order = random_order()
        say(f"order {json.dumps(order)}")
        send_order(producer, topic, order, tally.on_delivery)
        producer.flush(10)  # print each delivery before the pause, as the demo reads best
        if i < count - 1:
            await asyncio.sleep(interval)


async def send_fast(producer: Producer, topic: str, count: int, tally: producing.DeliveryTally, bar) -> None:
    """As fast as librdkafka takes them; the bar counts delivery reports, not calls to produce."""
    shown = 0

    def advance() -> None:
        nonlocal shown
        bar.update(tally.done - shown)
        shown = tally.done

    for i in range(count):
        send_order(producer, topic, random_order(), tally.on_delivery)
        if i % FAST_BATCH == FAST_BATCH - 1:
            advance()
            await asyncio.sleep(0)
    producing.drain(producer, DRAIN_TIMEOUT_SECONDS, advance)
