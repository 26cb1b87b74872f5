"""Operator tools for the dead-letter topic: `faust -A app dlq list` and `faust -A app dlq replay`.

What a dead letter is, the selection, the replay plan, the ledger and the
output formats live in `orders.dead_letters` (the worker's web view reads them
too); here are only the procedure and the commands:

- `replay`: the replay procedure, publishing and recording;
- `commands`: the Faust command group.
"""
