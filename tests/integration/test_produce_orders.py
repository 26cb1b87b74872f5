"""`faust -A app produce-orders` as a person runs it: the real command against the real broker and registry."""
import re
import subprocess
import time

from orders.startup import EXIT_CANNOT_START

from .conftest import FAUST, ROOT, app_env, record_count

SUMMARY = re.compile(r"sent (\d+) of (\d+) orders to (\S+) in ([\d.]+) s, ([\d,]+) orders/s; "
                     r"failed (\d+), undelivered (\d+)")


def produce_orders_command(names, *args: str, **env: object) -> subprocess.CompletedProcess:
    return subprocess.run([str(FAUST), "-A", "app", "produce-orders", *args], cwd=ROOT,
                          env=app_env(names, **env), capture_output=True, text=True, timeout=180)


def summary_of(output: str) -> dict:
    found = SUMMARY.findall(output)
    assert len(found) == 1, f"expected one summary line in:\n{output[-2000:]}"
    sent, count, topic, elapsed, rate, failed, undelivered = found[0]
    return {"sent": int(sent), "count": int(count), "topic": topic, "elapsed": float(elapsed),
            "rate": int(rate.replace(",", "")), "failed": int(failed), "undelivered": int(undelivered)}


def test_fast_mode_shows_progress_not_orders_and_its_summary_matches_the_topic(names):
    result = produce_orders_command(names, "--count", "2000", "--interval", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = summary_of(result.stdout)
    assert summary == {**summary, "sent": 2000, "count": 2000, "topic": names.orders, "failed": 0, "undelivered": 0}
    assert record_count(names.orders) == 2000
    # The line rounds the elapsed time to 10 ms (2,000 orders can take 60 ms: 8% either way) and the rate to 1.
    shortest, longest = summary["elapsed"] - 0.005, summary["elapsed"] + 0.005
    assert 2000 / longest - 1 <= summary["rate"] <= 2000 / max(shortest, 1e-9) + 1, "rate is sent / elapsed"
    assert f"sending 2000 orders to {names.orders}" in result.stdout, "the progress bar's label"
    assert "order {" not in result.stdout and "sent o-" not in result.stdout, "no line per order in fast mode"


def test_demo_mode_prints_each_order_and_its_delivery(names):
    result = produce_orders_command(names, "--count", "3", "--interval", "0.2")
    assert result.returncode == 0, result.stderr[-2000:]
    orders = re.findall(r'^order \{"orderId": "(o-[0-9a-f]+)"', result.stdout, re.MULTILINE)
    deliveries = re.findall(rf"^sent (o-[0-9a-f]+) -> {re.escape(names.orders)}\[\d+\]@\d+$", result.stdout,
                            re.MULTILINE)
    assert len(orders) == 3 and deliveries == orders, result.stdout
    assert summary_of(result.stdout)["sent"] == 3
    assert record_count(names.orders) == 3


def test_an_unreachable_broker_ends_the_command_with_one_clear_line(names):
    started = time.monotonic()
    result = produce_orders_command(names, "--count", "10", "--interval", "0",
                                    KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", STARTUP_TIMEOUT_SECONDS=3)
    output = result.stdout + result.stderr
    assert result.returncode == EXIT_CANNOT_START, output[-2000:]
    assert time.monotonic() - started < 30
    assert "produce-orders cannot start: Kafka at 127.0.0.1:1 did not answer within 3s" in result.stderr
    assert "Traceback" not in output
