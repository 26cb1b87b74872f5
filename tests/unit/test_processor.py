"""Partitions, transactions and commits, driven with fakes: what becomes visible, and when."""
from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from orders.domain.partition_state import PartitionState
from orders.ops.activity_log import ActivityLog
from orders.ops.metrics import OrderMetrics
from orders.processing.processor import Processor
from orders.processing.transactions import Failure, TransactionError

from .test_handler import DLQ, ORDERS, RETRY, Rig, message

CHANGELOG = "orders-app-order-stats-changelog"


class TxnOutput:
    """A transactional producer: queued records become visible only when a commit succeeds."""

    def __init__(self, failures: list[Failure] | None = None, start_fails: int = 0) -> None:
        self.visible: list[dict] = []
        self.queued: list[dict] = []
        self.failures = list(failures or [])
        self.start_fails = start_fails
        self.started = self.closed = False
        self.in_transaction = False

    async def start(self) -> None:
        if self.start_fails:
            self.start_fails -= 1
            raise TransactionError(Failure.RETRY, "broker unreachable")
        self.started = True

    def produce(self, topic, *, on_delivery=None, **record) -> None:
        self.queued.append({"topic": topic, **record})
        self.in_transaction = True
        if on_delivery:
            self._deliver = (on_delivery, len(self.visible) + len(self.queued))

    async def commit(self) -> None:
        if self.failures:
            raise TransactionError(self.failures.pop(0), "refused")
        callback, offset = self._deliver
        callback(None, SimpleNamespace(offset=lambda: offset))
        self.visible += self.queued
        self.queued, self.in_transaction = [], False

    async def abort(self) -> None:
        self.queued, self.in_transaction = [], False

    def close(self) -> None:
        self.closed = True

    def to(self, topic: str) -> list[dict]:
        return [record for record in self.visible if record["topic"] == topic]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Setup:
    def __init__(self, *, failures=None, outputs: dict | None = None, states: dict | None = None,
                 on_topic: list | None = None, commit_interval_s: float = 0.1) -> None:
        self.rig = Rig(failures=failures, on_topic=on_topic)
        self.clock = Clock()
        self.outputs = outputs or {}
        self.states = states or {}
        self.stored: dict[int, tuple] = {}
        self.rebalances = 0
        self.metrics_registry = CollectorRegistry()

        async def load_states(numbers):
            return {n: self.states.get(n, PartitionState()).copy() for n in numbers}

        async def request_rebalance():
            self.rebalances += 1

        self.processor = Processor(
            handler=self.rig.handler, new_output=lambda n: self.outputs.setdefault(n, TxnOutput()),
            load_states=load_states, write_store=lambda n, value, offset: self.stored.__setitem__(n, (value, offset)),
            changelog_topic=CHANGELOG, orders_topic=ORDERS, retry_topic=RETRY,
            metrics=OrderMetrics(self.metrics_registry), activity=ActivityLog(0), summary=lambda: {},
            request_rebalance=request_rebalance, commit_interval_s=commit_interval_s, max_retries=2,
            retry_delay_s=2.0, monotonic=self.clock, sleep=self.clock.sleep)

    def run(self, coro):
        return asyncio.run(coro)

    def order(self, order_id, offset, partition=0, **kwargs):
        msg = self.rig.order(order_id, offset, **kwargs)
        msg.partition = partition
        return msg

    def process(self, messages, is_retry=False, then_wait: float = 0.2):
        async def run():
            await self.processor.process(messages, is_retry=is_retry)
            self.clock.now += then_wait
            await self.processor.commit_due()
        self.run(run())

    def counter(self, name: str) -> float:
        return self.metrics_registry.get_sample_value(name) or 0.0


def changelog_states(output: TxnOutput) -> list[dict]:
    return [json.loads(record["value"]) for record in output.to(CHANGELOG)]


def test_taking_over_a_partition_starts_its_producer_before_reading_its_committed_state():
    setup = Setup(states={1: PartitionState(orders=5, applied={ORDERS: 9})})
    setup.run(setup.processor.on_assigned({0, 1}))
    assert setup.outputs[0].started and setup.outputs[1].started
    assert setup.processor.resume_offsets() == {(ORDERS, 1): 10}
    assert setup.processor.live_states()[1] == (PartitionState(orders=5, applied={ORDERS: 9}), 0)


def test_state_and_outputs_become_visible_together_at_the_commit():
    setup = Setup(failures={"o-2": 1})
    setup.run(setup.processor.on_assigned({0}))
    setup.run(setup.processor.process([setup.order("o-1", 0), setup.order("o-2", 1)], is_retry=False))
    output = setup.outputs[0]
    assert output.visible == [] and setup.processor.live_states()[0][0].orders == 1
    assert setup.processor.live_states()[0][1] == 2, "two records applied in the open transaction"
    assert setup.counter("orders_processed_total") == 0, "nothing is reported before it is committed"

    setup.clock.now += 0.2
    setup.run(setup.processor.commit_due())
    assert [record["topic"] for record in output.visible] == [RETRY, CHANGELOG]
    (state,) = changelog_states(output)
    assert (state["orders"], state["retry_seq_sent"], state["applied"]) == (1, 1, {ORDERS: 1})
    assert setup.stored[0] == (state, 2)
    assert (setup.counter("orders_processed_total"), setup.counter("orders_retried_total")) == (1, 1)
    assert setup.processor.live_states()[0][1] == 0 and setup.processor.partitions[0].committed.orders == 1


