"""A partition resumed while the consumer waits for records is delivered at once (orders/faust_overrides/consumer.py,
`hold_partitions`), on a real broker and aiokafka's own fetcher: what it fetched for the partition while paused
waits in the fetcher, and aiokafka wakes a waiting fetch of records only when a response brings new ones."""
from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from orders.faust_overrides.consumer import ReadCommittedConsumerThread
from orders.kafka import producing
from tests.stack import BOOTSTRAP

from .conftest import KAFKA_CONFIG, create_topic

WAIT_S = 4.0


def produce_to_partition_1(topic: str) -> None:
    deliveries = producing.deliver(producing.producer(KAFKA_CONFIG),
                                   [producing.Outgoing(topic, b"k", value, (), partition=1)
                                    for value in (b"a", b"b", b"c")])
    assert not [delivery.error for delivery in deliveries if delivery.error]


async def fetch_after_resume(topic: str, wake: bool) -> tuple[dict, float]:
    """Partition 1 holds records fetched while it is not delivered; a fetch of records for partition 0 (empty)
    waits; partition 1 is resumed (put in the same set, as Faust's resume_partitions does), then woken or not.
    What that fetch returned, and after how long."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await consumer.start()
    try:
        idle, resumed = TopicPartition(topic, 0), TopicPartition(topic, 1)
        consumer.assign([idle, resumed])
        fetcher = consumer._fetcher
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while resumed not in fetcher._records:
            assert loop.time() < deadline, "partition 1's records were never fetched"
            assert await fetcher.fetched_records({idle}, timeout=0.2) == {}
        thread = ReadCommittedConsumerThread.__new__(ReadCommittedConsumerThread)
        thread.thread_loop, thread._consumer = loop, consumer

        active = {idle}
        waiting = asyncio.create_task(fetcher.fetched_records(active, timeout=WAIT_S))
        await asyncio.sleep(0.5)  # the fetch is waiting for new records
        active.add(resumed)
        started = loop.time()
        if wake:
            thread.wake_fetch_soon()
        records = await waiting
        return records, loop.time() - started
    finally:
        await consumer.stop()


def test_a_partition_resumed_while_the_consumer_waits_is_delivered_at_once(names):
    topic = f"{names.app_id}-resume"
    create_topic(topic, partitions=2)
    produce_to_partition_1(topic)

    records, waited_s = asyncio.run(fetch_after_resume(topic, wake=True))
    assert [r.value for r in records[TopicPartition(topic, 1)]] == [b"a", b"b", b"c"]
    assert waited_s < WAIT_S / 2, f"delivered {waited_s:.1f} s after the resume"


def test_without_the_wake_the_waiting_fetch_runs_out_its_timeout_empty(names):
    """What the wake is for: aiokafka alone returns nothing until the fetch's timeout."""
    topic = f"{names.app_id}-no-wake"
    create_topic(topic, partitions=2)
    produce_to_partition_1(topic)

    records, waited_s = asyncio.run(fetch_after_resume(topic, wake=False))
    assert records == {}
    assert waited_s >= WAIT_S - 1
