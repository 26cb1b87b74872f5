"""Lets `faust -A app send orders '<json>'` go through the Avro codec, built when it is first used.

Faust's `send` command hands the value over as bytes, and Faust's serializer
registry never encodes bytes (`Registry.dumps_value` skips them). For the
codec named here, this registry does: the codec accepts JSON text, checks it
against the schema and encodes it. The codec is registered under its name when
the app is built (Faust looks codecs up by name), as a `LazyCodec` that builds
the real one (and its registry client) only when it first encodes or decodes.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faust.serializers import Registry
from faust.serializers.codecs import Codec

ORDER_CODEC_NAME = "order_avro"


class OrderSerializers(Registry):
    def dumps_value(self, typ: Any, value: Any, *, serializer: Any = None, skip: Any = (bytes,)) -> bytes | None:
        if self._serializer(typ, serializer, self.value_serializer) == ORDER_CODEC_NAME:
            skip = ()
        return super().dumps_value(typ, value, serializer=serializer, skip=skip)


class LazyCodec(Codec):
    """A codec built on first use by `build()`."""

    def __init__(self, build: Callable[[], Codec]) -> None:
        super().__init__()
        self._build = build

    def _dumps(self, obj: Any) -> bytes:
        return self._build().dumps(obj)

    def _loads(self, data: bytes) -> Any:
        return self._build().loads(data)
