"""What owning many partitions costs one worker: drain rate, memory, threads, connections, a rebalance's stall.

For each partition count P, on its own topics (a BenchRun each):

1. preload N orders into a fresh orders topic with P partitions; read them
   once with the bare consumer of `bench/ceiling.py` (the same ceiling as
   `throughput`: aiokafka and fastavro, no Faust), which gives what reading P
   partitions costs aiokafka itself; then let one worker A count them, timed
   as `count_preloaded` (bench/throughput.py) does;
   A's threads (`Threads:` of /proc/<pid>/status) are sampled every 50 ms from
   a background thread for its whole life; its peak RSS (VmHWM), threads and
   established TCP connections are read when the drain ends;
2. a paced producer sends orders at a steady rate to the same topic; once A
   counts them, a second worker B (same APP_ID: it joins A's consumer group)
   starts, and both workers' /average/ (the group's aggregate) and
   /partition-stats/ (each worker's own partitions) are polled every 50 ms:
   the longest interval from B's start on in which the counted total did not
   advance is the rebalance's stall;
3. the producer stops, both workers count everything, the aggregate must be
   exactly every order sent (count and price micros), and both must stop
   cleanly (exit 0).
"""
from __future__ import annotations

import csv
import os
import shutil
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from avro_codec import AvroRecordCodec, load_schema
from bench.worker_process import ROOT, START_TIMEOUT_S, WorkerProcess
from orders.kafka import producing
from orders.kafka.producing import DeliveryTally, produce

from .ceiling import measure_ceiling
from .latency import DELIVERY_TIMEOUT_S, PRODUCER_CONFIG, expected_micros
from .preload import preload
from .run import BenchFailure, BenchRun, WorkerOptions, say
from .throughput import MIB, check_aggregate
from .watch import STALL_TIMEOUT_S, cpu_seconds, proc_status, wait_for_orders

DEFAULT_PARTITIONS = [6, 48, 192]
#: How often the threads of a worker are read, and both workers' web views asked during the rebalance.
SAMPLE_INTERVAL_S = 0.05
#: How long the bench keeps watching after the group counts again with B owning partitions: a second
#: rebalance (or a late stall) shows up in this window.
SETTLE_S = 5.0
#: The group must count again, with B owning partitions, within this long after B's start.
REBALANCE_TIMEOUT_S = STALL_TIMEOUT_S
#: Both workers must have counted every order this long after the producer stopped.
FINAL_DRAIN_TIMEOUT_S = 120


# -- what the bench reads off a worker process ------------------------------------------------------------

def threads(pid: int) -> int:
    """`Threads:` of /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise BenchFailure(f"/proc/{pid}/status has no Threads")


@dataclass
class Connections:
    """A process's sockets: all socket fds, and its established TCP connections by remote port."""

    sockets: int
    tcp_by_port: Counter

    @property
    def tcp(self) -> int:
        return sum(self.tcp_by_port.values())

    def line(self) -> str:
        ports = ", ".join(f"port {port}: {n}" for port, n in self.tcp_by_port.most_common())
        return f"{self.tcp} established TCP ({ports}); {self.sockets} socket fds in all"


def connections(pid: int) -> Connections:
    """The socket inodes among /proc/<pid>/fd, matched against /proc/<pid>/net/tcp and tcp6 (the process's
    network namespace: the broker's side of a local connection is listed there too, hence the inodes);
    established (state 01) entries counted by remote port."""
    inodes = set()
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    by_port: Counter = Counter()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if inode in inodes and state == "01":
                by_port[int(remote.rsplit(":", 1)[1], 16)] += 1
    return Connections(len(inodes), by_port)


