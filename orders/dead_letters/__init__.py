"""Dead letters as operators see them, shared by the `dlq` commands and the worker's web view.

- `letters`: a DLQ record decoded, selection and the replay plan (pure);
- `ledger`: what `dlq replay` has replayed, kept in a compacted topic;
- `formatting`: the table and JSON object shapes of a dead letter (pure).
"""
