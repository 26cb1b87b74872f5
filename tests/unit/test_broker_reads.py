"""A broker read the processing needs is asked again while Kafka does not answer, instead of crashing the agent;
the earliest offsets many partitions ask at once go together into one read."""
from __future__ import annotations

import asyncio
import logging
import re
import threading

import pytest
from confluent_kafka import KafkaError, KafkaException

from orders.kafka import broker as broker_module
from orders.kafka.broker import Broker, until_answered


def test_a_read_that_fails_while_the_broker_restarts_is_asked_again_until_it_answers(caplog):
    answers = [KafkaException(KafkaError(KafkaError._UNKNOWN_PARTITION, "Unknown partition")),
               KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION, "Not leader for partition")),
               TimeoutError("orders-retry: partitions [2] sent nothing for 30s"), 17]

    def read() -> int:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with caplog.at_level(logging.WARNING, logger="orders"):
        assert asyncio.run(until_answered("earliest offset of orders-retry[2]", read)) == 17
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3 and all(w.startswith("earliest offset of orders-retry[2]: Kafka did not answer")
                                      for w in warnings)
    assert "Not leader for partition" in warnings[1]
    assert re.search(r"asking again in 0\.[345]s", warnings[1]), "the second delay: 0.4 s, give or take its jitter"


def test_a_read_the_broker_never_answers_gives_up_after_its_bound():
    def read() -> int:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Connection refused"))

    with pytest.raises(KafkaException):
        asyncio.run(until_answered("earliest offset of orders[0]", read, timeout_s=0.5))


def _held_reads(monkeypatch):
    """Replace the broker's batched read with one that each call holds until released; the calls are kept."""
    calls: list[list[tuple[str, int]]] = []
    release = threading.Event()

    def first_offsets(config, partitions):
        calls.append(list(partitions))
        assert release.wait(10), "never released"
        return {tp: 100 + tp[1] for tp in partitions}
    monkeypatch.setattr(broker_module.reading, "first_offsets", first_offsets)
    return calls, release


def test_earliest_offsets_asked_while_a_read_is_on_its_way_go_together_into_the_next_read(monkeypatch):
    calls, release = _held_reads(monkeypatch)

    async def scenario():
        broker = Broker({})
        first = asyncio.create_task(broker.earliest_offset("orders", 0))
        while not calls:  # the first read is on its way, held
            await asyncio.sleep(0.001)
        later = [asyncio.create_task(broker.earliest_offset(topic, partition))
                 for topic, partition in [("orders", 5), ("orders-retry", 3), ("orders", 2), ("orders", 5)]]
        await asyncio.sleep(0.01)
        release.set()
        return await first, await asyncio.gather(*later)

    first, later = asyncio.run(scenario())
    assert (first, later) == (100, [105, 103, 102, 105]), "each asker gets its own partition's offset"
    assert calls == [[("orders", 0)], [("orders", 2), ("orders", 5), ("orders-retry", 3)]], \
        "one read for everything asked while the first was on its way, each partition once"


def test_an_asker_that_gives_up_does_not_cancel_the_read_for_the_others(monkeypatch):
    calls, release = _held_reads(monkeypatch)

    async def scenario():
        broker = Broker({})
        gives_up = asyncio.create_task(broker.earliest_offset("orders", 1))
        stays = asyncio.create_task(broker.earliest_offset("orders", 4))
        while not calls:
            await asyncio.sleep(0.001)
        gives_up.cancel()
        release.set()
        return await stays, await asyncio.gather(gives_up, return_exceptions=True)

    stays, (gave_up,) = asyncio.run(scenario())
    assert stays == 104 and isinstance(gave_up, asyncio.CancelledError)


def test_a_read_that_fails_for_good_raises_its_error_to_every_asker(monkeypatch):
    def first_offsets(config, partitions):
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Connection refused"))
    monkeypatch.setattr(broker_module.reading, "first_offsets", first_offsets)

    async def scenario():
        broker = Broker({}, timeout_s=0.3)
        return await asyncio.gather(broker.earliest_offset("orders", 0), broker.earliest_offset("orders", 1),
                                    return_exceptions=True)

    answers = asyncio.run(scenario())
    assert [type(answer) for answer in answers] == [KafkaException, KafkaException]
    assert all("Connection refused" in str(answer) for answer in answers)
