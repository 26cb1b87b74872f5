"""The worker's transactional producer against a real broker: the group coordinator accepts a transaction's
offsets only from the group's current member, so a worker the group has left behind cannot commit."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka import TopicPartition

from orders.kafka import reading
from orders.kafka.transactions import Failure, GroupMember, TransactionError, WorkerProducer

from .conftest import BOOTSTRAP, KAFKA_CONFIG, create_topic


async def joined(group: str, topic: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=group, enable_auto_commit=False)
    consumer.subscribe([topic])
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)
    return consumer


def member_of(consumer: AIOKafkaConsumer) -> GroupMember:
    coordinator = consumer._coordinator
    return GroupMember(coordinator.group_id, coordinator.generation, coordinator.member_id)


async def write(producer: WorkerProducer, topic: str, value: bytes, member: GroupMember, offset: int) -> None:
    producer.begin()
    producer.produce(topic, key=b"k", value=value, partition=0)
    try:
        await producer.flush()
        await producer.send_offsets([TopicPartition(topic, 0, offset)], member)
        await producer.commit()
    except TransactionError:
        await producer.abort()
        raise


def test_a_member_the_group_has_left_behind_cannot_commit_and_what_it_wrote_stays_invisible(names):
    topic, group = f"{names.app_id}-txn", f"{names.app_id}-txn-group"
    create_topic(topic, partitions=2)

    async def scenario():
        first = await joined(group, topic)
        stale = member_of(first)
        producer = WorkerProducer(KAFKA_CONFIG, f"{names.app_id}-txn-worker")
        try:
            await producer.start()
            await write(producer, topic, b"while current", stale, 1)

            # A second member joins and the group moves to a new generation; the first keeps its old view.
            second = await joined(group, topic)
            await asyncio.gather(first.getmany(timeout_ms=3000), second.getmany(timeout_ms=3000))
            assert member_of(second).generation > stale.generation
            with pytest.raises(TransactionError) as refused:
                await write(producer, topic, b"from a zombie", stale, 2)
            assert refused.value.failure is Failure.LOST
            await write(producer, topic, b"current again", member_of(first), 3)
            await second.stop()
        finally:
            producer.close()
            await first.stop()
    asyncio.run(scenario())

    values = [record.value for record in reading.read_topic(KAFKA_CONFIG, topic)]
    assert values == [b"while current", b"current again"]
