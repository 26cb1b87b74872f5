"""The worker's transactional producer: its end when fenced, how its errors are read, and the group metadata
it sends with its offsets, byte for byte as librdkafka writes it."""
from __future__ import annotations

import logging

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException

from orders.kafka.transactions import Failure, GroupMember, WorkerProducer, classify


class FencedProducer:
    """Stands in for a librdkafka producer in its fatal state: every call raises the fencing error."""

    def flush(self, timeout: float) -> int:
        raise KafkaException(KafkaError(KafkaError._FENCED, "This instance has been fenced by a newer instance",
                                        fatal=True))


def test_closing_a_fenced_producer_logs_and_does_not_raise(caplog):
    producer = WorkerProducer({"bootstrap.servers": "127.0.0.1:1"}, "orders-app-worker-4")
    producer._producer = FencedProducer()
    with caplog.at_level(logging.INFO, logger="orders.kafka.transactions"):
        producer.close()
    assert "orders-app-worker-4 closed in a fatal state" in caplog.text
    assert "fenced by a newer instance" in caplog.text


@pytest.mark.parametrize("instance_id", [None, "worker-7"])
def test_the_group_metadata_is_what_librdkafka_writes_for_the_same_membership(instance_id):
    """confluent-kafka builds the metadata only from its own consumer: one that has not joined has generation -1
    and no member id, which is as far as a test without a broker gets (the integration tests send it)."""
    config = {"bootstrap.servers": "127.0.0.1:1", "group.id": "orders-app", "log_level": 0}
    if instance_id:
        config["group.instance.id"] = instance_id
    consumer = Consumer(config)
    try:
        theirs = consumer.consumer_group_metadata()
    finally:
        consumer.close()
    assert GroupMember("orders-app", -1, "", instance_id).librdkafka_metadata() == theirs


@pytest.mark.parametrize("code, failure", [
    (KafkaError.ILLEGAL_GENERATION, Failure.LOST), (KafkaError.UNKNOWN_MEMBER_ID, Failure.LOST),
    (KafkaError.FENCED_INSTANCE_ID, Failure.LOST), (KafkaError.PRODUCER_FENCED, Failure.FATAL),
    (KafkaError._TIMED_OUT, Failure.RETRY)])
def test_errors_are_read_as_what_the_committer_does_next(code, failure):
    requires_abort = failure is Failure.LOST
    error = KafkaError(code, "from the broker", txn_requires_abort=requires_abort,
                       fatal=failure is Failure.FATAL, retriable=failure is Failure.RETRY)
    assert classify(KafkaException(error)).failure is failure
