"""Lets `faust -A app send orders '<json>'` go through the Avro codec.

Faust's `send` command hands the value over as bytes, and Faust's serializer
registry never encodes bytes. For the codec named here, this registry does:
the codec accepts JSON text, checks it against the schema and encodes it.
"""
from __future__ import annotations

from typing import Any

from faust.serializers import Registry

ORDER_CODEC_NAME = "order_avro"


class OrderSerializers(Registry):
    def dumps_value(self, typ: Any, value: Any, *, serializer: Any = None, skip: Any = (bytes,)) -> bytes | None:
        if self._serializer(typ, serializer, self.value_serializer) == ORDER_CODEC_NAME:
            skip = ()
        return super().dumps_value(typ, value, serializer=serializer, skip=skip)
