"""A `faust -A app worker` subprocess, watched the way a bench needs: its aggregate, memory and CPU."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable

from .run import ROOT, BenchFailure

FAUST = Path(sys.executable).parent / "faust"
#: How often the bench asks /average/; each request costs the worker a little CPU.
POLL_INTERVAL_S = 0.1
START_TIMEOUT_S = 120
#: How long a worker may go without counting a single order before a bench gives up on it.
STALL_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


class Worker:
    """One worker; its log goes to `<data_dir>/<label>.log`."""

    def __init__(self, env: dict[str, str], data_dir: Path, label: str = "worker") -> None:
        self.env = env
        self.data_dir = data_dir
        self.label = label
        self.log_path = data_dir / f"{label}.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Worker:
        """Start the process (not waiting for it); `started_at` is the monotonic time of the start."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                [str(FAUST), "--datadir", str(self.data_dir / "data"), "-A", "app", "worker", "-l", "info",
                 "--web-port", str(self.port)],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def summary(self) -> dict | None:
        """The worker's /average/, or None while its web view does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/average/", timeout=5) as resp:
                return json.loads(resp.read())
        except OSError:
            return None

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as resp:
            return resp.read().decode()

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise BenchFailure(f"{self.label} exited with code {self.proc.returncode}\n{self.log_tail()}")

    def wait_for(self, predicate: Callable[[dict], bool], timeout_s: float, what: str) -> tuple[float, dict]:
        """Poll /average/ until `predicate` holds; return (monotonic time it was seen, the summary)."""
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            self.check_alive()
            summary = self.summary()
            seen = time.monotonic()
            if summary is not None:
                last = summary
                if predicate(summary):
                    return seen, summary
            time.sleep(POLL_INTERVAL_S)
        raise BenchFailure(f"{self.label}: timed out after {timeout_s:.0f} s waiting for {what}; "
                           f"last /average/ {last}\n{self.log_tail()}")

    def wait_for_orders(self, count: int) -> tuple[tuple[float, dict], tuple[float, dict]]:
        """Poll until `count` orders are counted or dead-lettered; fail if the count stands still too long.

        Returns (monotonic time, /average/) of the first poll that saw any order
        counted and of the first that saw them all.
        """
        first = None
        moved_at, last_count = time.monotonic(), -1
        while True:
            seen, summary = self.wait_for(lambda _s: True, START_TIMEOUT_S, "its web view")
            done = summary["orders"] + summary["dead_letters"]
            if first is None and summary["orders"] > 0:
                first = (seen, summary)
            if done >= count:
                return first or (seen, summary), (seen, summary)
            if done != last_count:
                moved_at, last_count = seen, done
            elif seen - moved_at > STALL_TIMEOUT_S:
                raise BenchFailure(f"{self.label} stalled at {done} of {count} orders for {STALL_TIMEOUT_S} s: "
                                   f"{summary}\n{self.log_tail()}")
            time.sleep(POLL_INTERVAL_S)

    def wait_until_serving(self) -> dict:
        return self.wait_for(lambda _summary: True, START_TIMEOUT_S, "its web view")[1]

    def stop(self) -> int:
        """SIGTERM (a clean stop: Faust commits and flushes), SIGKILL if it takes too long; the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def stop_cleanly(self) -> None:
        code = self.stop()
        if code != 0:
            raise BenchFailure(f"{self.label} exited with code {code} on SIGTERM\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
