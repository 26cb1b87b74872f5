"""The newest dead letters, for the worker's web view: a bounded read of the DLQ topic's tail."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..kafka.reading import TopicMissing, tail
from . import ledger
from .letters import DeadLetter, dead_letter, in_dlq_order


def newest(config: Mapping[str, Any], dlq_topic: str, limit: int, decode: Callable[[bytes | None], dict[str, Any]],
           replayed: Callable[[str], ledger.Entry | None]) -> list[tuple[DeadLetter, ledger.Entry | None]]:
    """The `limit` newest dead letters, newest first, each with its replay ledger entry (`replayed(dedupe key)`;
    None: not replayed).

    Reads at most `limit` records from the end of each DLQ partition, never the
    whole topic; an absent topic means no dead letters yet. Registry and Kafka
    errors propagate: an outage must not look like an empty DLQ.
    """
    try:
        tails = tail(config, dlq_topic, limit)
    except TopicMissing:
        return []
    letters = in_dlq_order(dead_letter(record, decode) for records in tails.values() for record in records)
    shown = letters[::-1][:limit]
    return [(letter, replayed(letter.dedupe_key)) for letter in shown]
