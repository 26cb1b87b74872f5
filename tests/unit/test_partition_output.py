"""PartitionOutput's end: a producer fenced by the partition's next owner closes without raising."""
from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException

from orders.kafka.transactions import PartitionOutput


class FencedProducer:
    """Stands in for a librdkafka producer in its fatal state: every call raises the fencing error."""

    def flush(self, timeout: float) -> int:
        raise KafkaException(KafkaError(KafkaError._FENCED, "This instance has been fenced by a newer instance",
                                        fatal=True))


def test_closing_a_fenced_producer_logs_and_does_not_raise(caplog):
    output = PartitionOutput({"bootstrap.servers": "127.0.0.1:1"}, "orders-app-partition-4")
    output._producer = FencedProducer()
    with caplog.at_level(logging.INFO, logger="orders.kafka.transactions"):
        output.close()
    assert "orders-app-partition-4 closed in a fatal state" in caplog.text
    assert "fenced by a newer instance" in caplog.text
