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
from functools import partial
from typing import Any

import fastavro
import httpx
from schema_registry.client import SchemaRegistryClient
from schema_registry.client.errors import ClientError

from .errors import AvroCodecError, RegistryUnavailable

log = logging.getLogger(__name__)

APICURIO_CCOMPAT_PATH = "/apis/ccompat/v7"


class SchemaCache:
    def __init__(self, url: str, *, auth: tuple[str, str] | None = None, timeout_s: float = 10.0) -> None:
        self.configured_url = url.rstrip("/")
        self._auth = httpx.BasicAuth(*auth) if auth else None
        self._timeout = httpx.Timeout(timeout_s)
        self._client: SchemaRegistryClient | None = None
        self._lock = threading.Lock()
        self._writers: dict[int, dict[str, Any]] = {}
        #: schema id -> the request on its way for it
        self._fetching: dict[int, asyncio.Task] = {}

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

    def ping(self, timeout_s: float) -> None:
        """Ask the registry's subjects list once; RegistryUnavailable unless it answers 200 within `timeout_s`."""
        base = self.base_url
        try:
            resp = httpx.get(f"{base}/subjects", timeout=timeout_s, auth=self._auth)
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"schema registry at {base} unreachable: {exc}") from exc
        if resp.status_code != 200:
            raise RegistryUnavailable(f"schema registry at {base} answered HTTP {resp.status_code}")

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

    async def fetch(self, schema_id: int) -> dict[str, Any]:
        """`writer_schema` off the event loop: one attempt (waiting out an outage is the caller's policy).

        One request per id at a time: the partitions of a new worker all meet an uncached id at their
        first record, and those asking while it is on its way wait for its answer."""
        schema = self._writers.get(schema_id)
        if schema is not None:
            return schema
        loop = asyncio.get_running_loop()
        asked = self._fetching.get(schema_id)
        if asked is None or asked.get_loop() is not loop:
            asked = loop.create_task(asyncio.to_thread(self.writer_schema, schema_id), name=f"schema-{schema_id}")
            self._fetching[schema_id] = asked
            asked.add_done_callback(partial(self._fetched, schema_id))
        # Shielded: one asker cancelled (its partition stopped) does not cancel the others' answer.
        return await asyncio.shield(asked)

    def _fetched(self, schema_id: int, asked: asyncio.Task) -> None:
        if self._fetching.get(schema_id) is asked:
            del self._fetching[schema_id]
        if not asked.cancelled():
            asked.exception()  # retrieved here: every asker may have been cancelled meanwhile


def _excerpt(text: str, limit: int = 120) -> str:
    """The start of an error body on one line (a proxy's HTML page can be long)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."
