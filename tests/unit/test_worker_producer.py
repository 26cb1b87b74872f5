"""The worker's transactional producer: its end when fenced, how its errors are read, and the group metadata
it sends with its offsets, byte for byte as librdkafka writes it."""
from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException

from orders.kafka.transactions import Failure, GroupMember, TransactionError, WorkerProducer, classify


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


class StuckProducer:
    """Stands in for librdkafka's send_offsets_to_transaction ignoring its timeout (librdkafka#5456): the call
    returns only when `release` is set; every call is recorded."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[str] = []

    def send_offsets_to_transaction(self, offsets, metadata, timeout: float) -> None:
        self.calls.append("send_offsets_to_transaction")
        self.release.wait()

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit_transaction")

    def flush(self, timeout: float) -> int:
        self.calls.append("flush")
        return 0


def test_a_call_stuck_in_librdkafka_past_its_bound_makes_the_producer_unusable_without_blocking_the_loop(caplog):
    stuck = StuckProducer()
    producer = WorkerProducer({"bootstrap.servers": "127.0.0.1:1"}, "orders-app-worker-4", call_timeout_s=0.05,
                              call_bound_s=0.5)
    producer._producer = stuck
    ticks = []

    async def scenario():
        async def tick():
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.05)
        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        with pytest.raises(TransactionError) as raised:
            await producer.send_offsets([], GroupMember("orders-app", 3, "member-1"))
        waited = time.monotonic() - started
        with pytest.raises(TransactionError) as later:
            await producer.commit()
        ticker.cancel()
        return raised.value, waited, later.value
    try:
        error, waited, later = asyncio.run(scenario())
        assert error.failure is Failure.FATAL and later.failure is Failure.FATAL
        assert "send_offsets_to_transaction did not return within 0.5s" in str(error)
        assert 0.5 <= waited < 3, waited
        assert len(ticks) >= 5, "the event loop kept running while the call was stuck"
        with caplog.at_level(logging.WARNING, logger="orders.kafka.transactions"):
            producer.close()
        assert stuck.calls == ["send_offsets_to_transaction"], \
            "after a stuck call nothing else reaches librdkafka, not even close()'s flush"
        assert "abandoned while send_offsets_to_transaction is stuck" in caplog.text
    finally:
        stuck.release.set()


STUCK_AT_EXIT = textwrap.dedent("""
    import asyncio, threading
    from orders.kafka.transactions import GroupMember, TransactionError, WorkerProducer

    class Stuck:
        def send_offsets_to_transaction(self, offsets, metadata, timeout):
            threading.Event().wait()

    producer = WorkerProducer({"bootstrap.servers": "127.0.0.1:1"}, "t", call_timeout_s=0.05, call_bound_s=0.2)
    producer._producer = Stuck()
    try:
        asyncio.run(producer.send_offsets([], GroupMember("g", 1, "m")))
    except TransactionError as exc:
        print("raised:", exc.failure.name)
    producer.close()
""")


def test_a_process_whose_producer_is_stuck_in_librdkafka_still_exits():
    """A worker shutting down after a stuck call must not wait for the call's thread at interpreter exit."""
    done = subprocess.run([sys.executable, "-c", STUCK_AT_EXIT], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "raised: FATAL"


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
