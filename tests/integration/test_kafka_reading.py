"""Reading helpers of `orders.kafka.reading` against a real broker, where transactions leave offsets without records."""
from __future__ import annotations

import asyncio
import threading

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from orders.kafka import broker as broker_module
from orders.kafka import producing, reading
from orders.kafka.broker import Broker

from .conftest import KAFKA_CONFIG, create_topic


def write_in_transactions(topic: str, batches: list[tuple[list[str], bool]]) -> None:
    """Each batch is one transaction on partition 0, committed (True) or aborted (False)."""
    producer = producing.producer(KAFKA_CONFIG, **{"transactional.id": f"{topic}-writer"})
    producer.init_transactions(30)
    for values, commit in batches:
        producer.begin_transaction()
        for value in values:
            producing.produce(producer, topic, key=value.encode(), value=value.encode(), partition=0,
                             on_delivery=lambda err, msg: None)
        producer.flush(30)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)


def test_tail_returns_the_last_committed_records_skipping_markers_and_aborted_ones(names):
    topic = f"{names.app_id}-tail"
    create_topic(topic, partitions=2)
    committed = [f"c{i}" for i in range(5)]
    write_in_transactions(topic, [(committed[:3], True), ([f"a{i}" for i in range(40)], False),
                                  (committed[3:], True), ([f"b{i}" for i in range(50)], False)])

    tails = reading.tail(KAFKA_CONFIG, topic, 4, window=8)
    assert [r.value.decode() for r in tails[0]] == committed[-4:], "behind 50 aborted records and markers"
    assert tails[1] == [], "an empty partition"
    assert [r.value.decode() for r in reading.tail(KAFKA_CONFIG, topic, 10)[0]] == committed, "fewer than asked"
    assert reading.last_records(KAFKA_CONFIG, topic, [0, 1]) == {0: tails[0][-1], 1: None}


def test_tail_of_a_missing_topic_raises_topic_missing(names):
    try:
        reading.tail(KAFKA_CONFIG, f"{names.app_id}-absent", 3)
    except reading.TopicMissing as exc:
        assert "does not exist" in str(exc)
    else:
        raise AssertionError("no TopicMissing")


def test_a_new_owner_waits_for_a_transaction_left_open_and_goes_on_once_it_ends(names):
    """What taking over a partition waits for: a transaction an earlier owner left open on the changelog."""
    topic = f"{names.app_id}-open"
    create_topic(topic, partitions=2)
    write_in_transactions(topic, [(["settled"], True)])
    producer = producing.producer(KAFKA_CONFIG, **{"transactional.id": f"{topic}-left-open"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producing.produce(producer, topic, key=b"k", value=b"pending", partition=0, on_delivery=lambda err, msg: None)
    producer.flush(30)

    assert reading.wait_for_open_transactions(KAFKA_CONFIG, topic, [1], 5) == ([], pytest.approx(0, abs=1)), \
        "nothing open on partition 1"
    still_open_after_1s = r"partitions \[0\]: a transaction is still open after 1\.\ds"
    with pytest.raises(reading.TransactionsStillOpen, match=still_open_after_1s) as still_open:
        reading.wait_for_open_transactions(KAFKA_CONFIG, topic, [0, 1], 1)
    assert still_open.value.partitions == [0]

    threading.Timer(1.0, producer.commit_transaction, args=(30,)).start()
    had, waited = reading.wait_for_open_transactions(KAFKA_CONFIG, topic, [0, 1], 20)
    assert had == [0] and 0.5 < waited < 10
    assert reading.last_records(KAFKA_CONFIG, topic, [0])[0].value == b"pending", "the record it waited for"


def test_earliest_offsets_asked_together_are_read_at_once_and_follow_deleted_records(names, monkeypatch):
    """What a worker taking over new partitions asks at the first record of each: the oldest offset still in the
    log, past records deleted at its head (retention, `kafka-delete-records`)."""
    topic = f"{names.app_id}-earliest"
    create_topic(topic, partitions=3)
    for partition, count in ((0, 4), (1, 10)):
        producer = producing.producer(KAFKA_CONFIG)
        producing.deliver(producer, [producing.Outgoing(topic, b"k", b"v", (), partition=partition)] * count)
    admin = AdminClient(KAFKA_CONFIG)
    deleted = admin.delete_records([TopicPartition(topic, 1, 7)])
    for future in deleted.values():
        future.result(30)

    reads = []
    real = reading.first_offsets

    def counted(config, partitions):
        reads.append(list(partitions))
        return real(config, partitions)
    monkeypatch.setattr(broker_module.reading, "first_offsets", counted)

    async def ask_all():
        broker = Broker(KAFKA_CONFIG)
        return await asyncio.gather(*(broker.earliest_offset(topic, partition) for partition in (0, 1, 2)))

    assert asyncio.run(ask_all()) == [0, 7, 0]
    assert reads == [[(topic, 0), (topic, 1), (topic, 2)]], "asked in the same turn of the loop: one read"
