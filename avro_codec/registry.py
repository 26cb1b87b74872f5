"""Schema registry access with the caching a stream processor needs.

Writer schemas are fetched once per id and kept, so decoding in steady state
makes no HTTP call. The registry URL may point at Confluent's API (served at
the root) or at Apicurio's Confluent-compatible API under /apis/ccompat/v7;
`SchemaCache` finds out which on first use, so one default works for both.

Whatever shape a failed answer takes (a 5xx with an HTML page from a proxy,
malformed JSON, a reset connection, a timeout) it is `RegistryUnavailable`:
python-schema-registry-client parses the body before it looks at the status,
so a proxy's 502 page reaches us as a `JSONDecodeError`, not as its
`ClientError`. Only the registry's own "no such id" or a schema that is not
Avro are answers about the record (`AvroCodecError`).
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any

import fastavro
import httpx
from schema_registry.client import SchemaRegistryClient
from schema_registry.client.errors import ClientError

from .backoff import Backoff
from .errors import AvroCodecError, RegistryUnavailable

log = logging.getLogger(__name__)

APICURIO_CCOMPAT_PATH = "/apis/ccompat/v7"
#: How long after the registry (re)appears an unknown schema id is retried instead of dead-lettered:
#: Apicurio with kafkasql storage answers 404 for existing ids until it has replayed its journal.
UNKNOWN_ID_GRACE_S = 60.0
#: How long `fetch` waits for the registry before it gives up (RegistryUnavailable): the caller (a partition
#: task) then puts its transaction back and tries again later, rather than hold it open through an outage.
FETCH_TIMEOUT_S = 20.0


class SchemaCache:
    def __init__(self, url: str, *, auth: tuple[str, str] | None = None, timeout_s: float = 10.0,
                 max_backoff_s: float = 10.0) -> None:
        self.configured_url = url.rstrip("/")
        self._auth = httpx.BasicAuth(*auth) if auth else None
        self._timeout = httpx.Timeout(timeout_s)
        self._max_backoff_s = max_backoff_s
        self._client: SchemaRegistryClient | None = None
        self._lock = threading.Lock()
        self._writers: dict[int, dict[str, Any]] = {}
        self._in_outage = False
        self._back_since: float | None = None  # monotonic time of the first answer after an outage

    # -- connection ----------------------------------------------------------

    def _detect_base_url(self) -> str:
        candidates = [self.configured_url]
        if not self.configured_url.endswith(APICURIO_CCOMPAT_PATH):
            candidates.append(self.configured_url + APICURIO_CCOMPAT_PATH)
        for base in candidates:
            try:
                resp = httpx.get(f"{base}/subjects", timeout=self._timeout, auth=self._auth)
            except httpx.HTTPError as exc:
                raise RegistryUnavailable(f"schema registry at {self.configured_url} unreachable: {exc}") from exc
            if resp.status_code == 200 and resp.text.lstrip().startswith("["):
                return base
            if resp.status_code in (401, 403):
                raise RegistryUnavailable(f"schema registry at {base} refused the credentials "
                                          f"(HTTP {resp.status_code}); check SCHEMA_REGISTRY_USERNAME/PASSWORD")
            if resp.status_code >= 500:
                raise RegistryUnavailable(f"schema registry at {base} unavailable: HTTP {resp.status_code} "
                                          f"{_excerpt(resp.text)}")
        raise RegistryUnavailable(
            f"{self.configured_url} answers neither the Confluent schema registry API nor Apicurio's "
            f"({APICURIO_CCOMPAT_PATH}); check SCHEMA_REGISTRY_URL")

    def connect(self) -> None:
        """Find the registry's API (root or Apicurio's ccompat path) unless already found; RegistryUnavailable."""
        self.client  # noqa: B018  (the property connects)

    @property
    def client(self) -> SchemaRegistryClient:
        with self._lock:
            if self._client is None:
                base = self._detect_base_url()
                log.info("schema registry API at %s", base)
                self._client = SchemaRegistryClient(base, timeout=self._timeout, auth=self._auth)
            return self._client

    def wait_until_reachable(self, timeout_s: float) -> None:
        """Block until the registry answers, retrying with backoff; RegistryUnavailable after `timeout_s`."""
        backoff = Backoff(0.5, self._max_backoff_s, timeout_s)
        while True:
            try:
                self.connect()
                return
            except RegistryUnavailable as exc:
                delay = backoff.next_delay()
                if delay is None:
                    raise RegistryUnavailable(f"{exc} (gave up after {timeout_s:.0f}s)") from exc
                log.warning("%s; retrying in %.1fs", exc, delay)
                time.sleep(delay)

    @property
    def base_url(self) -> str:
        return str(self.client.conf["url"])

    # -- schemas -------------------------------------------------------------

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        """Register `schema` under `subject` (a no-op when already there); return its id."""
        try:
            return self.client.register(subject, json.dumps(schema), timeout=self._timeout)
        except ClientError as exc:
            if exc.http_code is not None and exc.http_code < 500:
                body = exc.server_traceback
                detail = body.get("message", body) if isinstance(body, dict) else body or str(exc)
                why = ", incompatible with the version registered before" if exc.http_code == 409 else ""
                raise AvroCodecError("schema-rejected", f"the registry refused the schema for {subject} "
                                     f"(HTTP {exc.http_code}{why}): {detail}") from exc
            raise RegistryUnavailable(f"registering {subject} failed: {exc}") from exc
        except Exception as exc:  # any other shape of failed answer (see the module's docstring)
            raise RegistryUnavailable(f"registering {subject} failed: {type(exc).__name__}: {exc}") from exc

    def cached(self, schema_id: int) -> dict[str, Any] | None:
        return self._writers.get(schema_id)

    def writer_schema(self, schema_id: int) -> dict[str, Any]:
        """Parsed writer schema for `schema_id`, from the cache or the registry (blocking)."""
        schema = self._writers.get(schema_id)
        if schema is not None:
            return schema
        try:
            found = self.client.get_by_id(schema_id, timeout=self._timeout)
        except RegistryUnavailable:
            raise
        except Exception as exc:  # any shape of failed answer (see the module's docstring)
            raise RegistryUnavailable(f"fetching schema id {schema_id} failed: {type(exc).__name__}: "
                                      f"{_excerpt(str(exc))}") from exc
        if found is None:
            raise AvroCodecError("unknown-schema-id", f"schema id {schema_id} is not in the registry")
        if found.schema_type != "AVRO":
            raise AvroCodecError("not-avro", f"schema id {schema_id} is a {found.schema_type} schema")
        try:
            schema = fastavro.parse_schema(found.raw_schema)
        except Exception as exc:
            raise AvroCodecError("bad-writer-schema", f"schema id {schema_id} does not parse as Avro: {exc}"
                                 ) from exc
        self._writers[schema_id] = schema
        return schema

    async def fetch(self, schema_id: int, timeout_s: float = FETCH_TIMEOUT_S) -> dict[str, Any]:
        """Like `writer_schema`, off the event loop, waiting out a short registry outage with backoff.

        An unreachable registry is asked again for up to `timeout_s`, then
        `RegistryUnavailable` is raised. An id the registry does not know
        raises `AvroCodecError`, except within UNKNOWN_ID_GRACE_S of the
        registry coming back from an outage: a registry that has just
        restarted may still be loading its schemas, so the id is asked again
        (and past `timeout_s` that is `RegistryUnavailable` too).
        """
        backoff = Backoff(0.2, self._max_backoff_s, timeout_s, jitter=0.2)
        while True:
            try:
                schema = await asyncio.to_thread(self.writer_schema, schema_id)
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


def _excerpt(text: str, limit: int = 120) -> str:
    """The start of an error body on one line (a proxy's HTML page can be long)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."
