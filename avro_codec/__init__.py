"""Avro in the Confluent wire format, as a Faust codec.

Named `avro_codec` rather than `codecs`: the standard library owns `codecs`,
and a top-level package of that name would shadow it (or be shadowed).
"""
from .codec import AvroRecordCodec, load_schema
from .errors import AvroCodecError, RegistryUnavailable
from .registry import SchemaCache

__all__ = ["AvroCodecError", "AvroRecordCodec", "RegistryUnavailable", "SchemaCache", "load_schema"]
