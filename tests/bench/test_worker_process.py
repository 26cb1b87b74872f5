"""What the worker harness tells when a worker does not get where a test waits for it."""
import subprocess
import sys
import time

import pytest

from bench.worker_process import WorkerProcess, WorkerProcessError

STUCK = """
import threading, time
def waiting_in_the_commit():
    threading.Event().wait()
print("ready", flush=True)
waiting_in_the_commit()
"""


def test_a_timed_out_wait_shows_where_each_thread_of_the_stuck_worker_is(tmp_path, monkeypatch):
    worker = WorkerProcess({}, tmp_path, label="c1", port=1)
    worker.proc = subprocess.Popen([sys.executable, "-c", STUCK], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.proc.stdout.readline().strip() == "ready"
        monkeypatch.setattr(worker, "summary", lambda: {"orders": 7})
        started = time.monotonic()
        with pytest.raises(WorkerProcessError) as raised:
            worker.wait_for(lambda summary: summary["orders"] > 7, 0.3, "progress")
        assert time.monotonic() - started < 35
    finally:
        worker.proc.kill()
        worker.proc.wait()
    message = str(raised.value)
    assert "c1: timed out after 0 s waiting for progress; last /average/ {'orders': 7}" in message
    assert "c1's threads:" in message and "waiting_in_the_commit" in message, message


def test_the_log_tail_leaves_out_aiokafkas_repeated_connection_errors_and_says_how_many(tmp_path):
    worker = WorkerProcess({}, tmp_path, label="c1", port=1)
    noise = ["[ERROR] Unable connect to node with id 3: [Errno 111] Connect call failed",
             "[ERROR] Failed fetch messages from 3: NodeNotReadyError: Attempt to send a request"] * 50
    worker.log_path.write_text("\n".join(["commit failed: COORDINATOR_NOT_AVAILABLE"] + noise + ["last line"]))

    tail = worker.log_tail(lines=5)

    assert tail.splitlines() == ["commit failed: COORDINATOR_NOT_AVAILABLE", "last line",
                                 "(100 aiokafka connection error lines left out)"]
