"""Summaries of py-spy's collapsed stacks."""
from bench.profiling import parse_collapsed, summarize

STACKS = """\
main (app.py);loop (app.py);decode (codec.py) 6
main (app.py);loop (app.py);write (table.py) 3
main (app.py);loop (app.py) 1
main (app.py);walk (tree.py);walk (tree.py);walk (tree.py) 10
_bootstrap (threading.py);_worker (concurrent/futures/thread.py) 5
"""


def test_self_time_goes_to_the_innermost_frame_and_inclusive_time_to_every_frame_once_per_sample():
    profile = parse_collapsed(STACKS)
    assert profile.samples == 25
    assert profile.self_counts == {"decode (codec.py)": 6, "write (table.py)": 3, "loop (app.py)": 1,
                                   "walk (tree.py)": 10, "_worker (concurrent/futures/thread.py)": 5}
    assert profile.inclusive_counts["main (app.py)"] == 20
    assert profile.inclusive_counts["loop (app.py)"] == 10
    assert profile.inclusive_counts["walk (tree.py)"] == 10  # recursion counts each sample once


def test_samples_outside_the_main_thread_are_counted_apart():
    assert parse_collapsed(STACKS).other_thread_samples == 5


def test_lines_that_are_not_stacks_are_ignored():
    assert parse_collapsed("\nnot a stack line\nmain (app.py) x\n").samples == 0


def test_the_summary_lists_frames_by_share_of_all_samples():
    text = summarize(parse_collapsed(STACKS), top=2)
    self_part, inclusive_part = text.split("by inclusive time:")
    assert text.startswith("25 samples: 20 in the main thread (the event loop), 5 in other threads")
    assert "40.0%" in self_part and "walk (tree.py)" in self_part and "decode (codec.py)" in self_part
    assert "write (table.py)" not in self_part  # third by self time, beyond top=2
    assert "80.0%" in inclusive_part and "main (app.py)" in inclusive_part


def test_an_empty_profile_says_so():
    assert summarize(parse_collapsed("")) == "no samples\n"
