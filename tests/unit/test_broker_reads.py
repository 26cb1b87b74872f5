"""A broker read the processing needs is asked again while Kafka does not answer, instead of crashing the agent."""
from __future__ import annotations

import asyncio
import logging
import re

import pytest
from confluent_kafka import KafkaError, KafkaException

from orders.kafka.broker import until_answered


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
