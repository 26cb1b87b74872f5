"""`python -m bench <figure>`: compare, throughput, memory, write-amplification, latency, recovery, kafka-streams,
partitions.

Run from the repository root. Kafka and the registry come from the app's own
settings (KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL, ...); topics, app ids
and everything else a bench creates are its own, and deleted when it ends.
The last line printed is the result; a wrong result exits 1 with the reason.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from confluent_kafka import KafkaException

from avro_codec import RegistryUnavailable
from bench.worker_process import WorkerProcessError
from orders.settings import SettingsError

from . import throughput
from .compare import compare
from .dlq import dlq
from .kafka_streams import kafka_streams
from .latency import latency_runs
from .partitions import DEFAULT_PARTITIONS, partitions
from .recovery import STORES, recovery
from .run import BenchFailure, WorkerOptions, say


def _positive_int(text: str) -> int:
    value = int(text)  # 1_000_000 reads too
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _checkpoints(text: str) -> list[int]:
    values = [_positive_int(part) for part in text.split(",")]
    if values != sorted(set(values)):
        raise argparse.ArgumentTypeError(f"history sizes must increase, got {text}")
    return values


def _rates(text: str) -> list[float]:
    return [_positive_float(part) for part in text.split(",")]


def _partition_counts(text: str) -> list[int]:
    return [_positive_int(part) for part in text.split(",")]


def _stores(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in STORES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"stores are {', '.join(STORES)}; got {text!r}")
    return names


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    figures = root.add_subparsers(dest="figure", required=True, metavar="FIGURE")

    worker = argparse.ArgumentParser(add_help=False)
    worker.add_argument("--partitions", type=_positive_int, default=6, help="partitions of the bench's topics")
    worker.add_argument("--faust-metrics", action="store_true",
                        help="keep Faust's Prometheus sensor on (FAUST_METRICS=true); off by default")
    drained = argparse.ArgumentParser(add_help=False, parents=[worker])
    drained.add_argument("--orders", type=_positive_int, default=1_000_000, help="orders to preload and count")
    drained.add_argument("--store", choices=sorted(STORES), default="memory", help="the worker's table store")

    tput = figures.add_parser("throughput", parents=[drained],
                              help="orders/s of one worker draining a preloaded topic, against the bare ceiling")
    tput.add_argument("--profile", type=Path, metavar="FILE",
                      help="run py-spy on the worker; top frames by self and inclusive time go to FILE")
    figures.add_parser("memory", parents=[drained], help="peak RSS of that worker")
    figures.add_parser("write-amplification", parents=[drained],
                       help="table changelog records written per 1,000 orders by that worker")

    cmp = figures.add_parser("compare", parents=[worker],
                             help="fast path, Faust's stock path, the seed's design and the ceiling over one "
                                  "preloaded topic, then latency at steady rates")
    cmp.add_argument("--orders", type=_positive_int, default=200_000, help="orders to preload and count")
    cmp.add_argument("--rates", type=_rates, default=[1000.0, 10000.0, 20000.0], metavar="R[,R...]",
                     help="orders per second of the latency runs after the comparison")
    cmp.add_argument("--seconds", type=_positive_float, default=20, help="measured seconds of each latency run")
    cmp.add_argument("--warmup", type=_positive_float, default=5, help="warm-up seconds of each latency run")

    lat = figures.add_parser("latency", parents=[worker],
                             help="p50/p95/p99 from produce to aggregate update at a steady rate")
    lat.add_argument("--rate", type=_positive_float, default=1000, help="orders per second")
    lat.add_argument("--seconds", type=_positive_float, default=30, help="measured seconds, after the warm-up")
    lat.add_argument("--warmup", type=_positive_float, default=5, help="seconds sent before measuring")
    lat.add_argument("--drain-timeout", type=_positive_float, default=300,
                     help="how long the worker may take to count everything after the last order is sent")
    lat.add_argument("--runs", type=_positive_int, default=1,
                     help="runs, one after the other, each on fresh topics and a fresh worker; all are reported")

    rec = figures.add_parser("recovery", parents=[worker],
                             help="restart time to the full aggregate, memory:// and rocksdb://")
    rec.add_argument("--orders", type=_checkpoints, default=[1_000_000], metavar="N[,N...]",
                     help="history sizes at which to restart, increasing: 200000,1000000 restarts twice")
    rec.add_argument("--stores", type=_stores, default=list(STORES), metavar="STORE[,STORE]",
                     help=f"table stores to measure: {','.join(STORES)}")
    dead = figures.add_parser("dlq", parents=[worker],
                              help="time and peak RSS of dlq list and dlq replay over a large dead-letter topic")
    dead.add_argument("--letters", type=_positive_int, default=1_000_000, help="dead letters to write")
    kst = figures.add_parser("kafka-streams", parents=[worker],
                             help="a Kafka Streams app (exactly once; per-partition and global) and the ceiling "
                                  "over one preloaded topic")
    kst.add_argument("--orders", type=_positive_int, default=200_000, help="orders to preload and count")
    parts = figures.add_parser("partitions", help="one worker's drain rate, peak RSS, threads, connections and "
                                                  "rebalance stall per partition count")
    parts.add_argument("--partitions", type=_partition_counts, default=DEFAULT_PARTITIONS, metavar="P[,P...]",
                       help="partition counts to measure, each on its own topics; ratios are to the first")
    parts.add_argument("--orders", type=_positive_int, default=200_000, help="orders to preload and count, per count")
    parts.add_argument("--rebalance-rate", type=_positive_float, default=1000,
                       help="orders per second sent while the second worker joins")
    parts.add_argument("--faust-metrics", action="store_true",
                       help="keep Faust's Prometheus sensor on (FAUST_METRICS=true); off by default")
    parts.add_argument("--rounds", type=_positive_int, default=1,
                       help="measure every count this many times, one count after the other in each round; the "
                            "summary gives the median rate and ratio")
    parts.add_argument("--keep-logs", type=Path, metavar="DIR",
                       help="copy the workers' logs and the rebalance timeline (CSV) to DIR")
    return root


def run(args: argparse.Namespace) -> str:
    if args.figure == "partitions":
        return partitions(args.partitions, args.orders, args.rebalance_rate, args.faust_metrics, args.keep_logs,
                          args.rounds)
    options = WorkerOptions(partitions=args.partitions, faust_metrics=args.faust_metrics,
                            table_store=STORES[getattr(args, "store", "memory")])
    if args.figure == "throughput":
        return throughput.throughput(options, args.orders, args.profile)
    if args.figure == "memory":
        return throughput.memory(options, args.orders)
    if args.figure == "write-amplification":
        return throughput.write_amplification(options, args.orders)
    if args.figure == "compare":
        return compare(options, args.orders, args.rates, args.seconds, args.warmup)
    if args.figure == "latency":
        return latency_runs(options, args.rate, args.seconds, args.warmup, args.drain_timeout, args.runs)
    if args.figure == "dlq":
        return dlq(options, args.letters)
    if args.figure == "kafka-streams":
        return kafka_streams(options, args.orders)
    return recovery(options, args.stores, args.orders)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = run(args)
    except (BenchFailure, WorkerProcessError) as exc:
        print(f"bench {args.figure} FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    except SettingsError as exc:
        print(f"bench {args.figure} FAILED: configuration error: {exc}", file=sys.stderr, flush=True)
        return 1
    except (RegistryUnavailable, KafkaException) as exc:
        print(f"bench {args.figure} FAILED: the stack did not answer: {exc}", file=sys.stderr, flush=True)
        return 1
    say(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
