"""Kafka Streams as a yardstick: the same orders, counted and summed by a Kafka Streams app, exactly once.

The app (bench/kstreams, Java 17, Kafka Streams 4.1.1, built with Maven into one
jar) reads the run's orders topic from the beginning with
`processing.guarantee=exactly_once_v2` and one stream thread, decodes each
record with Apache Avro and the writer schema from the registry, applies the
app's `validate` and integer-micros price (the same arithmetic, bit for bit),
and counts. Two modes:

- `per-partition`: a processor keeps a count and sum per source partition in a
  store (RocksDB, cached, changelogged): the shape of the worker's table, no
  repartition topic;
- `global`: every order to one constant key, through a repartition topic, then
  `aggregate` into one count and sum.

It prints `FIRST <ns>` at its first record and `DONE <orders> <micros> <ns> <invalid>`
once the expected records are counted (one monotonic clock), then closes Kafka
Streams, leaving the group, and exits 0. The rate is from its first record to
its last counted, as the other consumers are timed. Its topics (the changelog,
the repartition topic) are named `<application.id>-...`, and the application id
is `run.app_id(...)`, so `BenchRun.cleanup` deletes them and the group.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from bench.worker_process import ROOT
from orders.client_config import registry_auth

from .ceiling import measure_ceiling
from .preload import preload
from .run import BenchFailure, BenchRun, WorkerOptions, say
from .tally import Tally

KSTREAMS_DIR = ROOT / "bench" / "kstreams"
JAR = KSTREAMS_DIR / "target" / "orders-kstreams.jar"
MODES = ("per-partition", "global")
#: A first build downloads Kafka Streams, Avro and Maven's plugins.
BUILD_TIMEOUT_S = 900
#: The JVM's start, the group's first rebalance, the internal topics' creation, the close; then per order.
START_ALLOWANCE_S = 180
SECONDS_PER_ORDER_ALLOWED = 0.001
#: The app fails by itself after this long without a record (before the first one too).
IDLE_LIMIT_S = 60
#: The app reads the registry's "user:password" from this variable (bench/kstreams OrdersStreams).
REGISTRY_AUTH_ENV = "ORDERS_KSTREAMS_REGISTRY_AUTH"


def _newest_source() -> float:
    sources = [KSTREAMS_DIR / "pom.xml", *(path for path in (KSTREAMS_DIR / "src").rglob("*") if path.is_file())]
    return max(path.stat().st_mtime for path in sources)


def ensure_jar() -> Path:
    """The app's jar, built with Maven first when it is missing or older than a source; BenchFailure if it cannot."""
    if shutil.which("java") is None:
        raise BenchFailure("Kafka Streams yardstick: no `java` on PATH (Java 17 is needed)")
    if JAR.exists() and JAR.stat().st_mtime >= _newest_source():
        return JAR
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BenchFailure("Kafka Streams yardstick: no `mvn` on PATH; building bench/kstreams needs Maven and "
                           "Java 17")
    why = "older than its sources" if JAR.exists() else "missing; a first build downloads Kafka Streams and Avro"
    say(f"kafka streams: building {JAR.relative_to(ROOT)} with Maven ({why})")
    started = time.monotonic()
    try:
        done = subprocess.run([mvn, "-q", "-B", "package", "-DskipTests"], cwd=KSTREAMS_DIR, capture_output=True,
                              text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BenchFailure(f"Kafka Streams yardstick: the Maven build took more than {BUILD_TIMEOUT_S} s") from None
    if done.returncode != 0 or not JAR.exists():
        raise BenchFailure(f"Kafka Streams yardstick: `mvn package` in {KSTREAMS_DIR} exited with {done.returncode} "
                           f"(Maven and Java 17 are needed):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    say(f"kafka streams: built in {time.monotonic() - started:.1f} s")
    return JAR


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def measure_kafka_streams(run: BenchRun, count: int, mode: str) -> Tally:
    """Let the Kafka Streams app (`mode`: per-partition or global) count the `count` orders preloaded into the run's
    orders topic, from the beginning; time from its first record to its last counted."""
    if mode not in MODES:
        raise ValueError(f"mode is one of {MODES}, not {mode!r}")
    config = run.kafka_config()
    if config.get("security.protocol", "PLAINTEXT").upper() != "PLAINTEXT":
        raise BenchFailure(f"Kafka Streams yardstick: only PLAINTEXT Kafka is wired up, not "
                           f"{config['security.protocol']}")
    jar = ensure_jar()
    app_id = run.app_id(f"kstreams-{mode}")
    state_dir = run.tmp / f"kstreams-{mode}-state"
    state_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = run.tmp / f"kstreams-{mode}.out", run.tmp / f"kstreams-{mode}.err"
    auth = registry_auth(run.settings)  # through the environment, so it stays off the command line
    env = {**os.environ, REGISTRY_AUTH_ENV: f"{auth[0]}:{auth[1]}"} if auth else None
    command = ["java", "-jar", str(jar), "--bootstrap-servers", config["bootstrap.servers"],
               "--topic", run.orders_topic, "--application-id", app_id, "--mode", mode, "--expected", str(count),
               "--registry", run.registry().base_url, "--state-dir", str(state_dir),
               "--idle-timeout-s", str(IDLE_LIMIT_S)]
    timeout_s = START_ALLOWANCE_S + count * SECONDS_PER_ORDER_ALLOWED
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        child = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        try:
            returncode = child.wait(timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise BenchFailure(f"kafka streams {mode}: no result within {timeout_s:.0f} s; killed it. Its stderr:\n"
                               f"{_tail(err_path)}") from None
        except BaseException:  # Ctrl-C: leave no JVM behind
            child.kill()
            child.wait()
            raise
    if returncode != 0:
        raise BenchFailure(f"kafka streams {mode} exited with {returncode}. Its stderr:\n{_tail(err_path)}")
    lines = out_path.read_text(errors="replace").splitlines()
    first = [line.split() for line in lines if line.startswith("FIRST ")]
    done = [line.split() for line in lines if line.startswith("DONE ")]
    if not first or not done or len(done[-1]) != 5:
        raise BenchFailure(f"kafka streams {mode}: exited 0 without FIRST and DONE lines: {lines[-5:]}")
    orders, micros, last_ns, invalid = (int(word) for word in done[-1][1:])
    if invalid:
        raise BenchFailure(f"kafka streams {mode}: {invalid} invalid orders in a bench topic")
    return Tally(orders, micros, (last_ns - int(first[-1][1])) / 1e9)


def kafka_streams(options: WorkerOptions, count: int) -> str:
    """`python -m bench kafka-streams`: preload `count` orders, count them with both modes and the bare ceiling."""
    ensure_jar()  # before the preload: a build failure costs no topic
    with BenchRun("kstreams", options) as run:
        preload(run, run.app_id(), count)
        results = {}
        for step, mode in enumerate(MODES, 1):
            say(f"{step}/{len(MODES) + 1}: Kafka Streams, {mode}, exactly_once_v2, one stream thread")
            result = results[mode] = measure_kafka_streams(run, count, mode)
            say(f"kafka streams {mode}: {result.orders:,} orders in {result.elapsed_s:.2f} s, {result.rate:,.0f} "
                f"orders/s, total {result.total_micros:,} micros")
        say(f"{len(MODES) + 1}/{len(MODES) + 1}: the ceiling: bare aiokafka getmany + fastavro + the same arithmetic")
        bare = measure_ceiling(run.settings, run.registry(), run.orders_topic, options.partitions)
        say(f"ceiling: {bare.orders:,} orders in {bare.elapsed_s:.2f} s, {bare.rate:,.0f} orders/s, "
            f"total {bare.total_micros:,} micros")
    sums = {mode: (result.orders, result.total_micros) for mode, result in results.items()}
    sums["ceiling"] = (bare.orders, bare.total_micros)
    if len(set(sums.values())) != 1 or bare.orders != count:
        raise BenchFailure(f"the consumers disagree on the orders and their sum ({count:,} sent): {sums}")
    per, glob = results["per-partition"], results["global"]
    return (f"kafka-streams: per-partition {per.rate:,.0f} orders/s ({per.rate / bare.rate:.2f} of the ceiling), "
            f"global through a repartition topic {glob.rate:,.0f} orders/s ({glob.rate / bare.rate:.2f}), "
            f"ceiling {bare.rate:,.0f}/s ({count:,} orders, {options.partitions} partitions, exactly_once_v2)")
