"""Start-up: a worker that cannot reach Kafka or the registry says so, retries with backoff, then exits cleanly;
one that can creates every topic it needs before its consumer joins the group."""
import subprocess
import time

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from orders.startup import EXIT_CANNOT_START

from .conftest import FAUST, KAFKA_CONFIG, ROOT, app_env, free_port


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


def test_the_worker_creates_its_changelog_before_its_consumer_joins(names, start_worker):
    """Faust would declare the changelog only as its table starts, possibly after the group assignment read the
    topic metadata; then the changelog's partitions, and the order partitions whose state it holds, get no owner."""
    worker = start_worker()
    changelog = f"{names.app_id}-order-stats-changelog"
    admin = AdminClient(KAFKA_CONFIG)
    assert len(admin.list_topics(changelog, timeout=10).topics[changelog].partitions) == 3
    config = admin.describe_configs([ConfigResource("topic", changelog)])
    entries = next(iter(config.values())).result(10)
    assert (entries["cleanup.policy"].value, entries["segment.ms"].value) == ("compact", "60000")
    assert f"created topic {changelog}" in worker.log_text()
    assert "Ignoring missing topic" not in worker.log_text()
