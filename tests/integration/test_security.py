"""The worker, the demo producer and `faust send` authenticate with SASL; bad credentials fail fast."""
import json
import subprocess
import time

import pytest

from orders.startup import EXIT_CANNOT_START
from tests.stack import SASL_BOOTSTRAP, SASL_PASSWORD, SASL_USERNAME

from .conftest import FAUST, ROOT, app_env, free_port, wait_for_topics

USER, PASSWORD = SASL_USERNAME, SASL_PASSWORD


def sasl(mechanism: str, password: str = PASSWORD) -> dict:
    return dict(KAFKA_BOOTSTRAP_SERVERS=SASL_BOOTSTRAP, KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                KAFKA_SASL_MECHANISM=mechanism, KAFKA_SASL_USERNAME=USER, KAFKA_SASL_PASSWORD=password)


def run_cli(names, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(FAUST), "-A", "app", *args], cwd=ROOT, env=app_env(names, **env),
                          capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_worker_producer_and_cli_authenticate_over_sasl(names, start_worker, mechanism):
    worker = start_worker(**sasl(mechanism))
    wait_for_topics(names.orders)
    produced = run_cli(names, sasl(mechanism), "produce-orders", "--count", "5", "--interval", "0")
    assert produced.returncode == 0, produced.stderr[-2000:]
    order = {"orderId": "sasl-1", "product": "Vault", "price": 12.5}
    sent = run_cli(names, sasl(mechanism), "send", names.orders, json.dumps(order))
    assert sent.returncode == 0, sent.stderr[-2000:]

    worker.wait_for(lambda s: s["orders"] >= 6, 60, "orders sent over SASL counted")
    for output in (worker.log_path.read_text(), produced.stdout + produced.stderr, sent.stdout + sent.stderr):
        assert PASSWORD not in output, "a secret reached the logs"


def test_wrong_password_fails_fast_with_a_clear_message(names, tmp_path):
    started = time.monotonic()
    result = subprocess.run(
        [str(FAUST), "--datadir", str(tmp_path), "-A", "app", "worker", "-l", "info", "--web-port", str(free_port())],
        cwd=ROOT, env=app_env(names, STARTUP_TIMEOUT_SECONDS=60, **sasl("SCRAM-SHA-512", "not-the-password")),
        capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == EXIT_CANNOT_START, output[-2000:]
    assert time.monotonic() - started < 30, "gave up at once, not after the start-up timeout"
    assert "refused the credentials of user 'orders' (SCRAM-SHA-512)" in output
    assert "not-the-password" not in output
