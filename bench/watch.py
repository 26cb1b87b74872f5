"""What a bench reads off a worker process: counting progress, memory and CPU (Linux /proc)."""
from __future__ import annotations

import os
import time
from pathlib import Path

from bench.worker_process import POLL_INTERVAL_S, START_TIMEOUT_S, WorkerProcess

from .run import BenchFailure

#: How long a worker may go without counting a single order before a bench gives up on it.
STALL_TIMEOUT_S = 120


def proc_status(pid: int, field: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise BenchFailure(f"/proc/{pid}/status has no {field}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_orders(worker: WorkerProcess, count: int) -> tuple[tuple[float, dict], tuple[float, dict]]:
    """Poll until `count` orders are counted or dead-lettered; fail if the count stands still too long.

    Returns (monotonic time, /average/) of the first poll that saw any order
    counted and of the first that saw them all.
    """
    first = None
    moved_at, last_count = time.monotonic(), -1
    while True:
        seen, summary = worker.wait_for_timed(lambda _s: True, START_TIMEOUT_S, "its web view")
        done = summary["orders"] + summary["dead_letters"]
        if first is None and summary["orders"] > 0:
            first = (seen, summary)
        if done >= count:
            return first or (seen, summary), (seen, summary)
        if done != last_count:
            moved_at, last_count = seen, done
        elif seen - moved_at > STALL_TIMEOUT_S:
            raise BenchFailure(f"{worker.label} stalled at {done} of {count} orders for {STALL_TIMEOUT_S} s: "
                               f"{summary}\n{worker.log_tail()}")
        time.sleep(POLL_INTERVAL_S)
