"""The watchdog's broker reads keep the partitions it asked about as keys; a timer's error ends no worker."""
from __future__ import annotations

import asyncio
import logging

from faust.types import TP

from orders.kafka import broker as broker_module
from orders.kafka.broker import Broker
from orders.ops.guarded import never_raises


def test_watermarks_are_keyed_by_the_partitions_as_asked(monkeypatch):
    def watermarks(config, partitions):
        assert partitions == [("orders", 0), ("orders-retry", 2)]
        return {("orders", 0): (0, 10), ("orders-retry", 2): (3, 4)}
    monkeypatch.setattr(broker_module.reading, "watermarks", watermarks)
    asked = [TP("orders", 0), TP("orders-retry", 2)]
    marks = asyncio.run(Broker({}).watermarks(asked))
    assert [(tp.topic, tp.partition, mark) for tp, mark in marks.items()] == [("orders", 0, (0, 10)),
                                                                            ("orders-retry", 2, (3, 4))]


def test_a_guarded_timer_logs_its_error_and_returns(caplog):
    @never_raises("the check")
    async def check() -> None:
        raise AttributeError("'tuple' object has no attribute 'topic'")

    with caplog.at_level(logging.ERROR, logger="orders"):
        asyncio.run(check())
    (record,) = caplog.records
    assert record.getMessage() == "the check failed; it runs again on its next round" and record.exc_info
