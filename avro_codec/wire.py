"""Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro body."""
from __future__ import annotations

import struct

from .errors import AvroCodecError

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")
#: the magic byte and the schema id
HEADER_BYTES = _HEADER.size


def frame(schema_id: int, body: bytes) -> bytes:
    return _HEADER.pack(MAGIC_BYTE, schema_id) + body


def unframe(data: bytes | None) -> tuple[int, memoryview]:
    """Split framed bytes into (schema id, Avro body)."""
    if not data:
        raise AvroCodecError("empty", "the message has no value")
    if len(data) < _HEADER.size:
        raise AvroCodecError("truncated", f"{len(data)} bytes is shorter than the 5-byte header")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC_BYTE:
        if magic == 1:
            detail = "magic byte 1 means the schema id travels in a header; only the id-prefix format is supported"
        else:
            detail = f"magic byte {magic}, expected {MAGIC_BYTE}: not Confluent-framed Avro"
        raise AvroCodecError("wrong-magic-byte", detail)
    return schema_id, memoryview(data)[_HEADER.size:]
