"""The replay ledger as a running worker sees it: one `LedgerIndex`, caught up at most every REFRESH_S, so the
web view learns what `dlq replay` replayed (the panel's "replayed" column, the outstanding dead letters of
`/average/` and `/metrics`) by reading each ledger record once."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from .ledger import Entry, LedgerIndex

#: How long what the ledger said is reused before it is read again.
REFRESH_S = 5.0


class LedgerFollower:
    def __init__(self, config: Mapping[str, Any], topic: str) -> None:
        self.config = config
        self.topic = topic
        self._index: LedgerIndex | None = None
        self._read_at = -REFRESH_S
        self._lock: asyncio.Lock | None = None

    async def refresh(self) -> None:
        """Fold what the ledger gained since the last look, unless that look is recent (Kafka errors raise)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if time.monotonic() - self._read_at < REFRESH_S:
                return
            if self._index is None:
                self._index = LedgerIndex()
            await asyncio.to_thread(self._index.catch_up, self.config, self.topic)
            self._read_at = time.monotonic()

    def entry(self, dedupe_key: str) -> Entry | None:
        """The ledger's entry for a dead letter (None: not replayed, or not read yet)."""
        return None if self._index is None else self._index.get(dedupe_key)

    def replayed(self) -> int:
        """Dead letters replayed, as of the last refresh."""
        return 0 if self._index is None else len(self._index)
