"""End-to-end latency at a steady rate: from an order's produce time to the aggregate update.

A worker runs on fresh topics; one order per partition primes it (so it is
assigned and consuming before the clock starts). A confluent-kafka producer
then sends pre-encoded orders at `rate` per second, paced by the monotonic
clock, for `warmup + seconds`. The records carry CreateTime timestamps, which
the worker's `orders_processing_latency_seconds` histogram measures from.
The histogram is scraped from /metrics once the worker has counted the priming
and warm-up orders (the scrape's own `orders_processed_total` says so), and
again once it has counted every order; the quantiles come from the difference,
which covers the orders counted after the warm-up ones. A worker that falls behind
by the whole measured window (two cores shared with other work) counts the
warm-up orders in the same commit as the last measured ones; then there is no
difference to take, and the figures cover every order after the priming ones,
warm-up included, and say so.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Producer

from avro_codec import AvroRecordCodec, load_schema
from bench.worker_process import ROOT, WorkerProcess
from orders.domain.order import Order
from orders.kafka import producing
from orders.kafka.producing import DeliveryTally, drain, produce

from .histogram import buckets_from_text, delta, overflowed, quantile, sample_value
from .run import BenchFailure, BenchRun, WorkerOptions, say

LATENCY_METRIC = "orders_processing_latency_seconds"
PROCESSED_METRIC = "orders_processed_total"
SCRAPE_INTERVAL_S = 0.1
QUANTILES = (0.5, 0.95, 0.99)
#: Low-latency producer: batches wait at most 1 ms (librdkafka's default is 5 ms, which would add to every figure).
PRODUCER_CONFIG = {"linger.ms": 1}
DELIVERY_TIMEOUT_S = 60
#: The pacer wakes at most once a millisecond and sends what is due: woken for each order (every 50 us at
#: 20,000/s) it took 40% of a core of the two the worker and the broker share.
PACE_TICK_S = 0.001
#: The worker "kept up" when it had counted everything within this long after the last order was sent.
KEPT_UP_WITHIN_S = 1.0


def bench_orders(count: int, prefix: str) -> list[dict]:
    """Orders with prices exactly representable in Avro's 32-bit float, so the expected sum is exact."""
    return [{"orderId": f"{prefix}-{i}", "product": f"product-{i % 8}", "price": (i % 4000) * 0.25 + 0.5}
            for i in range(count)]


def expected_micros(orders: list[dict]) -> int:
    return sum(Order(o["orderId"], o["product"], o["price"]).price_micros for o in orders)


@dataclass(frozen=True)
class LatencyResult:
    """One latency run: the rate asked and achieved, the quantiles of produce -> aggregate, whether it kept up."""

    rate: float
    achieved: float
    #: quantile -> (seconds, True when it lies past the histogram's last bound: a lower bound)
    quantiles: dict[float, tuple[float, bool]]
    measured: int
    kept_up: bool
    #: True when the warm-up orders could not be told apart from the measured ones (see the module's docstring)
    warmup_included: bool = False

    def quantile_text(self, q: float) -> str:
        return _format(*self.quantiles[q])

    def line(self) -> str:
        quantiles = ", ".join(f"p{round(q * 100)} {self.quantile_text(q)}" for q in QUANTILES)
        return (f"latency at {self.rate:,.0f} orders/s (achieved {self.achieved:,.0f}/s): {quantiles} "
                f"over {self.measured:,} orders; kept up: {'yes' if self.kept_up else 'no'}"
                + ("; warm-up included" if self.warmup_included else ""))


def latency_table(results: list[LatencyResult], label: Callable[[int, LatencyResult], str]) -> None:
    """Print one row per run: its label, p50, p95, p99 and whether it kept up."""
    say(f"{'latency, produce -> aggregate':<32} {'p50':>10} {'p95':>10} {'p99':>10} {'kept up':>8}")
    for index, result in enumerate(results):
        say(f"{label(index, result):<32} " + " ".join(f"{result.quantile_text(q):>10}" for q in QUANTILES)
            + f" {'yes' if result.kept_up else 'NO':>8}")


@dataclass
class Pacing:
    produced: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        return self.produced / self.elapsed_s


