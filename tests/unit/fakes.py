"""An in-memory stand-in for the schema registry, for tests without services."""
from __future__ import annotations

from typing import Any

import fastavro

from avro_codec import AvroCodecError


class InMemorySchemaCache:
    def __init__(self) -> None:
        self.schemas: dict[int, dict[str, Any]] = {}
        self.registrations: list[str] = []

    def add(self, schema_id: int, schema: dict[str, Any]) -> None:
        self.schemas[schema_id] = fastavro.parse_schema(schema)

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        self.registrations.append(subject)
        schema_id = len(self.schemas) + 1
        self.add(schema_id, schema)
        return schema_id

    def cached(self, schema_id: int):
        return self.schemas.get(schema_id)

    def writer_schema(self, schema_id: int):
        if schema_id not in self.schemas:
            raise AvroCodecError("unknown-schema-id", f"schema id {schema_id} is not in the registry")
        return self.schemas[schema_id]

    async def fetch(self, schema_id: int):
        return self.writer_schema(schema_id)