class ThreadSampler(threading.Thread):
    """Reads a process's thread count every SAMPLE_INTERVAL_S until it exits or `stop()` is called."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True, name=f"threads-{pid}")
        self.pid = pid
        self.peak = 0
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                count = threads(self.pid)
            except (OSError, BenchFailure):  # the process is gone (or a zombie without a status)
                return
            self.peak = max(self.peak, count)
            self.samples += 1
            self._halt.wait(SAMPLE_INTERVAL_S)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


# -- the paced producer and the pollers of the rebalance ----------------------------------------------------

def paced_order(i: int) -> dict:
    """The i-th paced order; prices exactly representable in Avro's float, as bench/latency.py's."""
    return {"orderId": f"rebalance-{i}", "product": f"product-{i % 8}", "price": (i % 4000) * 0.25 + 0.5}


class PacedProducer(threading.Thread):
    """Sends order i at start + i/rate (never ahead of schedule, as latency's send_paced) until stopped."""

    def __init__(self, run: BenchRun, rate: float) -> None:
        super().__init__(daemon=True, name="paced-producer")
        self.topic, self.rate = run.orders_topic, rate
        self.codec = AvroRecordCodec(run.registry(), load_schema(ROOT / "schemas" / "order-v2.avsc"),
                                     subject=f"{run.orders_topic}-value")
        self.producer = producing.producer(run.kafka_config(), **PRODUCER_CONFIG)
        self.tally = DeliveryTally()
        self.orders: list[dict] = []
        self.elapsed_s = 0.0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        try:
            while not self._halt.is_set():
                due = int((time.monotonic() - start) * self.rate) + 1
                while len(self.orders) < due:
                    order = paced_order(len(self.orders))
                    produce(self.producer, self.topic, key=order["orderId"].encode(), value=self.codec.encode(order),
                            on_delivery=self.tally.on_delivery)
                    self.orders.append(order)
                self._halt.wait(max(0.0, start + len(self.orders) / self.rate - time.monotonic()))
        except BaseException as exc:  # reported by finish(), in the bench's thread
            self.error = exc
        self.elapsed_s = time.monotonic() - start

    def abandon(self) -> None:
        """Stop sending (the bench failed); nothing is waited for."""
        self._halt.set()

    def finish(self) -> list[dict]:
        """Stop sending, wait for every delivery; the orders sent. BenchFailure unless all were delivered."""
        self._halt.set()
        if self.is_alive():
            self.join()
        if self.error is not None:
            raise BenchFailure(f"the paced producer failed: {self.error!r}")
        undelivered = producing.drain(self.producer, DELIVERY_TIMEOUT_S)
        if undelivered or self.tally.failed:
            raise BenchFailure(f"paced orders: {undelivered} undelivered, {self.tally.failed} failed: "
                               f"{self.tally.first_error}")
        return self.orders


@dataclass
class Sample:
    at: float  # monotonic time the answer arrived
    worker: str
    orders: int | None  # the group's aggregate as this worker served it (/average/); None: no answer
    reporting: int | None  # partitions in that aggregate
    owned: int | None  # partitions in this worker's /partition-stats/; None: no answer
    own_orders: int | None  # orders of those partitions


class Poller(threading.Thread):
    """Asks one worker's /average/ and /partition-stats/ every SAMPLE_INTERVAL_S until stopped."""

    def __init__(self, worker: WorkerProcess) -> None:
        super().__init__(daemon=True, name=f"poll-{worker.label}")
        self.worker = worker
        self.samples: list[Sample] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            summary = self.worker.summary()
            stats = self.worker.partition_stats()
            self.samples.append(Sample(
                time.monotonic(), self.worker.label,
                None if summary is None else summary["orders"], None if summary is None else summary["partitions"],
                None if stats is None else len(stats),
                None if stats is None else sum(state["orders"] for state in stats.values())))
            self._halt.wait(SAMPLE_INTERVAL_S)

    def stop(self) -> None:
        self._halt.set()
        self.join(15)


@dataclass
class Rebalance:
    """What the pollers saw from B's start on; times in seconds after B's start."""

    stall_s: float  # the longest interval in which the group's counted total did not advance
    stall_from_s: float
    b_web_up_s: float | None
    b_owns_s: float | None  # B's /partition-stats/ first lists partitions
    resumed_s: float | None  # B owns partitions and the total is past its value when the stall began
    a_owned_before: int | None
    a_owned_after: int | None
    b_owned_after: int | None
    watched_s: float
    samples: list[Sample] = field(repr=False, default_factory=list)

    def line(self) -> str:
        def at(value: float | None) -> str:
            return "never" if value is None else f"{value:.2f} s"
        return (f"rebalance: longest stall {self.stall_s:.2f} s (from {self.stall_from_s:.2f} s after B's start); "
                f"B's web view up at {at(self.b_web_up_s)}, B owns partitions at {at(self.b_owns_s)}, "
                f"counting past the stall with B owning partitions at {at(self.resumed_s)}; partitions owned: "
                f"A {self.a_owned_before} -> {self.a_owned_after}, B {self.b_owned_after} "
                f"(watched {self.watched_s:.1f} s)")


def analyse(samples: list[Sample], b_started: float, watched_until: float) -> Rebalance:
    """The group's counted total is the highest /average/ `orders` either worker has served so far (a worker
    that serves an incomplete aggregate during the rebalance does not move it back); it advances when a
    sample shows more. The stall is the longest gap between advances from B's start to the end of the watch."""
    samples = sorted(samples, key=lambda s: s.at)
    before = [s.orders for s in samples if s.at < b_started and s.orders is not None]
    high = max(before, default=0)
    advances = [(b_started, high)]  # (time, total reached)
    for s in samples:
        if s.at >= b_started and s.orders is not None and s.orders > high:
            high = s.orders
            advances.append((s.at, high))
    edges = [t for t, _ in advances] + [watched_until]
    gaps = [(edges[i + 1] - edges[i], edges[i], i) for i in range(len(edges) - 1)]
    stall_s, stall_from, index = max(gaps)
    stalled_at_total = advances[index][1]

    mine = [s for s in samples if s.worker == "B" and s.at >= b_started]
    theirs = [s for s in samples if s.worker == "A"]
    b_web = next((s.at for s in mine if s.orders is not None or s.owned is not None), None)
    b_owns = next((s.at for s in mine if s.owned), None)
    resumed = None
    if b_owns is not None:
        resumed = next((t for t, total in advances if t >= max(b_owns, stall_from) and total > stalled_at_total),
                       None)
    a_before = next((s.owned for s in reversed(theirs) if s.at < b_started and s.owned is not None), None)
    a_after = next((s.owned for s in reversed(theirs) if s.owned is not None), None)
    b_after = next((s.owned for s in reversed(mine) if s.owned is not None), None)

    def rel(t: float | None) -> float | None:
        return None if t is None else t - b_started
    return Rebalance(stall_s, stall_from - b_started, rel(b_web), rel(b_owns), rel(resumed), a_before, a_after,
                     b_after, watched_until - b_started, samples)


# -- one partition count ------------------------------------------------------------------------------------

@dataclass
class Row:
    partitions: int
    orders: int
    rate: float  # orders/s over the drain
    cpu_s: float
    elapsed_s: float
    peak_rss: int
    peak_threads: int  # over the worker's whole life (start-up, drain, rebalance, drain, stop)
    drain_threads: int  # at the end of the drain
    peak_threads_at_drain: int  # peak from start-up to the end of the drain
    connections: Connections
    rebalance: Rebalance
    b_peak_threads: int
    paced: int
    ceiling_rate: float  # orders/s of the bare consumer over the same preloaded topic


def measure(options: WorkerOptions, count: int, rate: float, keep_logs: Path | None) -> Row:
    with BenchRun(f"part{options.partitions}", options) as run:
        try:
            return _measure(run, count, rate)
        finally:
            if keep_logs is not None:
                _keep(run, keep_logs)


def _keep(run: BenchRun, keep_logs: Path) -> None:
    """Copy the workers' logs and the timeline out of the temp dir before the BenchRun deletes it."""
    keep_logs.mkdir(parents=True, exist_ok=True)
    for path in sorted(run.tmp.glob("*.log")) + sorted(run.tmp.glob("*.csv")):
        shutil.copy(path, keep_logs / f"{run.prefix}-{path.name}")
    say(f"logs and timeline kept in {keep_logs}/{run.prefix}-*")


def _measure(run: BenchRun, count: int, rate: float) -> Row:
    partitions = run.options.partitions
    app_id = run.app_id()
    preload(run, app_id, count)
    bare = measure_ceiling(run.settings, run.registry(), run.orders_topic, partitions)
    say(f"P={partitions}: ceiling {bare.rate:,.0f} orders/s ({count:,} orders in {bare.elapsed_s:.2f} s, bare "
        f"aiokafka + fastavro)")
    env = run.env(app_id)
    a, b = WorkerProcess(env, run.tmp, "A"), WorkerProcess(env, run.tmp, "B")
    samplers: dict[str, ThreadSampler] = {}
    producer: PacedProducer | None = None
    pollers: list[Poller] = []
    try:
        a.start()
        samplers["A"] = ThreadSampler(a.pid)
        samplers["A"].start()
        a.wait_for(lambda _s: True, START_TIMEOUT_S, "its web view")
        cpu_before = cpu_seconds(a.pid)
        (first_at, first), (last_at, last) = wait_for_orders(a, count)
        cpu_s = cpu_seconds(a.pid) - cpu_before
        peak_rss, drain_threads = proc_status(a.pid, "VmHWM"), threads(a.pid)
        peak_threads_at_drain = max(samplers["A"].peak, drain_threads)
        conns = connections(a.pid)
        check_aggregate(last, count, run.end_offsets(f"{run.prefix}-dlq"))
        if last_at <= first_at:
            raise BenchFailure(f"all {count} orders were counted between two polls: too few to time, "
                               f"use more --orders")
        drained_micros = last["total_price_micros"]
        if (bare.orders, bare.total_micros, bare.invalid) != (count, drained_micros, 0):
            raise BenchFailure(f"the ceiling's sums differ from worker A's: {bare.orders} orders, {bare.total_micros} "
                               f"micros, {bare.invalid} invalid vs {count} orders, {drained_micros} micros")
        elapsed = last_at - first_at
        drain_rate = (last["orders"] - first["orders"]) / elapsed
        say(f"P={partitions}: worker A: {count:,} orders in {elapsed:.2f} s (first seen at {first['orders']:,}), "
            f"{drain_rate:,.0f} orders/s, CPU {cpu_s:.1f} s ({100 * cpu_s / elapsed:.0f}% of one core); "
            f"peak RSS {peak_rss / MIB:,.0f} MiB; threads {drain_threads} at the end of the drain "
            f"(peak {peak_threads_at_drain}); connections: {conns.line()}")

        # The rebalance: a steady flow of orders, A counting them, then B joins the group.
        producer = PacedProducer(run, rate)
        producer.start()
        a.wait_for(lambda s: s["orders"] > count, 60, "the first paced orders")
        pollers = [Poller(a)]
        pollers[0].start()
        time.sleep(1.0)  # A's baseline: its partitions and the total advancing before B starts
        b.start()
        samplers["B"] = ThreadSampler(b.pid)
        samplers["B"].start()
        pollers.append(Poller(b))
        pollers[1].start()
        b_wall = time.time() - (time.monotonic() - b.started_at)
        say(f"P={partitions}: paced orders at {rate:,.0f}/s; A counts them; B started at "
            f"{time.strftime('%H:%M:%S', time.localtime(b_wall))},{int(b_wall % 1 * 1000):03d} (the logs' clock)")
        watched_until = _watch(a, b, pollers, b.started_at)
        for poller in pollers:
            poller.stop()
        rebalance = analyse([s for poller in pollers for s in poller.samples], b.started_at, watched_until)
        _write_timeline(run.tmp / "timeline.csv", rebalance.samples, b.started_at)
        say(f"P={partitions}: {rebalance.line()}")

        paced = producer.finish()
        producer = None
        total = count + len(paced)
        final = _wait_for_everything(a, b, total, partitions)
        expected = drained_micros + expected_micros(paced)
        check_aggregate(final, total, run.end_offsets(f"{run.prefix}-dlq"))
        if final["total_price_micros"] != expected:
            raise BenchFailure(f"wrong aggregate: price micros {final['total_price_micros']} != {expected} "
                               f"(the drained {drained_micros} + the paced orders'): {final}")
        say(f"P={partitions}: all {total:,} orders counted ({count:,} preloaded + {len(paced):,} paced), "
            f"price sum exact; stopping both workers (threads so far: A peak {samplers['A'].peak}, "
            f"B peak {samplers['B'].peak})")
        with ThreadPoolExecutor(2) as pool:  # at once: one after the other would rebalance the last one again
            for future in [pool.submit(worker.stop_cleanly) for worker in (a, b)]:
                future.result()
    finally:
        if producer is not None:
            producer.abandon()
        for poller in pollers:
            poller.stop()
        for worker in (a, b):
            worker.stop()
        for sampler in samplers.values():
            sampler.stop()
    return Row(partitions, count, drain_rate, cpu_s, elapsed, peak_rss, samplers["A"].peak, drain_threads,
               peak_threads_at_drain, conns, rebalance, samplers["B"].peak, len(paced), bare.rate)


def _watch(a: WorkerProcess, b: WorkerProcess, pollers: list[Poller], b_started: float) -> float:
    """Until SETTLE_S after the group counts past its longest stall so far with B owning partitions (a later,
    longer stall moves that point on); the end time."""
    while True:
        a.check_alive()
        b.check_alive()
        now = time.monotonic()
        seen = analyse([s for poller in pollers for s in poller.samples], b_started, now)
        if seen.resumed_s is not None and now - b_started >= seen.resumed_s + SETTLE_S:
            return now
        if now - b_started > (REBALANCE_TIMEOUT_S if seen.resumed_s is None else 2 * REBALANCE_TIMEOUT_S):
            raise BenchFailure(f"after B's start the group did not count steadily again with B owning partitions "
                               f"within {now - b_started:.0f} s: {seen.line()}\nA: {a.log_tail(20)}\n"
                               f"B: {b.log_tail(20)}")
        time.sleep(SAMPLE_INTERVAL_S)


def _wait_for_everything(a: WorkerProcess, b: WorkerProcess, total: int, partitions: int) -> dict:
    """The first complete aggregate (every partition reporting, every worker reachable, nothing uncommitted)
    either worker serves with `total` orders counted or dead-lettered."""
    deadline = time.monotonic() + FINAL_DRAIN_TIMEOUT_S
    last = None
    while time.monotonic() < deadline:
        for worker in (a, b):
            worker.check_alive()
            summary = worker.summary()
            if summary is None:
                continue
            last = summary
            if (summary["partitions"] == partitions and not summary["unreachable_workers"]
                    and summary["orders"] + summary["dead_letters"] >= total and summary["uncommitted"] == 0):
                return summary
        time.sleep(0.1)
    raise BenchFailure(f"the two workers had not counted all {total:,} orders {FINAL_DRAIN_TIMEOUT_S} s after the "
                       f"producer stopped; last /average/ {last}\nA: {a.log_tail(20)}\nB: {b.log_tail(20)}")


def _write_timeline(path: Path, samples: list[Sample], b_started: float) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["s_after_b_start", "worker", "average_orders", "reporting", "owned", "own_orders"])
        for s in samples:
            writer.writerow([f"{s.at - b_started:.3f}", s.worker, s.orders, s.reporting, s.owned, s.own_orders])