def send_paced(producer: Producer, topic: str, records: list[tuple[bytes, bytes]], rate: float,
               tally: DeliveryTally, warmup_s: float, on_warmup_end: Callable[[], None]) -> Pacing:
    """Send record i at start + i/rate (never ahead of schedule); call `on_warmup_end` once, when it ends."""
    start = time.monotonic()
    warmup_end = start + warmup_s
    hooked = False
    sent = 0
    while sent < len(records):
        now = time.monotonic()
        due = min(len(records), int((now - start) * rate) + 1)
        while sent < due:
            key, value = records[sent]
            produce(producer, topic, key=key, value=value, on_delivery=tally.on_delivery)
            sent += 1
        if not hooked and now >= warmup_end:  # every warm-up order is sent by now
            on_warmup_end()
            hooked = True
        time.sleep(max(PACE_TICK_S, start + sent / rate - time.monotonic()))
    elapsed = time.monotonic() - start
    if not hooked:
        on_warmup_end()
    return Pacing(sent, elapsed)


def scrape_when_counted(worker: WorkerProcess, target: int, timeout_s: float) -> str:
    """The first /metrics scrape in which the worker has counted at least `target` orders."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            text = worker.metrics_text()
            if sample_value(text, PROCESSED_METRIC) >= target:
                return text
        except OSError:  # a busy worker may time out one scrape; the deadline decides
            pass
        if time.monotonic() > deadline:
            raise BenchFailure(f"the worker had not counted the {target:,} warm-up orders after {timeout_s:.0f} s")
        time.sleep(SCRAPE_INTERVAL_S)


def latency_runs(options: WorkerOptions, rate: float, seconds: float, warmup: float, drain_timeout: float,
                 runs: int) -> str:
    """`python -m bench latency`: `runs` runs at one rate, each on fresh topics and a fresh worker; every run is
    reported, not the best."""
    results = []
    for number in range(1, runs + 1):
        if runs > 1:
            say(f"run {number} of {runs}")
        results.append(latency(options, rate, seconds, warmup, drain_timeout))
    if runs == 1:
        return results[0].line()
    latency_table(results, lambda index, _result: f"run {index + 1} at {rate:,.0f} orders/s")
    p99s = ", ".join(result.quantile_text(0.99) for result in results)
    kept_up = sum(result.kept_up for result in results)
    return (f"latency at {rate:,.0f} orders/s, {runs} runs: p99 {p99s}; worst p99 "
            f"{max(results, key=lambda r: r.quantiles[0.99]).quantile_text(0.99)}; kept up in {kept_up} of {runs}")


def latency(options: WorkerOptions, rate: float, seconds: float, warmup: float,
            drain_timeout: float) -> LatencyResult:
    with BenchRun("lat", options) as run:
        app_id = run.app_id()
        worker = WorkerProcess(run.env(app_id), run.tmp)
        try:
            worker.start_serving()
            return _measure(run, worker, rate, seconds, warmup, drain_timeout)
        finally:
            worker.stop()


def _prime(run: BenchRun, worker: WorkerProcess, producer: Producer, codec: AvroRecordCodec) -> list[dict]:
    """One order to each partition, explicitly; wait until the worker has counted them all."""
    tally = DeliveryTally()
    primers = bench_orders(run.options.partitions, "prime")
    for partition, order in enumerate(primers):
        producer.produce(run.orders_topic, key=order["orderId"], value=codec.encode(order), partition=partition,
                         on_delivery=tally.on_delivery)
    if drain(producer, DELIVERY_TIMEOUT_S) or tally.failed:
        raise BenchFailure(f"priming orders not delivered: {tally.first_error}")
    worker.wait_for(lambda s: s["orders"] == len(primers), 120, "the priming orders")
    return primers


class WarmupScrape(threading.Thread):
    """Scrapes /metrics, from the end of the warm-up on, until the worker has counted `target` orders."""

    def __init__(self, worker: WorkerProcess, target: int, timeout_s: float) -> None:
        super().__init__(daemon=True)
        self.worker, self.target, self.timeout_s = worker, target, timeout_s
        self.text: str | None = None
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.text = scrape_when_counted(self.worker, self.target, self.timeout_s)
        except Exception as exc:  # reported by the main thread, in result()
            self.error = exc

    def result(self) -> str:
        self.join()
        if self.text is None:
            raise BenchFailure(f"scraping /metrics after the warm-up failed: {self.error!r}")
        return self.text


def measured_buckets(primed_text: str, warmup_text: str, final_text: str) -> tuple[dict[float, float], bool]:
    """The latency histogram of the orders counted after the warm-up ones, and False; or, when the warm-up
    scrape already held every order, that of every order counted after the priming ones, and True."""
    final = buckets_from_text(final_text, LATENCY_METRIC)
    after_warmup = delta(buckets_from_text(warmup_text, LATENCY_METRIC), final)
    if after_warmup[math.inf]:
        return after_warmup, False
    return delta(buckets_from_text(primed_text, LATENCY_METRIC), final), True


def _measure(run: BenchRun, worker: WorkerProcess, rate: float, seconds: float, warmup: float,
             drain_timeout: float) -> LatencyResult:
    codec = AvroRecordCodec(run.registry(), load_schema(ROOT / "schemas" / "order-v2.avsc"),
                            subject=f"{run.orders_topic}-value")
    producer = producing.producer(run.kafka_config(), **PRODUCER_CONFIG)
    primers = _prime(run, worker, producer, codec)
    primed_text = scrape_when_counted(worker, len(primers), 60)

    orders = bench_orders(int(rate * (warmup + seconds)), "lat")
    records = [(order["orderId"].encode(), codec.encode(order)) for order in orders]
    total = len(primers) + len(records)
    say(f"sending {len(records):,} orders at {rate:,.0f}/s: {warmup:g} s warm-up, then {seconds:g} s measured")
    before = WarmupScrape(worker, len(primers) + int(rate * warmup), seconds + drain_timeout)
    tally = DeliveryTally()
    pacing = send_paced(producer, run.orders_topic, records, rate, tally, warmup, before.start)
    sent_at = time.monotonic()
    lag_at_end = total - (worker.summary() or {"orders": 0})["orders"]
    undelivered = drain(producer, DELIVERY_TIMEOUT_S)
    if undelivered or tally.failed:
        raise BenchFailure(f"{undelivered} orders undelivered, {tally.failed} failed: {tally.first_error}")

    # All counted, and all committed: the metrics count an order once its transaction has committed.
    drained_at, summary = worker.wait_for_timed(
        lambda s: s["orders"] + s["dead_letters"] >= total and s["uncommitted"] == 0, drain_timeout,
        f"all {total:,} orders counted")
    before_text, after_text = before.result(), worker.metrics_text()
    expected = (total, expected_micros(primers + orders), 0)
    if (summary["orders"], summary["total_price_micros"], summary["dead_letters"]) != expected:
        raise BenchFailure(f"wrong aggregate: expected {total} orders, {expected[1]} micros, no dead letters; "
                           f"got {summary}")
    buckets, warmup_included = measured_buckets(primed_text, before_text, after_text)
    measured = int(buckets[math.inf])
    if not measured:
        raise BenchFailure("no order was counted after the priming ones: nothing to measure")

    measured_rate = (len(records) - rate * warmup) / (pacing.elapsed_s - warmup)
    drain_s = drained_at - sent_at
    say(f"produced {pacing.produced:,} orders in {pacing.elapsed_s:.2f} s: {pacing.rate:,.0f}/s overall, "
        f"{measured_rate:,.0f}/s after the warm-up")
    counted_before = sample_value(primed_text if warmup_included else before_text, PROCESSED_METRIC)
    say(f"worker: lag {max(0, lag_at_end):,} orders when the last was sent, all counted {drain_s:.2f} s later; "
        f"{measured:,} orders in the measured histogram (those counted after the first {counted_before:,.0f})")
    if warmup_included:
        say("the worker counted the warm-up orders in the same commit as the last measured ones (it fell behind "
            "by the whole measured window): the figures cover the warm-up orders too")
    say("histogram of the measured orders (upper bound: orders): " + _distribution(buckets))
    result = LatencyResult(rate, measured_rate, {q: (quantile(q, buckets), overflowed(q, buckets)) for q in QUANTILES},
                           measured, drain_s <= KEPT_UP_WITHIN_S, warmup_included)
    say(result.line())
    return result


def _distribution(buckets: dict[float, float]) -> str:
    """Non-empty buckets as `le: count`, counts per bucket (not cumulative)."""
    parts, below = [], 0.0
    for upper in sorted(buckets):
        count = buckets[upper] - below
        below = buckets[upper]
        if count:
            parts.append(f"{'+Inf' if upper == math.inf else _format(upper, False)}: {count:,.0f}")
    return ", ".join(parts) or "none"


def _format(seconds: float, is_lower_bound: bool) -> str:
    text = f"{seconds * 1000:,.1f} ms" if seconds < 1 else f"{seconds:,.2f} s"
    return f">{text}" if is_lower_bound else text
