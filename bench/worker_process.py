"""A `faust -A app worker` subprocess, watched through its web view: for the tests and the benchmarks.

It starts the worker with its own web port, data dir and log file, reads its
`/average/` and `/metrics`, waits for conditions with a bound, and stops it
with SIGTERM (SIGKILL when that takes too long), reporting the exit code.
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAUST = Path(sys.executable).parent / "faust"
#: dumps a stuck worker's threads into a timeout's message (requirements-dev.txt)
PY_SPY = Path(sys.executable).parent / "py-spy"
#: How often /average/ is asked; each request costs the worker a little CPU.
POLL_INTERVAL_S = 0.1
START_TIMEOUT_S = 120
#: SIGTERM must end a worker within this long; after it, the worker is killed and the exit code shows it.
STOP_TIMEOUT_S = 60


#: aiokafka's lines while a broker it fetches from is down (each repeated every 100 ms)
CONNECTION_NOISE = ("Unable connect to node with id", "Failed fetch messages from")


class WorkerProcessError(AssertionError):
    """The worker exited, or a condition did not hold in time; the message ends with the log's tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WorkerProcess:
    """One worker; its log goes to `<workdir>/<label>.log`, its table data to `<workdir>/data`."""

    def __init__(self, env: Mapping[str, str], workdir: Path, label: str = "worker", port: int | None = None) -> None:
        self.env = dict(env)
        self.workdir = workdir
        self.label = label
        self.log_path = workdir / f"{label}.log"
        #: the web port: a given one (a worker restarted where it was, as a StatefulSet's pod is) or a free one
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self) -> WorkerProcess:
        """Start the process without waiting for it; `started_at` is the monotonic time of the start."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                [str(FAUST), "--datadir", str(self.workdir / "data"), "-A", "app", "worker", "-l", "info",
                 "--web-port", str(self.port)],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def start_serving(self, timeout_s: float = START_TIMEOUT_S) -> WorkerProcess:
        """Start the process and wait until its web view answers."""
        self.start()
        self.wait_for(lambda _summary: True, timeout_s, "its web view")
        return self

    # -- what it shows ----------------------------------------------------------

    def summary(self) -> dict | None:
        """The worker's /average/, or None while its web view does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/average/", timeout=5) as resp:
                return json.loads(resp.read())
        except OSError:
            return None

    def get(self, path: str) -> tuple[int, dict | None]:
        """(HTTP status, JSON body) of a GET on the worker's web view; (0, None) while it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")
        except OSError:
            return 0, None

    def partition_stats(self) -> dict[int, dict] | None:
        """This worker's own partitions (/partition-stats/), or None while its web view does not answer."""
        status, body = self.get("/partition-stats/")
        return None if status != 200 else {int(partition): state for partition, state in body.items()}

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as resp:
            return resp.read().decode()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        """The log's last `lines` lines, without aiokafka's connection errors, which it repeats every 100 ms
        while a broker is down and which would otherwise fill the tail."""
        logged = self.log_text().splitlines()
        kept = [line for line in logged if not any(noise in line for noise in CONNECTION_NOISE)]
        omitted = len(logged) - len(kept)
        tail = "\n".join(kept[-lines:]) or "(no log)"
        return tail + (f"\n({omitted} aiokafka connection error lines left out)" if omitted else "")

    def stacks(self) -> str:
        """Every thread's Python stack in the running worker (py-spy dump): what a stuck worker waits on."""
        if self.proc is None or self.proc.poll() is not None:
            return "(no stacks: the worker is not running)"
        if not PY_SPY.exists():
            return f"(no stacks: {PY_SPY} is not installed)"
        try:
            done = subprocess.run([str(PY_SPY), "dump", "--pid", str(self.pid)], capture_output=True, text=True,
                                  timeout=30)
        except subprocess.TimeoutExpired:
            return "(no stacks: py-spy dump took more than 30 s)"
        return done.stdout if done.returncode == 0 else f"(no stacks: py-spy dump said {done.stderr.strip()})"

    def check_alive(self) -> None:
        assert self.proc is not None, "not started"
        if self.proc.poll() is not None:
            raise WorkerProcessError(f"{self.label} exited with code {self.proc.returncode}\n{self.log_tail()}")

    # -- waiting ----------------------------------------------------------------

    def wait_for_timed(self, predicate: Callable[[dict], bool], timeout_s: float, what: str) -> tuple[float, dict]:
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
        raise WorkerProcessError(f"{self.label}: timed out after {timeout_s:.0f} s waiting for {what}; "
                                 f"last /average/ {last}\n{self.log_tail()}\n{self.label}'s threads:\n"
                                 f"{self.stacks()}")

    def wait_for(self, predicate: Callable[[dict], bool], timeout_s: float, what: str) -> dict:
        """Poll /average/ until `predicate` holds; return that summary."""
        return self.wait_for_timed(predicate, timeout_s, what)[1]

    # -- stopping -----------------------------------------------------------------

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM (a clean stop), SIGKILL if it takes longer than `timeout_s`; the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def stop_cleanly(self) -> None:
        """SIGTERM; WorkerProcessError unless the worker exits with 0."""
        code = self.stop()
        if code != 0:
            raise WorkerProcessError(f"{self.label} exited with code {code} on SIGTERM\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed."""
        assert self.proc is not None, "not started"
        self.proc.kill()
        self.proc.wait()
