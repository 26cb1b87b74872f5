"""Where a worker's time goes: py-spy attached to it, and a summary of the stacks it sampled.

py-spy's raw format is one line per distinct stack, `outer;...;inner COUNT`,
each frame `function (file)` (with --nolineno). A frame's self count is the
samples in which it is the innermost frame; its inclusive count the samples in
which it appears at all (once per sample, however deep the recursion).
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .run import BenchFailure

PY_SPY = Path(sys.executable).parent / "py-spy"
SAMPLES_PER_SECOND = 100
TOP = 30


#: Root frame of every thread but the main one; the worker's event loop runs in the main thread.
THREAD_ROOT = "_bootstrap (threading.py)"


@dataclass
class StackProfile:
    samples: int
    self_counts: Counter
    inclusive_counts: Counter
    other_thread_samples: int = 0


def parse_collapsed(text: str) -> StackProfile:
    self_counts: Counter = Counter()
    inclusive: Counter = Counter()
    samples = other_threads = 0
    for line in text.splitlines():
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        if frames[0] == THREAD_ROOT:
            other_threads += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return StackProfile(samples, self_counts, inclusive, other_threads)


def summarize(profile: StackProfile, top: int = TOP) -> str:
    """Text report: the `top` frames by self time, then by inclusive time, as shares of all samples."""
    if profile.samples == 0:
        return "no samples\n"
    other = profile.other_thread_samples
    lines = [f"{profile.samples} samples: {profile.samples - other} in the main thread (the event loop), {other} in "
             f"other threads (thread pools; a thread blocked on its queue can be sampled as busy)"]
    for title, counts in (("self", profile.self_counts), ("inclusive", profile.inclusive_counts)):
        lines += ["", f"top {top} frames by {title} time:"]
        lines += [f"{100 * count / profile.samples:6.1f}%  {count:8d}  {frame}"
                  for frame, count in counts.most_common(top)]
    return "\n".join(lines) + "\n"


class Profiler:
    """py-spy recording a running process until `finish`; the summary goes to `summary_path`."""

    def __init__(self, pid: int, summary_path: Path) -> None:
        py_spy = PY_SPY if PY_SPY.exists() else shutil.which("py-spy")
        if py_spy is None:
            raise BenchFailure("--profile needs py-spy: pip install -r bench/requirements.txt")
        self.summary_path = summary_path
        self.raw_path = summary_path.with_name(summary_path.name + ".collapsed")
        self.log_path = summary_path.with_name(summary_path.name + ".py-spy.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(py_spy), "record", "--pid", str(pid), "--format", "raw", "--nolineno",
                 "--rate", str(SAMPLES_PER_SECOND), "--output", str(self.raw_path)],
                stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        """Stop recording; SIGINT makes py-spy write what it has."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def finish(self) -> StackProfile:
        """Stop recording and summarize into `summary_path`."""
        self.stop()
        if not self.raw_path.exists():
            raise BenchFailure(f"py-spy wrote no profile (exit {self.proc.returncode}): "
                               f"{self.log_path.read_text(errors='replace')[-2000:]}")
        profile = parse_collapsed(self.raw_path.read_text())
        self.summary_path.write_text(summarize(profile))
        return profile
