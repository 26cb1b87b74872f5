"""A setting the app cannot use is reported when a command runs, not when the app is imported: `--help` works
whatever the environment; the worker and the commands exit 2 with one line naming the variable."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAUST = Path(sys.executable).parent / "faust"
BAD = {"PARTITIONS": "abc", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}  # nothing is reachable: nothing is tried


def faust(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(FAUST), "--datadir", str(tmp_path), "-A", "app", *args], cwd=ROOT,
                          env={**os.environ, **BAD}, capture_output=True, text=True, timeout=120)


def test_help_works_with_a_setting_the_app_cannot_use(tmp_path):
    done = faust("--help", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "produce-orders" in done.stdout and "dlq" in done.stdout


@pytest.mark.parametrize("command", [("worker", "-l", "info"), ("produce-orders", "--count", "1"),
                                     ("dlq", "list"), ("send", "orders", "{}")])
def test_a_command_exits_2_with_one_line_naming_the_setting(command, tmp_path):
    done = faust(*command, tmp_path=tmp_path)
    output = done.stdout + done.stderr
    naming = [line for line in output.splitlines() if "PARTITIONS" in line]
    assert done.returncode == 2, output[-2000:]
    assert len(naming) == 1 and "configuration error: PARTITIONS must be a whole number, got 'abc'" in naming[0]
    assert "Traceback" not in output
