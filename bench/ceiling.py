"""The ceiling: how fast plain Python reads, decodes and adds up the same orders, with no Faust at all.

A bare aiokafka consumer (partitions assigned, no group, no commits) fetches
with `getmany`; each value loses its 5-byte Confluent header and is decoded by
fastavro's schemaless reader with the writer schema fetched and parsed once;
then the app's own `validate` and integer-micros price, summed per partition.
"""
from __future__ import annotations

import asyncio
import io
import time

import fastavro
from aiokafka import AIOKafkaConsumer, TopicPartition

from avro_codec import SchemaCache
from avro_codec.wire import HEADER_BYTES
from orders.client_config import aiokafka_config
from orders.domain.order import InvalidOrder, validate
from orders.settings import Settings

from .run import BenchFailure
from .tally import Tally

FETCH_TIMEOUT_MS = 1000
IDLE_LIMIT_S = 30


async def _read_all(settings: Settings, registry: SchemaCache, topic: str, partitions: int) -> Tally:
    consumer = AIOKafkaConsumer(**aiokafka_config(settings), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        orders = {p: 0 for p in range(partitions)}
        micros = {p: 0 for p in range(partitions)}
        invalid = 0
        writers: dict[bytes, dict] = {}  # header -> parsed writer schema, fetched once per schema id
        started = last_progress = time.monotonic()
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=FETCH_TIMEOUT_MS)
            if not batches and time.monotonic() - last_progress > IDLE_LIMIT_S:
                raise BenchFailure(f"ceiling: no records for {IDLE_LIMIT_S} s with {len(remaining)} partitions "
                                   f"of {topic} not read to the end")
            for tp, records in batches.items():
                last_progress = time.monotonic()
                count = total = 0
                for record in records:
                    value = record.value
                    header = value[:HEADER_BYTES]
                    writer = writers.get(header)
                    if writer is None:
                        writer = writers[header] = registry.writer_schema(int.from_bytes(header[1:], "big"))
                    decoded = fastavro.schemaless_reader(io.BytesIO(value[HEADER_BYTES:]), writer, None)
                    try:
                        order = validate(decoded)
                    except InvalidOrder:
                        invalid += 1
                        continue
                    count += 1
                    total += order.price_micros
                orders[tp.partition] += count
                micros[tp.partition] += total
                if records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        elapsed = time.monotonic() - started
    finally:
        await consumer.stop()
    return Tally(sum(orders.values()), sum(micros.values()), elapsed, invalid=invalid)


def measure_ceiling(settings: Settings, registry: SchemaCache, topic: str, partitions: int) -> Tally:
    """Read `topic` from the beginning to its current end; the time counts from the first fetch."""
    return asyncio.run(_read_all(settings, registry, topic, partitions))