# -- the figure ---------------------------------------------------------------------------------------------

def partitions(counts: list[int], orders: int, rate: float, faust_metrics: bool = False,
               keep_logs: Path | None = None, rounds: int = 1) -> str:
    """Each round measures every count in turn, so the rounds' ratios to the first count are taken minutes
    apart, not a whole run apart: on a noisy machine the median over rounds is the figure to read."""
    by_round = []
    for round_no in range(1, rounds + 1):
        rows = []
        for p in counts:
            if rounds > 1:
                say(f"round {round_no} of {rounds}: {p} partitions")
            options = WorkerOptions(partitions=p, faust_metrics=faust_metrics)
            rows.append(measure(options, orders, rate, keep_logs))
        by_round.append(rows)
    say(f"{'round':>5} {'partitions':>10} {'orders/s':>9} {'ratio':>6} {'ceiling/s':>9} {'c. ratio':>8} "
        f"{'peak RSS MiB':>12} {'peak threads':>12} {'threads end':>11} {'TCP conns':>9} {'stall s':>7} "
        f"{'B owns s':>8} {'resumed s':>9}")
    for round_no, rows in enumerate(by_round, 1):
        base, ceiling_base = rows[0].rate, rows[0].ceiling_rate
        for row in rows:
            owns, resumed = ("-" if value is None else f"{value:.2f}"
                             for value in (row.rebalance.b_owns_s, row.rebalance.resumed_s))
            say(f"{round_no:>5} {row.partitions:>10} {row.rate:>9,.0f} {row.rate / base:>6.2f} "
                f"{row.ceiling_rate:>9,.0f} {row.ceiling_rate / ceiling_base:>8.2f} "
                f"{row.peak_rss / MIB:>12,.0f} {row.peak_threads:>12} {row.drain_threads:>11} "
                f"{row.connections.tcp:>9} {row.rebalance.stall_s:>7.2f} {owns:>8} {resumed:>9}")
    return summary_line(counts, by_round, orders)


