"""Fill a bench's orders topic with the app's own load generator, `produce-orders --interval 0`."""
from __future__ import annotations

import subprocess
import time

from bench.worker_process import FAUST, ROOT

from .run import BenchFailure, BenchRun, say

#: produce-orders sends ~50k orders/s here; this leaves room for a busy machine.
SECONDS_PER_ORDER_ALLOWED = 0.002
MIN_TIMEOUT_S = 120


def preload(run: BenchRun, app_id: str, count: int) -> None:
    """Send `count` random orders to the run's orders topic (created if missing); fail unless all are delivered."""
    started = time.monotonic()
    done = subprocess.run(
        [str(FAUST), "-A", "app", "produce-orders", "--count", str(count), "--interval", "0"],
        cwd=ROOT, env=run.env(app_id), capture_output=True, text=True,
        timeout=max(MIN_TIMEOUT_S, count * SECONDS_PER_ORDER_ALLOWED))
    lines = [line for line in done.stdout.splitlines() if line.startswith("sent ")]
    if done.returncode != 0 or not lines:
        raise BenchFailure(f"produce-orders exited with {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    say(f"preload: {lines[-1]} (wall {time.monotonic() - started:.1f} s with start-up)")
