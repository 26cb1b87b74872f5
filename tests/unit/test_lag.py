"""Consumer lag as /metrics computes it, with stand-ins for Faust's consumer and the broker's watermarks."""
import asyncio

import pytest
from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from orders.ops.lag import consumer_lag, partition_lag


class FakeConsumer:
    def __init__(self, assignment):
        self._assignment = assignment

    def assignment(self):
        if self._assignment is None:
            raise ConsumerNotStarted("Consumer thread not yet started")
        return set(self._assignment)


def lag_of(consumer, applied, highwaters=None, earliest=None):
    asked = []

    async def watermarks(tps):
        asked.extend(tps)
        return {tp: (earliest[tp], highwaters[tp]) for tp in tps}

    def lag(tp, highwater, earliest):
        return partition_lag(highwater, applied.get(tp, -1), earliest)
    found = asyncio.run(consumer_lag(consumer, {"orders", "orders-retry"}, lag, watermarks))
    assert all(tp.topic in ("orders", "orders-retry") for tp in asked), f"asked for more than the sources: {asked}"
    return found


def test_lag_covers_the_owned_source_partitions_and_nothing_else():
    orders0, orders1, retry0 = TP("orders", 0), TP("orders", 1), TP("orders-retry", 0)
    changelog = TP("orders-app-order-stats-changelog", 0)
    consumer = FakeConsumer([orders0, orders1, retry0, changelog])

    lag = lag_of(consumer, applied={orders0: 9, retry0: 1},
                 highwaters={orders0: 10, orders1: 7, retry0: 3, changelog: 50},
                 earliest={orders0: 0, orders1: 2, retry0: 0, changelog: 0})

    assert lag == {("orders", 0): 0, ("orders", 1): 5, ("orders-retry", 0): 1}


def test_a_worker_whose_consumer_has_not_started_reports_no_partitions():
    assert lag_of(FakeConsumer(None), applied={}) == {}


@pytest.mark.parametrize("highwater, applied, earliest, expected", [
    (10, 9, 0, 0),      # everything applied: offset 9 was the last record
    (10, 6, 0, 3),      # offsets 7, 8 and 9 wait
    (10, -1, 0, 10),    # nothing applied yet
    (10, -1, 4, 6),     # nothing applied, records before offset 4 deleted by retention
    (0, -1, 0, 0),      # empty partition
    (10, 12, 0, 0),     # applied after the highwater was read: never negative
])
def test_partition_lag_counts_the_records_after_the_last_applied_one(highwater, applied, earliest, expected):
    assert partition_lag(highwater, applied, earliest) == expected
