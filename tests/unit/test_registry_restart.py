"""A registry that has just come back may not know its schema ids yet (Apicurio replaying its journal)."""
import asyncio

import pytest

from avro_codec import AvroCodecError, RegistryUnavailable, SchemaCache
from orders import schemas as registry_module
from orders.schemas import PatientRegistry

REAL_SLEEP = asyncio.sleep
SCHEMA = {"type": "record", "name": "O", "fields": []}


def scripted(registry: PatientRegistry, answers: list) -> list:
    """Make the registry's one-attempt look-up answer from `answers` in turn (exceptions are raised); return the
    call log."""
    calls = []

    async def fetch(schema_id: int):
        calls.append(schema_id)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    registry.cache.fetch = fetch
    return calls


def patient() -> PatientRegistry:
    return PatientRegistry(SchemaCache("http://registry.invalid"))


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    async def sleep(_seconds):
        return None
    monkeypatch.setattr(registry_module.asyncio, "sleep", sleep)


def unknown() -> AvroCodecError:
    return AvroCodecError("unknown-schema-id", "schema id 7 is not in the registry")


def test_an_unknown_id_fails_at_once_when_no_outage_was_seen():
    cache = patient()
    calls = scripted(cache, [unknown()])
    with pytest.raises(AvroCodecError, match="unknown-schema-id"):
        asyncio.run(cache.fetch(7))
    assert calls == [7]


def test_an_unknown_id_is_asked_again_just_after_the_registry_comes_back():
    cache = patient()
    calls = scripted(cache, [RegistryUnavailable("down"), unknown(), unknown(), SCHEMA])
    assert asyncio.run(cache.fetch(7)) == SCHEMA
    assert calls == [7, 7, 7, 7]


def test_an_unknown_id_fails_once_the_grace_after_an_outage_is_over(monkeypatch):
    cache = patient()
    now = [1000.0]
    monkeypatch.setattr(registry_module.time, "monotonic", lambda: now[0])
    scripted(cache, [RegistryUnavailable("down"), SCHEMA])
    asyncio.run(cache.fetch(7))
    now[0] += registry_module.UNKNOWN_ID_GRACE_S
    scripted(cache, [unknown()])
    with pytest.raises(AvroCodecError, match="unknown-schema-id"):
        asyncio.run(cache.fetch(8))


def test_an_unreachable_registry_is_given_up_on_after_the_fetch_timeout(monkeypatch):
    monkeypatch.setattr(registry_module.asyncio, "sleep", REAL_SLEEP)
    cache = patient()
    calls = scripted(cache, [RegistryUnavailable("HTTP 502") for _ in range(50)])
    with pytest.raises(RegistryUnavailable, match="HTTP 502"):
        asyncio.run(cache.fetch(7, timeout_s=0.5))
    assert 2 <= len(calls) <= 4, "asked at 0, then after about 0.2 s (and 0.4 s, if it fits), then given up"