def summary_line(counts: list[int], by_round: list[list[Row]], orders: int) -> str:
    """The result line: per count, the median rate over the rounds, the largest peak RSS, threads and stall, and
    (with more than one round) the median of the rounds' ratios to the first count, each round's after it."""
    rounds = len(by_round)
    parts = []
    for i, p in enumerate(counts):
        rows = [round_rows[i] for round_rows in by_round]
        ratios = [round_rows[i].rate / round_rows[0].rate for round_rows in by_round]
        ceiling_ratios = [round_rows[i].ceiling_rate / round_rows[0].ceiling_rate for round_rows in by_round]
        part = (f"{p}: {statistics.median(row.rate for row in rows):,.0f}/s, "
                f"{max(row.peak_rss for row in rows) / MIB:,.0f} MiB, {max(row.peak_threads for row in rows)} threads, "
                f"rebalance {max(row.rebalance.stall_s for row in rows):.2f} s")
        if rounds > 1 and i > 0:
            part += (f", ratio {statistics.median(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)}), the "
                     f"ceiling's {statistics.median(ceiling_ratios):.2f} "
                     f"({', '.join(f'{r:.2f}' for r in ceiling_ratios)})")
        parts.append(part)
    per = "each" if rounds == 1 else f"each, {rounds} rounds: median rate, largest RSS, threads and stall"
    return f"partitions: {' | '.join(parts)} ({orders:,} orders {per})"
