"""The worker's latency at a few steady rates; then, side by side over one preloaded topic, the worker on the
default settings (the fast path), the worker on Faust's stock path, the bare ceiling (the median of three
reads) and the seed's plain design.

The four consumers read the same N orders, one after the other (never at the
same time: they share two cores with the broker), each from the beginning,
each timed from its first order to its last; every one must arrive at the
same count and price sum. The ratios are to the ceiling and to the seed's
design, from this one run.
"""
from __future__ import annotations

from .ceiling import measure_ceiling
from .latency import latency
from .preload import preload
from .run import BenchFailure, BenchRun, WorkerOptions, say
from .seed_design import measure_seed_design
from .throughput import count_preloaded

#: The ceiling moves from read to read on a shared machine: the median of this many reads.
CEILING_READS = 3


def compare(options: WorkerOptions, count: int, rates: list[float], seconds: float, warmup: float) -> str:
    # Latency first: the seed's design, measured last, leaves the broker a flood of offset commits to answer.
    latencies = [latency(options, rate, seconds, warmup, drain_timeout=120) for rate in rates]
    with BenchRun("cmp", options) as run:
        preload(run, run.app_id(), count)
        say("1/4: the worker with the default settings (the fast path)")
        fast = count_preloaded(run, count, label="fast")
        say("2/4: the worker, Faust's stock path (FAST_PATH=false)")
        stock = count_preloaded(run, count, label="stock", FAST_PATH="false")
        say(f"3/4: the ceiling: bare aiokafka getmany + fastavro + the same arithmetic, {CEILING_READS} reads")
        reads = [measure_ceiling(run.settings, run.registry(), run.orders_topic, options.partitions)
                 for _ in range(CEILING_READS)]
        say("ceiling reads: " + ", ".join(f"{read.rate:,.0f}/s" for read in reads))
        bare = sorted(reads, key=lambda read: read.rate)[CEILING_READS // 2]
        say("4/4: the seed's design: DeserializingConsumer + AvroDeserializer, a message at a time, async commits")
        seed = measure_seed_design(run, count)
    sums = {"fast path": (fast.orders, fast.total_micros), "stock path": (stock.orders, stock.total_micros),
            "seed design": (seed.orders, seed.total_micros), "ceiling": (bare.orders, bare.total_micros)}
    if len(set(sums.values())) != 1:
        raise BenchFailure(f"the consumers disagree on the orders and their sum: {sums}")

    rows = [("worker, default settings", fast.rate), ("worker, Faust's stock path", stock.rate),
            ("seed's design", seed.rate), (f"bare ceiling (median of {CEILING_READS})", bare.rate)]
    say(f"{'consumer of the same ' + format(count, ',') + ' orders':<40} {'orders/s':>10} {'of ceiling':>11} "
        f"{'x seed':>7}")
    for name, rate in rows:
        say(f"{name:<40} {rate:>10,.0f} {rate / bare.rate:>11.2f} {rate / seed.rate:>7.2f}")

    return (f"compare: default worker {fast.rate:,.0f} orders/s ({fast.rate / bare.rate:.2f} of the ceiling, "
            f"{fast.rate / seed.rate:.1f}x the seed's design), stock path {stock.rate:,.0f}/s, seed's design "
            f"{seed.rate:,.0f}/s, ceiling {bare.rate:,.0f}/s ({count:,} orders, {options.partitions} partitions) | "
            + " | ".join(latencies))
