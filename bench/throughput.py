"""One worker draining a preloaded orders topic: throughput, ceiling, peak memory, changelog writes.

The scenario behind three figures (`throughput`, `memory`, `write-amplification`):
preload N orders into a fresh topic, start one worker, time it from the first
order counted to the last (polling /average/), check the aggregate, read the
worker's peak RSS and the table changelog's length, stop it. `throughput`
then times the ceiling (bench/ceiling.py) over the same topic.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.worker_process import WorkerProcess

from .ceiling import measure_ceiling
from .preload import preload
from .profiling import Profiler
from .run import BenchFailure, BenchRun, WorkerOptions, say
from .watch import cpu_seconds, proc_status, wait_for_orders

MIB = 1024 * 1024


@dataclass
class DrainResult:
    orders: int
    total_micros: int
    first_seen: int  # orders already counted when the bench first saw any
    elapsed_s: float  # from the first poll that saw orders to the first that saw all of them
    cpu_s: float  # the worker's CPU time over that interval
    peak_rss: int
    rss: int
    changelog_records: int

    @property
    def rate(self) -> float:
        """Orders counted per second between the two polls (those counted before the first are left out)."""
        return (self.orders - self.first_seen) / self.elapsed_s

    @property
    def changelog_per_1000(self) -> float:
        return 1000 * self.changelog_records / self.orders


def check_aggregate(summary: dict, count: int, dlq_records: int) -> None:
    """Every order counted once, none retried or dead-lettered; raise BenchFailure otherwise."""
    wrong = []
    if summary["orders"] != count:
        wrong.append(f"orders {summary['orders']} != {count}")
    if summary["dead_letters"] or dlq_records:
        wrong.append(f"dead letters {summary['dead_letters']} (DLQ topic holds {dlq_records})")
    if summary["retries"] or summary["in_retry"]:
        wrong.append(f"retries {summary['retries']}, in retry {summary['in_retry']}")
    if wrong:
        raise BenchFailure(f"wrong aggregate: {'; '.join(wrong)}: {summary}")


def drain(run: BenchRun, count: int, profile: Path | None = None) -> DrainResult:
    """Preload `count` orders, let one worker count them all, check and measure it, stop it."""
    preload(run, run.app_id(), count)
    return count_preloaded(run, count, profile)


def count_preloaded(run: BenchRun, count: int, profile: Path | None = None, label: str = "app",
                    **env: str) -> DrainResult:
    """Let one worker (app id `label`, its own retry and dead-letter topics) count the `count` orders
    preloaded into the run's orders topic; check and measure it, stop it."""
    app_id = run.app_id(label)
    worker = WorkerProcess(run.env(app_id, RETRY_TOPIC=f"{app_id}-retry", DLQ_TOPIC=f"{app_id}-dlq", **env),
                           run.tmp, label)
    profiler = None
    try:
        worker.start_serving()
        profiler = Profiler(worker.pid, profile) if profile else None
        cpu_before = cpu_seconds(worker.pid)
        (first_at, first), (last_at, last) = wait_for_orders(worker, count)
        cpu_s = cpu_seconds(worker.pid) - cpu_before
        peak_rss, rss = proc_status(worker.pid, "VmHWM"), proc_status(worker.pid, "VmRSS")
        if profiler:
            stacks = profiler.finish()
            say(f"profile: {stacks.samples} samples; summary in {profile}, stacks in {profiler.raw_path}")
        worker.stop_cleanly()  # flushes the changelog, so its length below is final
    finally:
        if profiler:
            profiler.stop()
        worker.stop()
    check_aggregate(last, count, run.end_offsets(f"{app_id}-dlq"))
    if last_at <= first_at:
        raise BenchFailure(f"all {count} orders were counted between two polls: too few to time, use more --orders")
    result = DrainResult(orders=last["orders"], total_micros=last["total_price_micros"], first_seen=first["orders"],
                         elapsed_s=last_at - first_at, cpu_s=cpu_s, peak_rss=peak_rss, rss=rss,
                         # Every commit writes one state record and one commit marker to a changelog partition.
                         changelog_records=run.end_offsets(run.changelog_topic(app_id)) // 2)
    say(f"worker: {result.orders:,} orders in {result.elapsed_s:.2f} s (first seen at {result.first_seen:,}), "
        f"{result.rate:,.0f} orders/s, worker CPU {result.cpu_s:.1f} s "
        f"({100 * result.cpu_s / result.elapsed_s:.0f}% of one core)")
    say(f"memory: peak RSS {result.peak_rss / MIB:,.0f} MiB, RSS at the end {result.rss / MIB:,.0f} MiB")
    say(f"changelog: {result.changelog_records:,} state records for {result.orders:,} orders, "
        f"{result.changelog_per_1000:.1f} per 1,000 orders (one per partition per commit; the changelog's "
        f"offsets hold as many transaction markers)")
    return result


def throughput(options: WorkerOptions, count: int, profile: Path | None) -> str:
    with BenchRun("tput", options) as run:
        result = drain(run, count, profile)
        bare = measure_ceiling(run.settings, run.registry(), run.orders_topic, options.partitions)
    say(f"ceiling: {bare.orders:,} orders in {bare.elapsed_s:.2f} s, {bare.rate:,.0f} orders/s "
        f"(bare aiokafka + fastavro + the same arithmetic, one process)")
    if (bare.orders, bare.total_micros, bare.invalid) != (result.orders, result.total_micros, 0):
        raise BenchFailure(f"the ceiling's sums differ from the worker's: {bare.orders} orders, {bare.total_micros} "
                           f"micros, {bare.invalid} invalid vs the worker's {result.orders}, {result.total_micros}")
    return (f"throughput: worker {result.rate:,.0f} orders/s, ceiling {bare.rate:,.0f} orders/s, "
            f"worker at {100 * result.rate / bare.rate:.1f}% of the ceiling ({count:,} orders, "
            f"{options.partitions} partitions, {options.table_store})")


def memory(options: WorkerOptions, count: int) -> str:
    with BenchRun("mem", options) as run:
        result = drain(run, count)
    return f"memory: worker peak RSS {result.peak_rss / MIB:,.0f} MiB after {count:,} orders ({options.table_store})"


def write_amplification(options: WorkerOptions, count: int) -> str:
    with BenchRun("wamp", options) as run:
        result = drain(run, count)
    return (f"write-amplification: {result.changelog_per_1000:.1f} changelog records per 1,000 orders "
            f"({result.changelog_records:,} for {count:,} orders)")