def test_a_busy_partition_commits_after_the_batch_that_reaches_the_interval():
    setup = Setup()
    setup.run(setup.processor.on_assigned({0}))
    setup.process([setup.order("o-1", 0)], then_wait=0.05)
    setup.process([setup.order("o-2", 1)], then_wait=0.0)
    assert setup.outputs[0].visible == [], "the timer leaves a transaction open less than the interval alone"
    setup.clock.now += 0.2
    setup.run(setup.processor.process([setup.order("o-3", 2)], is_retry=False))
    assert changelog_states(setup.outputs[0])[-1]["orders"] == 3


def test_a_commit_refused_for_the_moment_is_tried_again_with_backoff():
    output = TxnOutput(failures=[Failure.RETRY, Failure.RETRY])
    setup = Setup(outputs={0: output})
    setup.run(setup.processor.on_assigned({0}))
    setup.process([setup.order("o-1", 0)])
    assert changelog_states(output)[-1]["orders"] == 1
    assert setup.clock.slept[:2] == [0.2, 0.4]


def test_a_transaction_that_cannot_commit_is_aborted_and_its_records_applied_again():
    output = TxnOutput(failures=[Failure.ABORT])
    setup = Setup(outputs={0: output}, failures={"o-1": 1})
    first, second = setup.order("o-1", 0), setup.order("o-2", 1)
    setup.rig.on_topic = [first, second]
    setup.run(setup.processor.on_assigned({0}))
    setup.process([first, second])
    state = changelog_states(output)[-1]
    assert (state["orders"], state["retry_seq_sent"], state["applied"]) == (1, 1, {ORDERS: 1})
    assert len(output.to(RETRY)) == 1, "the aborted retry copy never became visible; the new one did"
    assert setup.rig.reads == [(ORDERS, 0, 0, 2)]
    assert setup.counter("orders_processed_total") == 1 and setup.counter("orders_retried_total") == 1


def test_a_fenced_producer_loses_the_partition_and_asks_the_group_to_rebalance():
    output = TxnOutput(failures=[Failure.FATAL])
    setup = Setup(outputs={0: output})
    setup.run(setup.processor.on_assigned({0}))
    setup.process([setup.order("o-1", 0)])
    assert output.visible == [] and setup.rebalances == 1
    assert 0 not in setup.processor.live_states()
    setup.process([setup.order("o-2", 1)])
    assert output.visible == [] and setup.rig.part.state.orders == 0


def test_a_partition_that_cannot_be_taken_over_yet_is_set_up_before_its_first_record():
    output = TxnOutput(start_fails=2)
    setup = Setup(outputs={0: output})
    setup.run(setup.processor.on_assigned({0}))
    assert setup.processor.live_states() == {}
    output.start_fails = 1
    setup.process([setup.order("o-1", 0)])
    assert output.started and changelog_states(output)[-1]["orders"] == 1


def test_revoked_partitions_commit_what_they_applied_and_close_their_producers():
    setup = Setup()
    setup.run(setup.processor.on_assigned({0, 1}))
    setup.run(setup.processor.process([setup.order("o-1", 0), setup.order("o-2", 0, partition=1)], is_retry=False))
    setup.run(setup.processor.on_revoked({0, 1}))
    for number in (0, 1):
        assert changelog_states(setup.outputs[number])[-1]["orders"] == 1 and setup.outputs[number].closed
    assert setup.processor.partitions == {}


def test_records_of_a_partition_not_owned_here_are_left_alone():
    setup = Setup()
    setup.run(setup.processor.on_assigned({0}))
    setup.process([setup.order("o-1", 0, partition=3)])
    assert 3 not in setup.processor.live_states() and 3 not in setup.outputs


def test_the_retry_agent_waits_for_a_copy_without_holding_the_partition():
    setup = Setup(failures={"o-1": 1})
    setup.run(setup.processor.on_assigned({0}))
    setup.process([setup.order("o-1", 0)])
    (sent,) = setup.outputs[0].to(RETRY)
    copy = message(RETRY, 0, 0, sent["key"], sent["value"], sent["headers"])
    part = setup.processor.partitions[0]
    waits: list[tuple[float, bool]] = []

    async def sleep(seconds):
        waits.append((seconds, part.lock.locked()))
    setup.processor.sleep = sleep
    setup.process([copy], is_retry=True)
    assert waits == [(pytest.approx(2.0), False)]
    assert changelog_states(setup.outputs[0])[-1]["orders"] == 1


def test_resume_offsets_are_the_next_offsets_of_every_owned_source_partition():
    setup = Setup(states={0: PartitionState(applied={ORDERS: 4, RETRY: 2}), 1: PartitionState()})
    setup.run(setup.processor.on_assigned({0, 1}))
    assert setup.processor.resume_offsets() == {(ORDERS, 0): 5, (RETRY, 0): 3}


@pytest.mark.parametrize("numbers", [[], [0]])
def test_stop_commits_and_closes_everything(numbers):
    setup = Setup()
    setup.run(setup.processor.on_assigned(set(numbers)))
    setup.run(setup.processor.stop())
    assert setup.processor.partitions == {}
    assert all(output.closed for output in setup.outputs.values())


def test_dead_letters_are_reported_by_reason_once_committed():
    setup = Setup()
    setup.run(setup.processor.on_assigned({0}))
    setup.process([SimpleNamespace(topic=ORDERS, partition=0, offset=0, key=b"k", value=b"junk", headers=[],
                                   timestamp=None)])
    assert setup.metrics_registry.get_sample_value("orders_dead_lettered_total", {"reason": "undecodable"}) == 1
    assert len(setup.outputs[0].to(DLQ)) == 1
