"""The bound on what the consumer fetches ahead (orders/faust_overrides/read_ahead.py), on a real broker's fetch
responses and aiokafka's own fetch routine: a consumer owning many partitions of large record batches, taking
its records slowly."""
from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from orders.faust_overrides.consumer import FETCH_MAX_BYTES, FETCH_MAX_WAIT_MS
from orders.faust_overrides.read_ahead import ReadAhead
from orders.kafka import producing
from tests.stack import BOOTSTRAP

from .conftest import KAFKA_CONFIG, create_topic

PARTITIONS = 48
BATCHES_PER_PARTITION = 4
RECORDS_PER_BATCH = 60
VALUE = b"v" * 1000  # a batch of about 62 KB: larger than the 32 KiB share each partition had at 192 partitions
LIMIT = 2 * 1024 * 1024


def write_large_batches(topic: str) -> int:
    """BATCHES_PER_PARTITION batches of RECORDS_PER_BATCH records on every partition; the records written."""
    producer = producing.producer(KAFKA_CONFIG, **{"linger.ms": 1000, "batch.size": 1_000_000})
    for _ in range(BATCHES_PER_PARTITION):
        for partition in range(PARTITIONS):
            for i in range(RECORDS_PER_BATCH):
                producing.produce(producer, topic, key=str(i).encode(), value=VALUE, partition=partition,
                                  on_delivery=lambda err, msg: None)
        assert producer.flush(30) == 0  # one batch per partition and flush
    return PARTITIONS * BATCHES_PER_PARTITION * RECORDS_PER_BATCH


async def read_slowly(topic: str, total: int) -> tuple[int, int, int]:
    """Take every record, 500 at a time with a pause after each take; (distinct records taken, largest read-ahead
    held after a take, fetch rounds the bound held back)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed", fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
                                fetch_max_bytes=FETCH_MAX_BYTES, auto_offset_reset="earliest")
    await consumer.start()
    try:
        fetcher = consumer._fetcher
        read_ahead = ReadAhead(fetcher, limit=LIMIT)
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        taken: set[tuple[int, int]] = set()
        held = 0
        deadline = asyncio.get_running_loop().time() + 60
        while len(taken) < total:
            assert asyncio.get_running_loop().time() < deadline, f"only {len(taken)} of {total} records in 60 s"
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            taken.update((record.partition, record.offset) for records in batch.values() for record in records)
            held = max(held, read_ahead.held()[0])
            await asyncio.sleep(0.05)
        return len(taken), held, read_ahead.held_back
    finally:
        await consumer.stop()


def test_a_slow_consumer_of_many_partitions_of_large_batches_holds_at_most_its_read_ahead_and_loses_nothing(names):
    topic = f"{names.app_id}-read-ahead"
    create_topic(topic, partitions=PARTITIONS)
    total = write_large_batches(topic)
    written = total * len(VALUE)

    taken, held, held_back = asyncio.run(read_slowly(topic, total))

    assert taken == total  # every record, once
    # A fetch goes out only while less than LIMIT is held; one response brings at most FETCH_MAX_BYTES.
    assert held <= LIMIT + FETCH_MAX_BYTES, f"held {held} bytes ahead (all records: {written})"
    assert held_back > 0, "the slow taker never made the bound hold a fetch back"
