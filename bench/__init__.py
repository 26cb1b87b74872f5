"""Benchmarks against the local stack: `python -m bench <figure> [options]`.

Each figure is one command that starts its own worker(s) on topics of its own,
prints what it sees as it goes, ends with one result line, cleans up after
itself, and exits non-zero with a reason when the result is wrong. See
bench/README.md for the commands, what they measure and how.
"""
