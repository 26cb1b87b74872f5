"""`python -m bench dlq`: time and peak memory of the DLQ tools over a large dead-letter topic.

Writes N dead letters straight to a fresh DLQ topic (what a worker writes: the
order's bytes and the dead-letter headers), then runs `faust -A app dlq list
--json` (its output discarded) and `faust -A app dlq replay --all --quiet`
as an operator would, each under `/usr/bin/time`, which reports the command's
peak RSS (GNU time's %M, from the kernel's accounting of the whole process).
"""
from __future__ import annotations

import random
import re
import subprocess
import time

from avro_codec import AvroRecordCodec, load_schema
from orders.domain.headers import Attempt, dlq_headers
from orders.kafka import admin, producing

from .run import BenchFailure, BenchRun, WorkerOptions, say
from .worker_process import FAUST, ROOT

#: How a dead letter's producer batches (the topic is written once, as fast as the broker takes it).
FAST_PRODUCER = {"linger.ms": 20, "batch.num.messages": 100_000, "batch.size": 1_000_000,
                 "queue.buffering.max.messages": 1_000_000}
TIME_FORMAT = "peak_rss_kib=%M wall_s=%e"


def write_dead_letters(run: BenchRun, count: int, partitions: int) -> None:
    config = run.kafka_config()
    dlq = f"{run.prefix}-dlq"
    admin.ensure_topics(config, [run.orders_topic, f"{run.prefix}-retry", dlq], partitions, timeout_s=60)
    codec_registry = run.registry()
    codec = AvroRecordCodec(codec_registry, load_schema(ROOT / "schemas" / "order-v2.avsc"),
                            subject=f"{run.orders_topic}-value")
    producer = producing.producer(config, **FAST_PRODUCER)
    tally = producing.DeliveryTally()
    now_ms = int(time.time() * 1000)
    error = RuntimeError("simulated processing failure")
    started = time.monotonic()
    for i in range(count):
        order = {"orderId": f"dl-{i}", "product": "Lamp", "price": round(random.uniform(5, 2000), 2),
                 "quantity": 1, "currency": "USD"}
        attempt = Attempt(run.orders_topic, i % partitions, i // partitions, number=4, first_failure_ms=now_ms)
        producing.produce(producer, dlq, key=order["orderId"].encode(), value=codec.encode_fitting(order),
                          headers=dlq_headers(attempt, "retries-exhausted", error, now_ms + i // 1000),
                          on_delivery=tally.on_delivery)
    undelivered = producing.drain(producer, 120)
    if tally.failed or undelivered:
        raise BenchFailure(f"writing the dead letters: {tally.failed} failed, {undelivered} undelivered "
                           f"({tally.first_error})")
    say(f"wrote {count:,} dead letters to {dlq} in {time.monotonic() - started:.1f} s")


def timed(run: BenchRun, app_id: str, *args: str, output: bool = True) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MiB, the last line of stdout) of `faust -A app <args>` under /usr/bin/time;
    `output=False` discards stdout (a million JSON lines)."""
    result = subprocess.run(["/usr/bin/time", "-f", TIME_FORMAT, str(FAUST), "-A", "app", *args], cwd=ROOT,
                            env=run.env(app_id), stdout=subprocess.PIPE if output else subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    found = re.search(r"peak_rss_kib=(\d+) wall_s=([\d.]+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise BenchFailure(f"faust -A app {' '.join(args)} exited {result.returncode}: {result.stderr[-1500:]}")
    last = ((result.stdout or "").strip().splitlines() or [""])[-1]
    return float(found.group(2)), int(found.group(1)) / 1024, last


def dlq(options: WorkerOptions, letters: int) -> str:
    with BenchRun("dlq", options) as run:
        write_dead_letters(run, letters, options.partitions)
        app_id = run.app_id()
        list_s, list_mib, _last = timed(run, app_id, "dlq", "list", "--json", output=False)
        say(f"dlq list --json: {letters:,} dead letters in {list_s:.1f} s, peak RSS {list_mib:.0f} MiB")
        replay_s, replay_mib, summary = timed(run, app_id, "dlq", "replay", "--all", "--quiet")
        say(f"dlq replay --all --quiet: {replay_s:.1f} s, peak RSS {replay_mib:.0f} MiB ({summary})")
        if not summary.startswith(f"replayed {letters},"):
            raise BenchFailure(f"the replay did not replay every dead letter: {summary}")
        return (f"dlq: {letters:,} dead letters: list --json {list_s:.1f} s, peak RSS {list_mib:.0f} MiB; "
                f"replay --all {replay_s:.1f} s, peak RSS {replay_mib:.0f} MiB")
