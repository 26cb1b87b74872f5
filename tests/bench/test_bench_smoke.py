"""Every bench command runs end to end on tiny sizes, prints its result line last and leaves nothing behind.

The commands run at the same time (each on its own topics), to keep this
under a minute and a half on two cores; the figures themselves mean nothing here.
"""
import os
import re
import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient

from tests.stack import BOOTSTRAP, REGISTRY_URL, ROOT

pytestmark = pytest.mark.integration

COMMANDS = {
    # A drain must span several polls of the web view to be timed (the first poll that sees any order often
    # sees tens of thousands): 30,000 orders could all be counted between two.
    "throughput": (["--orders", "100000", "--profile", "{tmp}/profile.txt"],
                   r"throughput: worker [\d,]+ orders/s, ceiling [\d,]+ orders/s, worker at [\d.]+% of the ceiling"),
    "memory": (["--orders", "100000"], r"memory: worker peak RSS [\d,]+ MiB after 100,000 orders"),
    "write-amplification": (["--orders", "100000"],
                            r"write-amplification: [\d.]+ changelog records per 1,000 orders \([\d,]+ for 100,000"),
    "latency": (["--rate", "200", "--seconds", "5", "--warmup", "1"],
                r"latency at 200 orders/s \(achieved [\d,]+/s\): p50 [\d.,]+ m?s, p95 [\d.,]+ m?s, p99 [\d.,]+ m?s "
                r"over [\d,]+ orders; kept up: (yes|no)"),
    "compare": (["--orders", "100000", "--rates", "300", "--seconds", "3", "--warmup", "1"],
                r"compare: default worker [\d,]+ orders/s \([\d.]+ of the ceiling, [\d.]+ of Kafka Streams "
                r"per-partition, [\d.]+x the seed's design\), stock path [\d,]+/s, Kafka Streams per-partition "
                r"[\d,]+/s, global [\d,]+/s, seed's design [\d,]+/s, ceiling [\d,]+/s \(100,000 orders, 6 "
                r"partitions\) \| latency at 300 orders/s"),
    "dlq": (["--letters", "2000"], r"dlq: 2,000 dead letters: list --json [\d.]+ s, peak RSS [\d,]+ MiB; "
                                   r"replay --all [\d.]+ s, peak RSS [\d,]+ MiB"),
    "recovery": (["--orders", "3000", "--stores", "memory"],
                 r"recovery: memory:// 3,000 orders: [\d.]+ s \(web up at [\d.]+ s\), changelog [\d,]+ records"),
    "partitions": (["--partitions", "3,6", "--orders", "60000"],
                   r"partitions: 3: [\d,]+/s, [\d,]+ MiB, \d+ threads, rebalance [\d.]+ s \| "
                   r"6: [\d,]+/s, [\d,]+ MiB, \d+ threads, rebalance [\d.]+ s \(60,000 orders each\)"),
}
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def bench_runs(stack, tmp_path_factory):
    """Start every command at once; yield name -> (exit code, stdout, stderr, tmp dir) as they finish."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "SCHEMA_REGISTRY_URL": REGISTRY_URL}
    procs = {}
    for name, (args, _pattern) in COMMANDS.items():
        tmp = tmp_path_factory.mktemp(name)
        argv = [sys.executable, "-m", "bench", name, *(arg.format(tmp=tmp) for arg in args)]
        procs[name] = (subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True), tmp)
    results = {}
    try:
        for name, (proc, tmp) in procs.items():
            out, err = proc.communicate(timeout=TIMEOUT_S)
            results[name] = (proc.returncode, out, err, tmp)
    finally:
        for proc, _tmp in procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(60)
    return results


@pytest.mark.parametrize("name", COMMANDS)
def test_a_bench_command_ends_with_its_result_line_and_deletes_its_topics(bench_runs, name):
    code, out, err, _tmp = bench_runs[name]
    assert code == 0, f"exit {code}\n{out}\n{err}"
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(COMMANDS[name][1] + r".*", last), last

    prefixes = re.findall(r"^run (bench-\S+):", out, re.MULTILINE)
    assert prefixes, out
    topics = AdminClient({"bootstrap.servers": BOOTSTRAP}).list_topics(timeout=10).topics
    assert not [topic for topic in topics if topic.startswith(tuple(prefixes))]


def test_the_throughput_profile_names_the_workers_frames(bench_runs):
    _code, _out, _err, tmp = bench_runs["throughput"]
    summary = (tmp / "profile.txt").read_text()
    assert "frames by self time" in summary and "faust/" in summary
