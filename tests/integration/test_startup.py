"""A worker that cannot reach Kafka or the registry says so, retries with backoff, then exits cleanly."""
import subprocess
import time

import pytest

from orders.startup import EXIT_CANNOT_START

from .conftest import FAUST, ROOT, app_env, free_port


@pytest.mark.parametrize("unreachable, env, words", [
    ("kafka", {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, "Kafka at 127.0.0.1:1 did not answer"),
    ("registry", {"SCHEMA_REGISTRY_URL": "http://127.0.0.1:1"}, "schema registry at http://127.0.0.1:1 unreachable"),
])
def test_worker_gives_up_with_one_clear_message_after_the_startup_timeout(names, tmp_path, unreachable, env, words):
    started = time.monotonic()
    result = subprocess.run(
        [str(FAUST), "--datadir", str(tmp_path), "-A", "app", "worker", "-l", "info", "--web-port", str(free_port())],
        cwd=ROOT, env=app_env(names, STARTUP_TIMEOUT_SECONDS=6, **env), capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == EXIT_CANNOT_START, output[-2000:]
    assert elapsed < 60
    assert f"orders-app cannot start: {words}" in output
    assert output.count("retrying in") >= 2, "retries with backoff are logged"
    assert "Traceback" not in output
