"""Reads records that the Faust consumer skipped, straight from the partition.

Around rebalances and restarts Faust can deliver a record beyond the next
unprocessed one and commit past the skipped offsets (prefetched records,
faust-streaming issues 216 and 221; seen here when a worker was killed). The
agents know the last offset they applied per partition, so when a record
arrives past `last applied + 1` they fetch the records in between with a
short-lived consumer of their own and apply them first. Offsets that hold no
record (retention, transaction markers) simply yield nothing. The records come
back as Faust messages (timestamps in seconds), like the stream's own.
"""
from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from faust.types import Message


def as_message(record: ConsumerRecord) -> Message:
    """The record as Faust delivers it: the same fields, the timestamp in seconds instead of milliseconds."""
    timestamp_s = None if record.timestamp is None else record.timestamp / 1000.0
    return Message(record.topic, record.partition, record.offset, timestamp_s, record.timestamp_type,
                   record.headers, record.key, record.value, record.checksum)


async def read_range(client_config: dict[str, Any], topic: str, partition: int, start: int, end: int
                     ) -> list[Message]:
    """Records of topic/partition with start <= offset < end, in order (`client_config`: aiokafka arguments)."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(**client_config, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, start)
        records: list[Message] = []
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1000)
            records.extend(as_message(record) for record in batch.get(tp, []) if start <= record.offset < end)
        return records
    finally:
        await consumer.stop()
