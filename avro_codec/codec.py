"""A Faust codec for one Avro record type in the Confluent wire format."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import ValidationError, validate
from faust.serializers.codecs import Codec

from . import wire
from .errors import AvroCodecError
from .registry import SchemaCache


def load_schema(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


class AvroRecordCodec(Codec):
    """Encodes dicts (or their JSON text) and decodes framed bytes to dicts.

    Encoding registers the reader schema under `subject` once, then reuses the
    id. Decoding reads with the writer schema named by the message's id and
    resolves it to the reader schema, so older and newer producers both work.
    """

    def __init__(self, registry: SchemaCache, schema: dict[str, Any], subject: str) -> None:
        super().__init__()
        self.registry = registry
        self.subject = subject
        self.raw_schema = schema
        self.schema = fastavro.parse_schema(schema)
        self._canonical = to_parsing_canonical_form(self.schema)
        self._field_names = {field["name"] for field in schema["fields"]}
        self._defaults = {field["name"]: field["default"] for field in schema["fields"] if "default" in field}
        self._schema_id: int | None = None
        # writer schema id -> reader schema to resolve to (None when identical)
        self._resolution: dict[int, dict[str, Any] | None] = {}
        # a valid 5-byte header whose writer schema is cached -> (schema id, writer, reader): the hot path's
        # one look-up per record (a schema id names the same schema for good, so this never goes stale)
        self._plans: dict[bytes, tuple[int, dict[str, Any], dict[str, Any] | None]] = {}

    # -- encoding ------------------------------------------------------------

    @property
    def schema_id(self) -> int:
        """The id of the reader schema under `subject`, registered on first use."""
        if self._schema_id is None:
            self._schema_id = self.registry.register(self.subject, self.raw_schema)
        return self._schema_id

    def register_schema(self) -> int:
        """Register the schema now (an outage or a refused change surfaces here); return its id."""
        return self.schema_id

    def to_record(self, obj: Any) -> dict[str, Any]:
        """Accept a dict or its JSON text (what `faust send` passes); check it fits the schema."""
        if isinstance(obj, (bytes, str)):
            try:
                obj = json.loads(obj)
            except ValueError as exc:
                raise AvroCodecError("not-json", f"value is not valid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise AvroCodecError("not-a-record", f"expected a JSON object, got {type(obj).__name__}")
        unknown = set(obj) - self._field_names
        if unknown:
            raise AvroCodecError("does-not-fit-schema",
                                 f"unknown field(s) {sorted(unknown)}; {self.raw_schema['name']} has "
                                 f"{sorted(self._field_names)}")
        obj = {**self._defaults, **obj}
        try:
            validate(obj, self.schema, raise_errors=True)
        except ValidationError as exc:
            raise AvroCodecError("does-not-fit-schema", f"record does not fit {self.raw_schema['name']}: {exc}"
                                 ) from exc
        return obj

    def encode(self, record: Any) -> bytes:
        """Framed bytes of a dict or its JSON text, checked against the schema first (clear errors)."""
        return self.encode_fitting(self.to_record(record))

    def encode_fitting(self, record: dict[str, Any]) -> bytes:
        """Framed bytes of a dict that a program built to fit the schema: no JSON, no separate check."""
        out = io.BytesIO()
        fastavro.schemaless_writer(out, self.schema, record)
        return wire.frame(self.schema_id, out.getvalue())

    def _dumps(self, obj: Any) -> bytes:
        return self.encode(obj)

    # -- decoding ------------------------------------------------------------

    def _reader_for(self, schema_id: int, writer: dict[str, Any]) -> dict[str, Any] | None:
        if schema_id not in self._resolution:
            same = to_parsing_canonical_form(writer) == self._canonical
            self._resolution[schema_id] = None if same else self.schema
        return self._resolution[schema_id]

    def decode_with(self, schema_id: int, data: bytes, writer: dict[str, Any]) -> dict[str, Any]:
        """The record in framed `data` (its header checked already), read with `writer`."""
        return self._read(schema_id, data, writer, self._reader_for(schema_id, writer))

    def _read(self, schema_id: int, data: bytes, writer: dict[str, Any], reader: dict[str, Any] | None
              ) -> dict[str, Any]:
        """The record in framed `data`, read with `writer` and resolved to `reader` (None: the same schema)."""
        stream = io.BytesIO(data)
        stream.seek(wire.HEADER_BYTES)
        try:
            record = fastavro.schemaless_reader(stream, writer, reader)
        except fastavro.read.SchemaResolutionError as exc:
            raise AvroCodecError("incompatible-schema",
                                 f"writer schema {schema_id} cannot be read as {self.raw_schema['name']}: {exc}"
                                 ) from exc
        except Exception as exc:  # fastavro signals bad bytes with many types
            raise AvroCodecError("corrupt-body", f"Avro body does not decode with schema {schema_id}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        if stream.tell() != len(data):
            raise AvroCodecError("corrupt-body", f"{len(data) - stream.tell()} bytes left over after the "
                                 f"record: not a record of schema {schema_id}")
        if not isinstance(record, dict):
            raise AvroCodecError("incompatible-schema", f"schema {schema_id} is not a record schema")
        return record

    def _loads(self, data: bytes) -> dict[str, Any]:
        schema_id, _body = wire.unframe(data)
        return self.decode_with(schema_id, data, self.registry.writer_schema(schema_id))

    async def decode(self, data: bytes | None) -> dict[str, Any]:
        """Decode without blocking the event loop: the registry is asked only on a cache miss."""
        schema_id, _body = wire.unframe(data)
        writer = self.registry.cached(schema_id)
        if writer is None:
            writer = await self.registry.fetch(schema_id)
        return self.decode_with(schema_id, data, writer)

    def decode_cached(self, data: bytes | None) -> dict[str, Any] | None:
        """Decode when the writer schema is cached (no waiting: the hot path); None when it is not."""
        # bytes only: a bytearray's slice cannot be a key (None and b"" fall through to unframe's errors)
        plan = self._plans.get(data[:wire.HEADER_BYTES]) if type(data) is bytes else None
        if plan is None:
            schema_id, _body = wire.unframe(data)  # a clear error for a header that is not Confluent framing
            writer = self.registry.cached(schema_id)
            if writer is None:
                return None
            plan = self._plans[bytes(data[:wire.HEADER_BYTES])] = (schema_id, writer,
                                                                   self._reader_for(schema_id, writer))
        schema_id, writer, reader = plan
        return self._read(schema_id, data, writer, reader)
