"""The schema registry as the worker and its commands use it: `avro_codec`'s `SchemaCache`, with outages waited
out by this app's policy (the codec package itself makes one attempt and says what failed).

- `wait_until_reachable`: at start-up, ask until the registry answers, up to STARTUP_TIMEOUT_SECONDS.
- `fetch`: a writer schema not cached yet, asked again with backoff for up to FETCH_TIMEOUT_S; then
  `RegistryUnavailable`, and the partition task puts its transaction back and tries later, rather than hold
  it open through an outage. An id the registry does not know is an answer about the record
  (`AvroCodecError`), except within UNKNOWN_ID_GRACE_S of the registry coming back from an outage: Apicurio
  with kafkasql storage answers 404 for existing ids until it has replayed its journal.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from avro_codec import AvroCodecError, RegistryUnavailable, SchemaCache

from .backoff import Backoff

log = logging.getLogger(__name__)

#: How long after the registry (re)appears an unknown schema id is asked again instead of dead-lettered.
UNKNOWN_ID_GRACE_S = 60.0
#: How long `fetch` waits for an unreachable registry before it gives up.
FETCH_TIMEOUT_S = 20.0
#: The longest pause between two attempts.
MAX_BACKOFF_S = 10.0


class PatientRegistry:
    """A SchemaCache whose look-ups wait out outages (what the codec is given to read schemas with)."""

    def __init__(self, cache: SchemaCache) -> None:
        self.cache = cache
        self._in_outage = False
        self._back_since: float | None = None  # monotonic time of the first answer after an outage

    # the codec's registry interface, as SchemaCache has it
    def cached(self, schema_id: int) -> dict[str, Any] | None:
        return self.cache.cached(schema_id)

    def writer_schema(self, schema_id: int) -> dict[str, Any]:
        return self.cache.writer_schema(schema_id)

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        return self.cache.register(subject, schema)

    @property
    def base_url(self) -> str:
        return self.cache.base_url

    def wait_until_reachable(self, timeout_s: float) -> None:
        """Block until the registry answers, retrying with backoff; RegistryUnavailable after `timeout_s`."""
        backoff = Backoff(0.5, MAX_BACKOFF_S, timeout_s)
        while True:
            try:
                self.cache.connect()
                return
            except RegistryUnavailable as exc:
                delay = backoff.next_delay()
                if delay is None:
                    raise RegistryUnavailable(f"{exc} (gave up after {timeout_s:.0f}s)") from exc
                log.warning("%s; retrying in %.1fs", exc, delay)
                time.sleep(delay)

    async def fetch(self, schema_id: int, timeout_s: float = FETCH_TIMEOUT_S) -> dict[str, Any]:
        """The writer schema of `schema_id`, off the event loop, waiting out a short outage (see the module)."""
        backoff = Backoff(0.2, MAX_BACKOFF_S, timeout_s)
        while True:
            try:
                schema = await self.cache.fetch(schema_id)
            except RegistryUnavailable as exc:
                self._in_outage = True
                delay = backoff.next_delay()
                if delay is None:
                    raise RegistryUnavailable(f"{exc} (for {timeout_s:.0f}s)") from exc
                log.warning("%s; retrying in %.1fs", exc, delay)
            except AvroCodecError as exc:
                back_for_s = self._note_answer()
                if exc.reason != "unknown-schema-id" or back_for_s is None or back_for_s >= UNKNOWN_ID_GRACE_S:
                    raise
                delay = backoff.next_delay()
                if delay is None:
                    raise RegistryUnavailable(f"{exc}, and the registry came back from an outage {back_for_s:.0f}s "
                                              f"ago: it may still be loading its schemas") from exc
                log.warning("%s, but the registry came back from an outage %.0fs ago and may still be loading "
                            "its schemas; asking again in %.1fs", exc, back_for_s, delay)
            else:
                self._note_answer()
                return schema
            await asyncio.sleep(delay)

    def _note_answer(self) -> float | None:
        """Record that the registry answered; seconds since it came back from an outage (None: none seen)."""
        now = time.monotonic()
        if self._in_outage:
            self._in_outage = False
            self._back_since = now
        return None if self._back_since is None else now - self._back_since
