"""Operator tools for the dead-letter topic: `faust -A app dlq list` and `faust -A app dlq replay`.

- `dead_letters`: a DLQ record as the tools see it, selection and the replay plan (pure);
- `ledger`: what `dlq replay` has replayed, kept in a compacted topic (values pure, I/O thin);
- `formatting`: the table and JSON Lines that `dlq list` prints (pure);
- `replay`: the replay procedure, publishing and recording;
- `commands`: the Faust command group.
"""
