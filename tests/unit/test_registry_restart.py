"""A registry that has just come back may not know its schema ids yet (Apicurio replaying its journal)."""
import asyncio

import pytest

from avro_codec import AvroCodecError, RegistryUnavailable, SchemaCache
from avro_codec import registry as registry_module

SCHEMA = {"type": "record", "name": "O", "fields": []}


def scripted(cache: SchemaCache, answers: list) -> list:
    """Make `cache.writer_schema` answer from `answers` in turn (exceptions are raised); return the call log."""
    calls = []

    def writer_schema(schema_id: int):
        calls.append(schema_id)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    cache.writer_schema = writer_schema
    return calls


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    async def sleep(_seconds):
        return None
    monkeypatch.setattr(registry_module.asyncio, "sleep", sleep)


def unknown() -> AvroCodecError:
    return AvroCodecError("unknown-schema-id", "schema id 7 is not in the registry")


def test_an_unknown_id_fails_at_once_when_no_outage_was_seen():
    cache = SchemaCache("http://registry.invalid")
    calls = scripted(cache, [unknown()])
    with pytest.raises(AvroCodecError, match="unknown-schema-id"):
        asyncio.run(cache.fetch(7))
    assert calls == [7]


def test_an_unknown_id_is_asked_again_just_after_the_registry_comes_back():
    cache = SchemaCache("http://registry.invalid")
    calls = scripted(cache, [RegistryUnavailable("down"), unknown(), unknown(), SCHEMA])
    assert asyncio.run(cache.fetch(7)) == SCHEMA
    assert calls == [7, 7, 7, 7]


def test_an_unknown_id_fails_once_the_grace_after_an_outage_is_over(monkeypatch):
    cache = SchemaCache("http://registry.invalid")
    now = [1000.0]
    monkeypatch.setattr(registry_module.time, "monotonic", lambda: now[0])
    scripted(cache, [RegistryUnavailable("down"), SCHEMA])
    asyncio.run(cache.fetch(7))
    now[0] += registry_module.UNKNOWN_ID_GRACE_S
    scripted(cache, [unknown()])
    with pytest.raises(AvroCodecError, match="unknown-schema-id"):
        asyncio.run(cache.fetch(8))
