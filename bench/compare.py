"""The worker's latency at a few steady rates; then, side by side over one preloaded topic: the worker with the
default settings, the worker on Faust's stock path, the bare ceiling (the median of three reads), Kafka Streams
(a per-partition aggregate, and a global one through a repartition topic) and the seed's plain design.

The consumers read the same N orders, one after the other (never at the
same time: they share two cores with the broker), each from the beginning,
each timed from its first order to its last; every one must arrive at the
same count and price sum. The ratios are to the ceiling, to Kafka Streams'
per-partition aggregate and to the seed's design, from this one run.
"""
from __future__ import annotations

from .ceiling import measure_ceiling
from .kafka_streams import ensure_jar, measure_kafka_streams
from .latency import latency, latency_table
from .preload import preload
from .run import BenchFailure, BenchRun, WorkerOptions, say
from .seed_design import measure_seed_design
from .throughput import count_preloaded

#: The ceiling moves from read to read on a shared machine: the median of this many reads.
CEILING_READS = 3


def compare(options: WorkerOptions, count: int, rates: list[float], seconds: float, warmup: float) -> str:
    ensure_jar()  # a Maven build, when one is needed, before anything is measured
    # Latency first: the seed's design, measured last, leaves the broker a flood of offset commits to answer.
    latencies = [latency(options, rate, seconds, warmup, drain_timeout=120) for rate in rates]
    steps = 6
    with BenchRun("cmp", options) as run:
        preload(run, run.app_id(), count)
        say(f"1/{steps}: the worker with the default settings (the fast path)")
        fast = count_preloaded(run, count, label="fast")
        say(f"2/{steps}: the worker, Faust's stock path (FAST_PATH=false)")
        stock = count_preloaded(run, count, label="stock", FAST_PATH="false")
        say(f"3/{steps}: the ceiling: bare aiokafka getmany + fastavro + the same arithmetic, {CEILING_READS} reads")
        reads = [measure_ceiling(run.settings, run.registry(), run.orders_topic, options.partitions)
                 for _ in range(CEILING_READS)]
        say("ceiling reads: " + ", ".join(f"{read.rate:,.0f}/s" for read in reads))
        bare = sorted(reads, key=lambda read: read.rate)[CEILING_READS // 2]
        say(f"4/{steps}: Kafka Streams 4.1.1, exactly_once_v2, one stream thread: a per-partition aggregate")
        per_partition = measure_kafka_streams(run, count, "per-partition")
        say(f"kafka streams per-partition: {per_partition.rate:,.0f} orders/s")
        say(f"5/{steps}: Kafka Streams, the same, a global aggregate through a repartition topic")
        global_ = measure_kafka_streams(run, count, "global")
        say(f"kafka streams global: {global_.rate:,.0f} orders/s")
        say(f"6/{steps}: the seed's design: DeserializingConsumer + AvroDeserializer, a message at a time, "
            f"async commits")
        seed = measure_seed_design(run, count)
    results = {"default worker": fast, "stock path": stock, "ceiling": bare, "Kafka Streams per-partition":
               per_partition, "Kafka Streams global": global_, "seed design": seed}
    sums = {name: (result.orders, result.total_micros) for name, result in results.items()}
    if len(set(sums.values())) != 1:
        raise BenchFailure(f"the consumers disagree on the orders and their sum: {sums}")

    rows = [("worker, default settings", fast.rate), ("worker, Faust's stock path", stock.rate),
            ("Kafka Streams, per-partition aggregate", per_partition.rate),
            ("Kafka Streams, global (repartition)", global_.rate),
            ("seed's design", seed.rate), (f"bare ceiling (median of {CEILING_READS})", bare.rate)]
    say(f"{'consumer of the same ' + format(count, ',') + ' orders':<40} {'orders/s':>10} {'of ceiling':>11} "
        f"{'x KStreams':>11} {'x seed':>7}")
    for name, rate in rows:
        say(f"{name:<40} {rate:>10,.0f} {rate / bare.rate:>11.2f} {rate / per_partition.rate:>11.2f} "
            f"{rate / seed.rate:>7.2f}")
    latency_table(latencies, lambda _index, result: f"at {result.rate:,.0f} orders/s")

    return (f"compare: default worker {fast.rate:,.0f} orders/s ({fast.rate / bare.rate:.2f} of the ceiling, "
            f"{fast.rate / per_partition.rate:.2f} of Kafka Streams per-partition, {fast.rate / seed.rate:.1f}x the "
            f"seed's design), stock path {stock.rate:,.0f}/s, Kafka Streams per-partition {per_partition.rate:,.0f}/s, "
            f"global {global_.rate:,.0f}/s, seed's design {seed.rate:,.0f}/s, ceiling {bare.rate:,.0f}/s "
            f"({count:,} orders, {options.partitions} partitions) | "
            + " | ".join(result.line() for result in latencies))
