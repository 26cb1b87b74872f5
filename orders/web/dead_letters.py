"""`GET /dead-letters/`: the newest dead letters, for the live page's panel. Read-only.

Any worker answers for the whole DLQ topic (it is not partitioned by owner).
One read of the topic's tail serves every request for SNAPSHOT_SECONDS, so a
page polling from several browsers costs the broker one bounded read. Query
parameters: `reason` keeps the dead letters with that reason; `limit` (at most
DLQ_PAGE_LIMIT) how many of the newest to look at.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from confluent_kafka import KafkaException

from avro_codec import RegistryUnavailable

from ..app import app, settings
from ..dead_letters import recent
from ..dead_letters.formatting import json_object
from ..dead_letters.ledger import Entry, LedgerError
from ..dead_letters.letters import DeadLetter

log = logging.getLogger(__name__)

SNAPSHOT_SECONDS = 2.0
UNAVAILABLE = (RegistryUnavailable, KafkaException, TimeoutError, LedgerError)

Snapshot = list[tuple[DeadLetter, Entry | None]]


class _Snapshots:
    """The last read of the DLQ's tail, shared while fresh; one read at a time."""

    def __init__(self) -> None:
        self._taken_at = -SNAPSHOT_SECONDS
        self._snapshot: Snapshot = []
        self._lock = asyncio.Lock()  # binds to the event loop at its first use, not here

    async def get(self) -> Snapshot:
        async with self._lock:
            if time.monotonic() - self._taken_at >= SNAPSHOT_SECONDS:
                runtime = app.runtime
                await runtime.replays.refresh()
                self._snapshot = await asyncio.to_thread(
                    recent.newest, runtime.kafka_config, settings.dlq_topic, settings.dlq_page_limit,
                    runtime.codec.loads, runtime.replays.entry)
                self._taken_at = time.monotonic()
            return self._snapshot


_snapshots = _Snapshots()


def _limit(text: str | None) -> int:
    if text is None:
        return settings.dlq_page_limit
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"limit must be a whole number >= 1, got {text!r}")
    return min(int(text), settings.dlq_page_limit)


@app.page("/dead-letters/")
async def dead_letters(web, request):
    """The newest dead letters (newest first), each with its reason, error, original coordinates and replay state."""
    try:
        limit = _limit(request.query.get("limit"))
    except ValueError as exc:
        return web.json({"error": str(exc)}, status=400)
    reason = request.query.get("reason") or None
    try:
        window = (await _snapshots.get())[:limit]
    except UNAVAILABLE as exc:
        log.warning("GET /dead-letters/: cannot read %s: %s", settings.dlq_topic, exc)
        return web.json({"error": f"cannot read {settings.dlq_topic}: {exc}"}, status=503)
    return web.json({
        "topic": settings.dlq_topic, "limit": limit, "reason": reason,
        # reasons among the newest `limit`, so the page can offer them as filters
        "reasons": dict(Counter(letter.reason or "?" for letter, _entry in window)),
        "dead_letters": [json_object(letter, entry) for letter, entry in window
                         if reason is None or (letter.reason or "?") == reason],
    })
