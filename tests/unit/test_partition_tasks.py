"""Partition tasks, driven step by step with fakes and a fake clock: ownership, commits, the retry hold, the
error boundary, flow control."""
from __future__ import annotations

import asyncio
import json
import random
import time
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from avro_codec import RegistryUnavailable
from orders.domain import headers as h
from orders.domain.partition_state import Aggregate, PartitionState
from orders.kafka.transactions import Failure, GroupMember, Refusal, TransactionError
from orders.ops.activity_log import ActivityLog
from orders.ops.metrics import OrderMetrics
from orders.processing import tasks as tasks_module
from orders.processing.commit import Committer, LastCommits
from orders.processing.faults import FaultInjector
from orders.processing.flow import Flow
from orders.processing.reporting import Reporter
from orders.processing.task import PartitionTask, TaskLimits
from orders.processing.tasks import PartitionTasks

from .test_handler import DLQ, NOW_S, ORDERS, RETRY, Rig, message

CHANGELOG = "orders-app-order-stats-changelog"
DAY_MS = 86_400_000


class TxnProducer:
    """The worker's transactional producer: the records of a transaction become visible when it commits."""

    def __init__(self, failures: list[Failure] | None = None, start_fails: int = 0, abort_fails: int = 0,
                 offset_failures: list[Failure] | None = None) -> None:
        self.transactional_id = "orders-app-worker-test"
        self.abort_fails = abort_fails
        self.visible: list[dict] = []
        self.queued: list[dict] = []
        self.failures = list(failures or [])
        self.offset_failures = list(offset_failures or [])
        self.start_fails = start_fails
        #: while set, a flush with a record for this topic fails as the broker refusing it
        self.refuse_topic: str | None = None
        self.started = self.closed = False
        self.in_transaction = False
        self.commits = self.aborts = 0
        #: each committed transaction: (its records, the offsets it sent, the membership it sent them with)
        self.transactions: list[tuple[list[dict], list, GroupMember]] = []
        self._offsets = None

    async def start(self) -> None:
        if self.start_fails:
            self.start_fails -= 1
            raise TransactionError(Failure.RETRY, "broker unreachable")
        self.started = True

    def begin(self) -> None:
        assert self.started and not self.in_transaction and not self.closed
        self.in_transaction, self.queued, self._offsets = True, [], None

    def produce(self, topic, *, on_delivery=None, **record) -> None:
        assert self.in_transaction
        self.queued.append({"topic": topic, "on_delivery": on_delivery, **record})

    async def flush(self) -> None:
        refused = [r for r in self.queued if r["topic"] == self.refuse_topic]
        if refused:
            raise TransactionError(Failure.ABORT, "the broker refused a record",
                                   Refusal(self.refuse_topic, refused[0].get("source"), "Message size too large"))

    async def send_offsets(self, offsets, member) -> None:
        if self.offset_failures:
            raise TransactionError(self.offset_failures.pop(0), "offsets refused")
        self._offsets = (offsets, member)

    async def commit(self) -> None:
        if self.failures:
            raise TransactionError(self.failures.pop(0), "refused")
        assert self._offsets is not None, "a transaction commits only with its offsets sent"
        for record in self.queued:
            if record["on_delivery"]:
                record["on_delivery"](None, SimpleNamespace(offset=lambda n=len(self.visible): n))
            self.visible.append(record)
        self.transactions.append((self.queued, *self._offsets))
        self.queued, self.in_transaction = [], False
        self.commits += 1

    async def abort(self) -> None:
        if self.abort_fails:
            self.abort_fails -= 1
            raise TransactionError(Failure.RETRY, "Timed out waiting for operation to finish, retry call to resume")
        if self.in_transaction:
            self.aborts += 1
        self.queued, self.in_transaction = [], False

    def close(self) -> None:
        self.closed = True


class PartitionView:
    """What one partition's commits made visible, over every producer the worker had."""

    def __init__(self, producers: list[TxnProducer], number: int) -> None:
        self.producers = producers
        self.number = number

    def to(self, topic: str) -> list[dict]:
        return [record for producer in self.producers for record in producer.visible
                if record["topic"] == topic and self._caused_here(record)]

    def _caused_here(self, record: dict) -> bool:
        source = record.get("source")
        return (source.partition if source is not None else record.get("partition")) == self.number


class FakeTable:
    """The order-stats table: what the tasks published, by partition (as PartitionStateTable keeps it)."""

    def __init__(self) -> None:
        self.values: dict[int, dict] = {}
        self.offsets: dict[int, int] = {}

    def publish(self, partition, state, uncommitted, changelog_offset=None) -> None:
        self.values[partition] = {**state.to_value(), "uncommitted": uncommitted}
        if changelog_offset is not None:
            self.offsets[partition] = changelog_offset

    def share(self, partition):
        value = self.values.get(partition)
        return None if value is None else (PartitionState.from_value(value), value["uncommitted"])


class Clock:
    """Monotonic and wall time, advanced by hand."""

    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = NOW_S

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


class Harness:
    """PartitionTasks with fake outputs and states; tasks are driven by `step`, not by their own loops."""

    def __init__(self, *, failures=None, producers: list[TxnProducer] | None = None, states: dict | None = None,
                 commit_interval_s: float = 0.1, max_retries: int = 2, budget: int = 10_000,
                 attempts_before_blocked: int = 3, start_loops: bool = False) -> None:
        self.clock = Clock()
        self.rig = Rig(failures=failures, max_retries=max_retries)
        self.rig.handler.clock = lambda: self.clock.wall
        self.handler = self.rig.handler
        #: the producers the committer will start, in order (then new default ones)
        self.prepared = list(producers or [])
        #: every producer the committer started, the current one last
        self.producers: list[TxnProducer] = []
        self.member = GroupMember("orders-app", 1, "member-1")
        self.states = states or {}
        self.table = FakeTable()
        self.rebalances = 0
        self.paused: set[tuple[str, int]] = set()
        self.blocked_events: list[tuple[int, bool]] = []
        self.metrics_registry = CollectorRegistry()
        self.start_loops = start_loops
        #: partitions whose changelog has an earlier owner's transaction open (load_states leaves them out)
        self.settling: set[int] = set()
        #: how long each load_states call was allowed to wait for open transactions
        self.load_waits: list[float] = []

        async def sleep(seconds):
            self.clock.advance(seconds)

        async def load_states(numbers, wait_s):
            self.load_waits.append(wait_s)
            return {n: self.states.get(n, PartitionState()).copy() for n in numbers if n not in self.settling}

        async def request_rebalance():
            self.rebalances += 1

        self.flow = Flow(pause=self.paused.update, resume=self.paused.difference_update, budget=budget)
        self.committer = Committer(changelog_topic=CHANGELOG, new_producer=self._new_producer, sleep=sleep,
                                   clock=lambda: self.clock.mono)
        metrics = OrderMetrics(self.metrics_registry)
        self.reporter = Reporter(metrics=metrics, activity=ActivityLog(0), policy=self.rig.policy,
                                 retry_topic=RETRY, summary=Aggregate)
        self.limits = TaskLimits(chunk=100, commit_interval_s=commit_interval_s,
                                 attempts_before_blocked=attempts_before_blocked, backoff_initial_s=0.5,
                                 backoff_max_s=4.0)
        self.tasks = PartitionTasks(
            new_task=self._new_task, membership=lambda: self.member,
            load_states=load_states, flow=self.flow, request_rebalance=request_rebalance,
            on_blocked=lambda n, blocked: (self.blocked_events.append((n, blocked is not None)),
                                           metrics.set_partition_blocked(n, blocked is not None)),
            chunk=100, monotonic=lambda: self.clock.mono)

    def _new_producer(self) -> TxnProducer:
        producer = self.prepared.pop(0) if self.prepared else TxnProducer()
        self.producers.append(producer)
        return producer

    @property
    def producer(self) -> TxnProducer:
        """The producer the committer uses now."""
        return self.producers[-1]

    @property
    def outputs(self) -> dict[int, PartitionView]:
        """Partition -> what its commits made visible."""
        return _Views(self.producers)

    def _new_task(self, number, part, owner) -> PartitionTask:
        task = PartitionTask(number, orders_topic=ORDERS, retry_topic=RETRY, handler=self.handler,
                             committer=self.committer, reporter=self.reporter, flow=self.flow, owner=owner,
                             store=self.table, limits=self.limits, part=part, monotonic=lambda: self.clock.mono,
                             wall=lambda: self.clock.wall, fault=self.handler.fault)
        if not self.start_loops:
            task._spawn = lambda: None
        return task

    def task(self, number: int = 0) -> PartitionTask:
        return self.tasks.tasks[number]

    def order(self, order_id, offset, partition=0, **kwargs):
        msg = self.rig.order(order_id, offset, **kwargs)
        msg.partition = partition
        msg.timestamp = self.clock.wall - 0.25
        return msg

    async def submit(self, records, topic=ORDERS):
        await self.tasks.submit(topic, records)

    async def settle(self, number: int = 0, rounds: int = 200) -> None:
        """Step a task until it has nothing to do now, jumping the clock over its waits (backoffs, commit
        intervals); stops at a retry copy that is not due (the caller moves the clock for that)."""
        task = self.task(number)
        for _ in range(rounds):
            await self.step(number)
            wait = task.next_wake_s()
            if wait == 0:
                continue
            part = task.part
            if task._retry_at == 0 and part is not None and part.changed_at is None:
                return
            if wait == float("inf"):
                return
            self.clock.advance(wait)
        raise AssertionError("the task never settled")

    async def step(self, number: int = 0) -> None:
        """A step of a task, and while it left a commit on its way, the wait for it and the next step, which
        takes it (the task's loop does the same, woken by the commit's end)."""
        task = self.task(number)
        await task.step()
        for _ in range(100):
            if task._committing is None:
                return
            await asyncio.wait([task._committing])
            await task.step()
        raise AssertionError("the task kept sending commits")

    def live(self) -> dict[int, tuple]:
        """What a reader of the table sees: each owned partition's (state, uncommitted)."""
        return {number: self.table.share(number) for number in self.tasks.owned()}

    def counter(self, name: str, **labels) -> float:
        return self.metrics_registry.get_sample_value(name, labels or None) or 0.0


class _Views(dict):
    def __init__(self, producers):
        super().__init__()
        self.producers = producers

    def __missing__(self, number):
        return PartitionView(self.producers, number)


def run(coro):
    return asyncio.run(coro)


def changelog_states(output: PartitionView) -> list[dict]:
    return [json.loads(record["value"]) for record in output.to(CHANGELOG)]


def copies_sent(output: PartitionView, start_offset: int = 0, timestamp: float | None = None) -> list:
    """The retry copies the partition committed, as the consumer will read them from the retry topic."""
    return [message(RETRY, r["partition"], start_offset + i, r["key"], r["value"], r["headers"],
                    timestamp=(r["timestamp_ms"] / 1000 if timestamp is None else timestamp))
            for i, r in enumerate(output.to(RETRY))]


# -- ownership and commits -------------------------------------------------------------------

def test_taking_over_partitions_notes_the_group_membership_and_reads_their_committed_states():
    harness = Harness(states={1: PartitionState(orders=5, applied={ORDERS: 9})})
    run(harness.tasks.on_assigned({0, 1}))
    assert {task.part.member for task in harness.tasks.tasks.values()} == {harness.member}
    assert harness.tasks.resume_offsets() == {(ORDERS, 1): 10}
    assert harness.live()[1] == (PartitionState(orders=5, applied={ORDERS: 9}), 0)
    assert harness.producers == [], "no producer per partition: the worker's starts at its first commit"


def test_state_and_outputs_become_visible_together_at_the_commit():
    harness = Harness(failures={"o-2": 1})

    async def scenario():
        await harness.tasks.on_assigned({0})
        await harness.submit([harness.order("o-1", 0), harness.order("o-2", 1)])
        await harness.step()
        output = harness.outputs[0]
        assert output.to(RETRY) == [] and harness.live()[0][0].orders == 1
        assert harness.live()[0][1] == 2, "two records applied in the open transaction"
        assert harness.counter("orders_processed_total") == 0, "nothing is reported before it is committed"
        harness.clock.advance(0.1)
        await harness.step()
        assert [record["topic"] for record in harness.producer.visible] == [RETRY, CHANGELOG]
        ((_records, offsets, member),) = harness.producer.transactions
        assert [(tp.topic, tp.partition, tp.offset) for tp in offsets] == [(ORDERS, 0, 2)], "the next offset"
        assert member == harness.member, "sent with the membership the partition was assigned under"
        (state,) = changelog_states(output)
        assert (state["orders"], state["retry_seq_sent"], state["applied"]) == (1, 1, {ORDERS: 1})
        assert harness.table.offsets[0] == 1 and harness.live()[0] == (PartitionState.from_value(state), 0)
        assert (harness.counter("orders_processed_total"), harness.counter("orders_retried_total")) == (1, 1)
        assert harness.live()[0][1] == 0 and harness.task().part.committed.orders == 1
    run(scenario())


def test_a_busy_partition_commits_once_its_transaction_has_been_open_for_the_interval():
    harness = Harness()

    async def scenario():
        await harness.tasks.on_assigned({0})
        await harness.submit([harness.order("o-1", 0)])
        await harness.step()
        harness.clock.advance(0.05)
        await harness.submit([harness.order("o-2", 1)])
        await harness.step()
        assert harness.producers == [], "open less than the interval"
        assert harness.task().next_wake_s() == pytest.approx(0.05)
        harness.clock.advance(0.05)
        await harness.step()
        assert changelog_states(harness.outputs[0])[-1]["orders"] == 2
    run(scenario())


def test_a_commit_refused_for_the_moment_is_asked_again_with_backoff():
    harness = Harness(producers=[TxnProducer(failures=[Failure.RETRY, Failure.RETRY])])
    output = harness.outputs[0]

    async def scenario():
        await harness.tasks.on_assigned({0})
        await harness.submit([harness.order("o-1", 0)])
        started = harness.clock.mono
        await harness.settle()
        assert changelog_states(output)[-1]["orders"] == 1
        waited = harness.clock.mono - started
        assert 0.1 + 0.6 * 0.8 <= waited <= 0.1 + 0.6 * 1.2, "the interval, then 0.2 s and 0.4 s, give or take 20%"
    run(scenario())


class SlowFlush(TxnProducer):
    """A producer whose flush takes `seconds` of the harness's clock (the broker slow to acknowledge)."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        super().__init__()
        self.clock, self.seconds = clock, seconds

    async def flush(self) -> None:
        self.clock.advance(self.seconds)
        await super().flush()


@pytest.mark.parametrize("flush_s, logged", [(1.5, True), (0.3, False)])
def test_a_slow_transaction_is_logged_with_the_time_each_step_took_and_its_partitions(flush_s, logged, caplog):
    harness = Harness()
    harness.prepared.append(SlowFlush(harness.clock, flush_s))

    async def scenario():
        await harness.tasks.on_assigned({0, 3})
        await harness.submit([harness.order("o-1", 0, partition=0), harness.order("o-2", 0, partition=3)])
        await harness.step(0)
        await harness.step(3)
        harness.clock.advance(1.0)
        await asyncio.gather(harness.step(0), harness.step(3))
    caplog.set_level("WARNING", logger="orders")
    run(scenario())
    assert harness.producer.commits == 1
    slow = [r.getMessage() for r in caplog.records if "transaction of" in r.getMessage()]
    if logged:
        assert slow == ["a transaction of 2 partition(s) took 1.50s (producer 0.00s, queue 0.00s, flush 1.50s, "
                        "offsets 0.00s, commit 0.00s): their next commits waited for it; partitions [0, 3]"]
    else:
        assert slow == []


def test_a_transaction_that_cannot_commit_is_aborted_and_its_records_applied_again():
    harness = Harness(producers=[TxnProducer(failures=[Failure.ABORT])], failures={"o-1": 1})
    output = harness.outputs[0]

    async def scenario():
        await harness.tasks.on_assigned({0})
        await harness.submit([harness.order("o-1", 0), harness.order("o-2", 1)])
        await harness.settle()
        state = changelog_states(output)[-1]
        assert (state["orders"], state["retry_seq_sent"], state["applied"]) == (1, 1, {ORDERS: 1})
        assert len(output.to(RETRY)) == 1, "the aborted retry copy never became visible; the new one did"
        assert harness.producer.aborts == 1 and harness.rig.reads == [], "applied again from memory, not read again"
        assert harness.counter("orders_processed_total") == 1 and harness.counter("orders_retried_total") == 1
    run(scenario())


def test_a_producer_that_cannot_abort_is_replaced_by_a_new_one_that_fences_it():
    stuck = TxnProducer(failures=[Failure.ABORT], abort_fails=100)
    harness = Harness(producers=[stuck])

    async def scenario():
        await harness.tasks.on_assigned({0})
        await harness.submit([harness.order("o-1", 0), harness.order("o-2", 1)])
        await harness.settle()
    run(scenario())
    fresh = harness.producer
    assert fresh is not stuck and fresh.started and stuck.closed
    assert stuck.visible == [] and changelog_states(harness.outputs[0])[-1]["orders"] == 2


@pytest.mark.parametrize("failure, where", [(Failure.FATAL, "commit"), (Failure.LOST, "offsets")])
def test_a_commit_that_finds_the_group_moved_on_or_the_producer_fenced_loses_the_partition(failure, where):
    producer = TxnProducer(failures=[failure] if where == "commit" else [],
                           offset_failures=[failure] if where == "offsets" else [])
    harness = Harness(producers=[producer])

    async def scenario():
        await harness.tasks.on_assigned({0})
        await harness.submit([harness.order("o-1", 0)])
        await harness.settle()
        assert producer.visible == [] and harness.rebalances == 1
        assert producer.closed is (failure is Failure.FATAL), "a fenced producer is replaced; otherwise aborted"
        assert producer.aborts == (failure is Failure.LOST)
        assert 0 not in harness.live()
        await harness.submit([harness.order("o-2", 1)])
        assert harness.task().orders == deque_of([]), "records of a lost partition are dropped"
    run(scenario())


def deque_of(items):
    from collections import deque
    return deque(items)


def test_a_partition_that_cannot_be_taken_over_yet_sets_itself_up_while_its_records_wait_paused():
    harness = Harness()
    harness.member = GroupMember("orders-app", -1, "")  # joining: no generation yet

    async def scenario():
        await harness.tasks.on_assigned({0})
        assert harness.live() == {} and harness.tasks.unready() == [0]
        await harness.submit([harness.order("o-1", 0)])
        assert (ORDERS, 0) in harness.paused and harness.tasks.backlog() == 0, "held: not in the backlog"
        await harness.step()
        assert harness.tasks.unready() == [0], "still no membership"
        harness.member = GroupMember("orders-app", 3, "member-1")
        await harness.settle()
        assert changelog_states(harness.outputs[0])[-1]["orders"] == 1
        assert harness.producer.transactions[-1][2].generation == 3
        assert harness.paused == set()
    run(scenario())


def test_a_partition_whose_changelog_holds_an_earlier_owners_open_transaction_is_taken_over_once_it_ends():
    harness = Harness(states={1: PartitionState(orders=5, applied={ORDERS: 9})})
    harness.settling = {1}

    async def scenario():
        await harness.tasks.on_assigned({0, 1})
        assert harness.tasks.unready() == [1], "partition 0 is set up at once"
        await harness.submit([harness.order("o-1", 10, partition=1), harness.order("o-2", 0, partition=0)])
        assert (ORDERS, 1) in harness.paused and (ORDERS, 0) not in harness.paused
        await harness.settle(0)
        assert changelog_states(harness.outputs[0])[-1]["orders"] == 1, "partition 0 does not wait for 1"
        for _ in range(10):  # 20 s: a killed worker's transaction lives up to about that long
            await harness.step(1)
            assert harness.task(1).next_wake_s() == 0, "each attempt waits for it already: the next comes at once"
            harness.clock.advance(2.0)
        assert harness.tasks.unready() == [1] and harness.blocked_events == [], "waiting is not failing"
        harness.settling.clear()
        await harness.settle(1)
        assert harness.tasks.unready() == []
        assert changelog_states(harness.outputs[1])[-1]["orders"] == 6, "resumed from the state it read"
        assert harness.paused == set()
    run(scenario())


def test_a_partition_taken_over_late_shows_its_committed_state_at_once_though_no_record_comes():
    """Its earlier owner applied every record before letting it go: nothing wakes the task after the take-over."""
    harness = Harness(states={0: PartitionState(orders=5, applied={ORDERS: 9})})
    harness.settling = {0}

    async def scenario():
        await harness.tasks.on_assigned({0})
        await harness.step()
        harness.settling.clear()
        await harness.step()
        assert harness.live() == {0: (PartitionState(orders=5, applied={ORDERS: 9}), 0)}
        assert harness.task().next_wake_s() == float("inf"), "nothing left to do until records come"
    run(scenario())


def test_an_earlier_owners_transaction_open_past_the_patience_blocks_the_partition_until_it_ends():
    harness = Harness()
    harness.settling = {0}

    async def scenario():
        await harness.tasks.on_assigned({0})
        await harness.step()
        harness.clock.advance(harness.limits.settle_patience_s)
        for _ in range(harness.limits.attempts_before_blocked):
            await harness.step()
            harness.clock.advance(harness.task().next_wake_s())
        assert harness.task().blocked is not None and "still open" in harness.task().blocked.reason
        assert harness.blocked_events == [(0, True)]
        harness.settling.clear()
        await harness.step()
        assert harness.tasks.unready() == [] and harness.blocked_events == [(0, True), (0, False)]
    run(scenario())


def test_taking_over_on_assignment_never_holds_the_rebalance_past_its_bound():
    """The rebalance callback sends no heartbeats: a take-over that hangs there must not hold it."""
    harness = Harness()
    harness.tasks.assign_timeout_s = 0.05
    answer = asyncio.Event()
    load_states = harness.tasks._load_states

    async def slow_load_states(numbers, wait_s):
        await answer.wait()
        return await load_states(numbers, wait_s)
    harness.tasks._load_states = slow_load_states

    async def scenario():
        await asyncio.wait_for(harness.tasks.on_assigned({0, 1}), 5)
        assert harness.tasks.unready() == [0, 1]
        answer.set()
        await harness.step(0)
        assert harness.tasks.unready() == [1]
        assert set(harness.load_waits) == {tasks_module.TAKE_OVER_WAIT_S}
    run(scenario())


def test_revoked_partitions_commit_what_they_applied_in_one_transaction():
    harness = Harness(start_loops=True, commit_interval_s=60)

    async def scenario():
        await harness.tasks.on_assigned({0, 1})
        await harness.submit([harness.order("o-1", 0), harness.order("o-2", 0, partition=1)])
        await asyncio.sleep(0.05)
        assert harness.producers == [], "applied, not committed yet"
        await harness.tasks.on_revoked({0, 1})
        for number in (0, 1):
            assert changelog_states(harness.outputs[number])[-1]["orders"] == 1
        assert harness.producer.commits == 1, "both partitions' last commits went in one transaction"
        assert harness.tasks.tasks == {}
    run(scenario())


class HeldCommit(TxnProducer):
    """Its first commit waits until `release` is set: a transaction on its way while partitions are let go."""

    def __init__(self) -> None:
        super().__init__()
        self.release: asyncio.Event | None = None

    async def commit(self) -> None:
        if self.commits == 0:
            await self.release.wait()
        await super().commit()


def test_the_last_commits_at_revocation_wait_for_the_commit_on_its_way_and_go_in_one_transaction():
    """Partition 0's commit has begun (held at the broker) and partition 1's is queued behind it; both applied
    more records since, and partition 2 applied one. Sent as each partition came, the last commits went in
    two more transactions after the one on its way, and each transaction waits for the broker to finish the
    one before: 1.1-2.3 s each on a busy broker, which held a 192-partition rebalance for 5 s."""
    producer = HeldCommit()
    harness = Harness(producers=[producer], start_loops=True, commit_interval_s=0.01)

    async def commit_due(number):
        harness.clock.advance(0.01)
        harness.task(number)._wake.set()
        await asyncio.sleep(0.01)

    async def scenario():
        producer.release = asyncio.Event()
        await harness.tasks.on_assigned({0, 1, 2})
        await harness.submit([harness.order("o-1", 0)])
        await asyncio.sleep(0.01)
        await commit_due(0)
        assert producer.in_transaction, "partition 0's commit has begun"
        await harness.submit([harness.order("o-2", 0, partition=1)])
        await asyncio.sleep(0.01)
        await commit_due(1)
        assert harness.task(1)._committing is not None, "partition 1's commit is queued behind it"
        await harness.submit([harness.order("o-3", 1), harness.order("o-4", 1, partition=1),
                              harness.order("o-5", 0, partition=2)])
        await asyncio.sleep(0.01)
        revoking = asyncio.create_task(harness.tasks.on_revoked({0, 1, 2}))
        await asyncio.sleep(0.05)
        assert producer.commits == 0, "nothing more committed while the transaction on its way is held"
        producer.release.set()
        await asyncio.wait_for(revoking, 2.0)  # within the partitions' patience: none waited it out
    run(scenario())
    sent = [sorted(tp.partition for tp in offsets) for _records, offsets, _member in producer.transactions]
    assert sent == [[0], [0, 1, 2]], "the one on its way, then every partition's last commit in one"
    assert [changelog_states(harness.outputs[n])[-1]["orders"] for n in (0, 1, 2)] == [2, 2, 1]
    assert harness.tasks.tasks == {}


def test_the_last_commits_go_at_the_deadline_when_a_partition_let_go_never_comes():
    sent = []

    async def scenario():
        together = LastCommits(2, time.monotonic() + 0.05)
        await asyncio.wait_for(together.send(lambda: sent.append("partition 0")), 1.0)
        await together.send(lambda: sent.append("partition 1, late"))
    run(scenario())
    assert sent == ["partition 0", "partition 1, late"]


def test_the_last_commit_at_revocation_is_asked_again_while_the_broker_refuses_it_for_the_moment():
    producer = TxnProducer(failures=[Failure.RETRY, Failure.RETRY])
    harness = Harness(producers=[producer], start_loops=True, commit_interval_s=60)

    async def scenario():
        await harness.tasks.on_assigned({0})
        await harness.submit([harness.order("o-1", 0)])
        await asyncio.sleep(0.05)
        await harness.tasks.on_revoked({0})
    run(scenario())
    assert changelog_states(harness.outputs[0]) == [
        PartitionState(orders=1, total_micros=10_000_000, applied={ORDERS: 0}).to_value()]
    assert producer.commits == 1 and producer.failures == [], "refused twice, then committed"


def test_partitions_due_at_the_same_time_commit_together_and_latecomers_go_in_the_next_transaction():
    harness = Harness(start_loops=True, commit_interval_s=0.01)

    async def scenario():
        await harness.tasks.on_assigned({0, 1, 2})
        await harness.submit([harness.order(f"o-{n}", 0, partition=n) for n in (0, 1, 2)])
        await asyncio.sleep(0.2)
        await harness.tasks.stop()
    run(scenario())
    transactions = harness.producer.transactions
    partitions = sorted(tp.partition for _records, offsets, _member in transactions for tp in offsets)
    assert partitions == [0, 1, 2], "each partition's offset committed once"
    assert len(transactions) < 3, "at least two partitions shared a transaction"


def test_partitions_assigned_under_different_memberships_never_share_a_transaction():
    harness = Harness(start_loops=True, commit_interval_s=60)

    async def scenario():
        await harness.tasks.on_assigned({0})
        harness.member = GroupMember("orders-app", 2, "member-1")
        await harness.tasks.on_assigned({1})
        await harness.submit([harness.order("o-1", 0), harness.order("o-2", 0, partition=1)])
        await asyncio.sleep(0.05)
        await harness.tasks.stop()
    run(scenario())
    sent = sorted((member.generation, [tp.partition for tp in offsets])
                  for _records, offsets, member in harness.producer.transactions)
    assert sent == [(1, [0]), (2, [1])]


def test_a_partition_told_to_stop_while_it_waits_for_a_commit_stops_as_soon_as_the_commit_is_done(caplog):
    """The stop came while the task awaited its commit; the task used to forget the wake-up and sleep until
    revocation gave up on it (5 s), holding the whole group's rebalance."""
    class SlowCommit(TxnProducer):
        async def commit(self):
            await asyncio.sleep(0.05)
            await super().commit()
    producer = SlowCommit()
    harness = Harness(producers=[producer], start_loops=True, commit_interval_s=0.01)

    async def scenario():
        await harness.tasks.on_assigned({0})
        await harness.submit([harness.order("o-1", 0)])
        await asyncio.sleep(0.01)
        harness.clock.advance(0.01)  # the commit is due: wake the task (its timer runs on the real clock)
        harness.task()._wake.set()
        while not producer.in_transaction:
            await asyncio.sleep(0.001)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await harness.tasks.on_revoked({0})
        return loop.time() - started
    assert run(scenario()) < 1.0
    assert "did not finish" not in caplog.text
    assert changelog_states(harness.outputs[0])[-1]["orders"] == 1


def test_records_of_a_partition_not_owned_here_are_left_alone():
    harness = Harness()

    async def scenario():
        await harness.tasks.on_assigned({0})
        await harness.submit([harness.order("o-1", 0, partition=3)])
        assert 3 not in harness.live() and harness.outputs[3].to(CHANGELOG) == []
    run(scenario())


def test_resume_offsets_are_the_next_offsets_of_every_owned_source_partition():
    harness = Harness(states={0: PartitionState(applied={ORDERS: 4, RETRY: 2}), 1: PartitionState()})
    run(harness.tasks.on_assigned({0, 1}))
    assert harness.tasks.resume_offsets() == {(ORDERS, 0): 5, (RETRY, 0): 3}


@pytest.mark.parametrize("numbers", [[], [0]])
def test_stop_commits_what_was_applied_and_the_committer_then_closes_its_producer(numbers):
    harness = Harness(start_loops=True, commit_interval_s=60)

    async def scenario():
        await harness.tasks.on_assigned(set(numbers))
        await harness.submit([harness.order("o-1", 0, partition=n) for n in numbers])
        await asyncio.sleep(0.05)
        await harness.tasks.stop()
        harness.committer.close()
    run(scenario())
    assert harness.tasks.tasks == {}
    assert [changelog_states(harness.outputs[n])[-1]["orders"] for n in numbers] == [1] * len(numbers)
    assert len(harness.producers) == len(numbers) and all(producer.closed for producer in harness.producers)


def test_dead_letters_are_reported_by_reason_once_committed():
    harness = Harness()

    async def scenario():
        await harness.tasks.on_assigned({0})
        await harness.submit([message(ORDERS, 0, 0, b"k", b"junk")])
        await harness.settle()
    run(scenario())
    assert harness.counter("orders_dead_lettered_total", reason="undecodable") == 1
    assert len(harness.outputs[0].to(DLQ)) == 1


# -- retry copies wait only for themselves ----------------------------------------------------

def failed_once(harness: Harness, order_ids: list[str]):
    """Orders that fail once on partition 0, applied and committed; their copies as the consumer reads them."""
    async def scenario():
        await harness.tasks.on_assigned({0})
        await harness.submit([harness.order(order_id, i) for i, order_id in enumerate(order_ids)])
        await harness.settle()
    return scenario()


def test_a_retry_copy_not_due_pauses_its_retry_partition_alone_while_orders_flow():
    harness = Harness(failures={"o-1": 1})

    async def scenario():
        await failed_once(harness, ["o-1"])
        (copy,) = copies_sent(harness.outputs[0])
        await harness.submit([copy], topic=RETRY)
        await harness.submit([harness.order("o-2", 1), harness.order("o-3", 2)])
        await harness.settle()
        assert harness.paused == {(RETRY, 0)}, "only the retry partition waits"
        assert harness.tasks.holding() == {(RETRY, 0): "next retry copy not due"}
        assert harness.live()[0][0].orders == 2, "orders behind the copy were counted"
        assert harness.tasks.backlog() == 0, "a waiting copy is not in the backlog"
        not_before_s = int(dict(copy.headers)[h.NOT_BEFORE_MS]) / 1000
        assert harness.task().next_wake_s() == pytest.approx(not_before_s - harness.clock.wall, abs=0.002)

        harness.clock.advance(harness.task().next_wake_s())
        await harness.settle()
        assert harness.paused == set() and changelog_states(harness.outputs[0])[-1]["orders"] == 3
    run(scenario())


def test_a_copy_whose_not_before_lies_a_day_ahead_is_tried_after_the_delay_and_allowance():
    harness = Harness(failures={"o-1": 1})

    async def scenario():
        await failed_once(harness, ["o-1"])
        (sent,) = copies_sent(harness.outputs[0])
        headers = [(n, str(int(harness.clock.wall * 1000) + DAY_MS).encode() if n == h.NOT_BEFORE_MS else v)
                   for n, v in sent.headers]
        skewed = message(RETRY, 0, 0, sent.key, sent.value, headers, timestamp=sent.timestamp)
        await harness.submit([skewed], topic=RETRY)
        await harness.settle()
        waited = harness.task().next_wake_s()
        assert 0 < waited <= 3.0, "the delay (2 s) and the allowance (1 s) from the copy's own timestamp"
        harness.clock.advance(waited)
        await harness.settle()
        assert changelog_states(harness.outputs[0])[-1]["orders"] == 1
    run(scenario())


def test_copies_that_were_never_sent_are_judged_at_once_whatever_their_not_before():
    harness = Harness(failures={"o-1": 1})

    async def scenario():
        await failed_once(harness, ["o-1"])
        (sent,) = copies_sent(harness.outputs[0], start_offset=2)
        far = str(int(harness.clock.wall * 1000) + DAY_MS).encode()
        ghosts = [message(RETRY, 0, i, b"ghost", sent.value,
                          [(n, far if n == h.NOT_BEFORE_MS else v) for n, v in sent.headers if n != h.RETRY_SEQ])
                  for i in range(2)]
        await harness.submit([*ghosts, sent], topic=RETRY)
        await harness.settle()
        assert len(harness.outputs[0].to(DLQ)) == 2, "the ghosts went to the DLQ without waiting"
        assert harness.paused == {(RETRY, 0)}, "the real copy behind them waits for its own time"
    run(scenario())


# -- the error boundary ------------------------------------------------------------------------

@pytest.mark.parametrize("point", ["applied", "retry-queued", "dead-letter-queued", "copy-attempted", "commit"])
def test_an_exception_at_any_point_aborts_and_applies_the_records_again_exactly_once(point):
    harness = Harness(failures={"o-1": 1})
    armed = {point: 1}

    def fault(where: str) -> None:
        if armed.get(where):
            armed[where] -= 1
            raise RuntimeError(f"injected at {where}")
    harness.handler.fault = fault

    async def scenario():
        await harness.tasks.on_assigned({0})
        await harness.submit([harness.order("o-0", 0), harness.order("o-1", 1),
                              message(ORDERS, 0, 2, b"junk", b"junk"), harness.order("o-3", 3)])
        await harness.settle()
        for task in harness.tasks.tasks.values():
            task.fault = fault
        (copy,) = copies_sent(harness.outputs[0], timestamp=harness.clock.wall - 5)
        await harness.submit([copy], topic=RETRY)
        await harness.settle()
    armed_before = dict(armed)
    run(scenario())
    assert armed != armed_before, f"the fault at {point} fired"
    state = changelog_states(harness.outputs[0])[-1]
    assert (state["orders"], state["dead_letters"], state["retry_seq_done"], state["retry_seq_sent"]) == (3, 1, 1, 1)
    assert len(harness.outputs[0].to(DLQ)) == 1 and len(harness.outputs[0].to(RETRY)) == 1
    assert harness.counter("orders_processed_total") == 3


def test_an_unclassified_error_striking_one_record_three_times_dead_letters_it_and_the_others_count():
    harness = Harness()
    original = harness.rig.handler._process

    def process(part, msg, record, number, attempt):
        if record["orderId"] == "o-poison":
            raise TypeError("a bug this record triggers")
        original(part, msg, record, number, attempt)
    harness.handler._process = process

    async def scenario():
        await harness.tasks.on_assigned({0})
        await harness.submit([harness.order("o-0", 0), harness.order("o-poison", 1), harness.order("o-2", 2)])
        await harness.settle()
    run(scenario())
    output = harness.outputs[0]
    (dead,) = output.to(DLQ)
    headers = dict(dead["headers"])
    assert (dead["key"], headers[h.DLQ_REASON], headers[h.ERROR_TYPE]) == (b"o-poison", b"processing-error",
                                                                         b"TypeError")
    state = changelog_states(output)[-1]
    assert (state["orders"], state["dead_letters"], state["applied"]) == (2, 1, {ORDERS: 2})
    assert changelog_states(output)[0]["applied"] == {ORDERS: 0}, "the record before it committed on its own first"


def test_a_registry_that_does_not_answer_is_retried_as_long_as_it_lasts_and_never_dead_letters():
    harness = Harness(attempts_before_blocked=3)
    down = {"left": 6}
    real_decode = harness.rig.codec.decode

    async def decode(data):
        if down["left"]:
            down["left"] -= 1
            raise RegistryUnavailable("fetching schema id 1 failed: JSONDecodeError: Expecting value")
        return await real_decode(data)
    harness.rig.codec.decode = decode
    harness.rig.codec.decode_cached = lambda data: None  # every record needs the registry

    async def scenario():
        await harness.tasks.on_assigned({0})
        await harness.submit([harness.order("o-0", 0)])
        for _ in range(4):
            await harness.step()
            harness.clock.advance(harness.task().next_wake_s())
        assert harness.task().blocked is not None and "JSONDecodeError" in harness.task().blocked.reason
        assert harness.paused == {(ORDERS, 0), (RETRY, 0)}
        assert harness.counter("orders_partition_blocked", partition="0") == 1
        await harness.settle()
    run(scenario())
    assert changelog_states(harness.outputs[0])[-1]["orders"] == 1 and harness.outputs[0].to(DLQ) == []
    assert harness.blocked_events == [(0, True), (0, False)]
    assert harness.counter("orders_partition_blocked", partition="0") == 0 and harness.paused == set()


def test_an_output_the_broker_refuses_blocks_the_partition_until_it_is_accepted_and_loses_nothing(caplog):
    producer = TxnProducer()
    producer.refuse_topic = DLQ
    harness = Harness(producers=[producer], attempts_before_blocked=3)
    output = harness.outputs[0]

    async def scenario():
        await harness.tasks.on_assigned({0})
        await harness.submit([harness.order("o-0", 0), message(ORDERS, 0, 1, b"junk", b"junk"),
                              harness.order("o-2", 2)])
        for _ in range(12):
            await harness.step()
            harness.clock.advance(harness.task().next_wake_s())
        blocked = harness.task().blocked
        assert blocked is not None and blocked.record == f"{ORDERS}[0]@1"
        assert f"{DLQ} refused a record (caused by {ORDERS}[0]@1): Message size too large" in blocked.reason
        assert changelog_states(output)[-1]["applied"] == {ORDERS: 0}, "the record before it committed"
        assert harness.task().next_wake_s() <= 4.0, "it keeps trying, every few seconds at most"
        producer.refuse_topic = None
        await harness.settle()
    run(scenario())
    state = changelog_states(output)[-1]
    assert (state["orders"], state["dead_letters"], state["applied"]) == (2, 1, {ORDERS: 2})
    assert harness.task().blocked is None and harness.paused == set()
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and "blocked" in r.getMessage()]
    assert len(errors) == 1 and f"{ORDERS}[0]@1" in errors[0] and "Message size too large" in errors[0]


def test_random_faults_over_many_records_still_count_each_order_once():
    harness = Harness()
    faults = FaultInjector(0.02, random.Random(7))
    harness.handler.fault = faults
    orders = [harness.order(f"o-{i}", i, price=(i % 40) * 0.25) for i in range(600)]

    async def scenario():
        await harness.tasks.on_assigned({0})
        harness.task().fault = faults
        for start in range(0, len(orders), 50):
            await harness.submit(orders[start:start + 50])
            await harness.settle(rounds=2000)
    run(scenario())
    assert faults.raised >= 10
    state = changelog_states(harness.outputs[0])[-1]
    assert (state["orders"], state["dead_letters"]) == (600 - state["dead_letters"], state["dead_letters"])
    dead = {record["key"] for record in harness.outputs[0].to(DLQ)}
    counted = [o for o in orders if o.key not in dead]
    assert state["total_micros"] == sum(int((i % 40) * 0.25 * 1_000_000) for i, o in enumerate(orders)
                                        if o.key not in dead)
    assert len(counted) + len(dead) == 600 and state["applied"] == {ORDERS: 599}


# -- flow -----------------------------------------------------------------------------------------

def test_agents_wait_for_the_backlog_of_busy_partitions_but_never_for_held_ones():
    harness = Harness(budget=3, failures={"o-1": 1})

    async def scenario():
        await failed_once(harness, ["o-1"])
        (copy,) = copies_sent(harness.outputs[0])
        held = [message(RETRY, 0, i, copy.key, copy.value, copy.headers, timestamp=harness.clock.wall)
                for i in range(5)]
        handing_over = asyncio.ensure_future(harness.submit(held, topic=RETRY))
        await asyncio.sleep(0)
        await harness.step()  # the task finds the head not due: a waiting retry inbox is not backlog
        await asyncio.wait_for(handing_over, 1.0)
        assert harness.tasks.backlog() == 0
        waiting = asyncio.ensure_future(harness.submit([harness.order(f"o-{i}", i) for i in range(1, 6)]))
        await asyncio.sleep(0.01)
        assert not waiting.done(), "five orders of a busy partition exceed the budget of three"
        await harness.step()
        await asyncio.wait_for(waiting, 1.0)
    run(scenario())


def test_copies_left_in_the_inbox_when_a_step_runs_out_of_room_are_applied_without_another_record_coming():
    harness = Harness(failures={f"o-{i}": 1 for i in range(5)})
    harness.limits = TaskLimits(chunk=2, commit_interval_s=0.1, backoff_initial_s=0.5, backoff_max_s=4.0)

    async def scenario():
        await failed_once(harness, [f"o-{i}" for i in range(5)])
        copies = copies_sent(harness.outputs[0], timestamp=harness.clock.wall - 5)
        await harness.submit(copies, topic=RETRY)
        await harness.step()
        assert len(harness.task().retries) == 3, "a step applies at most a chunk"
        assert harness.task().next_wake_s() == 0, "the copies left are due: the task must not sleep"
        await harness.settle()
    run(scenario())
    assert changelog_states(harness.outputs[0])[-1]["orders"] == 5


class HeldFlush(TxnProducer):
    """A producer whose flush waits until `release` is set (the broker slow to acknowledge)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.release = asyncio.Event()

    async def flush(self) -> None:
        await self.release.wait()
        await super().flush()


class FailOnceApplied:
    """The handler's fault hook: once armed, the next record applied breaks half-applied, between counting the
    order and marking its offset."""

    def __init__(self) -> None:
        self.armed = False

    def __call__(self, point: str) -> None:
        if self.armed and point == "applied":
            self.armed = False
            raise RuntimeError("broke between counting the order and marking its offset")


async def _commit_on_its_way(harness: Harness, producer: HeldFlush) -> PartitionTask:
    """Partition 0 applies o-0 and sends its commit on its way, held at the flush."""
    await harness.tasks.on_assigned({0})
    task = harness.task()
    await harness.submit([harness.order("o-0", 0)])
    await task.step()
    harness.clock.advance(0.1)
    await task.step()
    await asyncio.sleep(0)  # the commit round begins and waits at the flush
    assert task._committing is not None and not task._committing.done() and producer.queued
    return task


def test_records_that_come_while_a_commit_is_on_its_way_are_applied_at_once_and_go_into_the_next_one():
    producer = HeldFlush()
    harness = Harness(producers=[producer])
    output = harness.outputs[0]

    async def scenario():
        task = await _commit_on_its_way(harness, producer)
        await harness.submit([harness.order("o-1", 1), harness.order("o-2", 2)])
        await task.step()
        state, uncommitted = harness.live()[0]
        assert (state.orders, uncommitted) == (3, 3), "applied and shown while the commit is on its way"
        assert harness.tasks.backlog() == 2, "held for the commit's outcome: they count against the budget"
        assert producer.visible == [] and harness.counter("orders_processed_total") == 0

        producer.release.set()
        await asyncio.wait([task._committing])
        await task.step()
        ((records, offsets, _member),) = producer.transactions
        assert [(tp.topic, tp.offset) for tp in offsets] == [(ORDERS, 1)], "the sealed work: o-0 only"
        assert [(s["orders"], s["applied"]) for s in changelog_states(output)] == [(1, {ORDERS: 0})]
        assert harness.counter("orders_processed_total") == 1 and harness.live()[0][1] == 2
        assert harness.tasks.backlog() == 0

        await harness.settle()
        assert [(s["orders"], s["applied"]) for s in changelog_states(output)] == [(1, {ORDERS: 0}),
                                                                                  (3, {ORDERS: 2})]
        assert harness.counter("orders_processed_total") == 3 and harness.live()[0][1] == 0
    run(scenario())


def test_an_error_while_a_commit_is_on_its_way_keeps_what_it_commits_and_applies_only_the_later_records_again():
    producer = HeldFlush()
    harness = Harness(producers=[producer])
    output = harness.outputs[0]
    fault = FailOnceApplied()

    async def scenario():
        harness.handler.fault = fault
        task = await _commit_on_its_way(harness, producer)
        fault.armed = True
        await harness.submit([harness.order("o-1", 1), harness.order("o-2", 2)])
        asyncio.get_running_loop().call_soon(producer.release.set)
        await task.step()  # o-1 fails half-applied: the boundary waits for the commit on its way first
        assert [(s["orders"], s["applied"]) for s in changelog_states(output)] == [(1, {ORDERS: 0})]
        assert task.part.committed.orders == 1 and task.part.state.orders == 1, "o-1's half is dropped"
        assert [msg.offset for msg in task.orders] == [1, 2], "put back, to be applied again"

        await harness.settle()
        assert [(s["orders"], s["applied"]) for s in changelog_states(output)][-1] == (3, {ORDERS: 2})
        assert producer.aborts == 0 and harness.counter("orders_processed_total") == 3
    run(scenario())


def test_a_commit_that_fails_on_its_way_applies_its_records_and_the_later_ones_again_exactly_once():
    producer = HeldFlush(failures=[Failure.ABORT])
    harness = Harness(producers=[producer])
    output = harness.outputs[0]

    async def scenario():
        task = await _commit_on_its_way(harness, producer)
        await harness.submit([harness.order("o-1", 1)])
        await task.step()
        assert task.part.state.orders == 2
        producer.release.set()
        await asyncio.wait([task._committing])
        await task.step()
        assert task.part.state.orders == 0 and [msg.offset for msg in task.orders] == [0, 1], \
            "back to the committed state; the sealed record and the later one wait to be applied again"

        await harness.settle()
        assert [(s["orders"], s["applied"]) for s in changelog_states(output)] == [(2, {ORDERS: 1})]
        assert producer.aborts == 1 and harness.counter("orders_processed_total") == 2
    run(scenario())


def test_an_error_while_a_commit_fails_on_its_way_says_so_and_applies_everything_again_once(caplog):
    producer = HeldFlush(failures=[Failure.ABORT])
    harness = Harness(producers=[producer])
    output = harness.outputs[0]
    fault = FailOnceApplied()

    async def scenario():
        harness.handler.fault = fault
        task = await _commit_on_its_way(harness, producer)
        fault.armed = True
        await harness.submit([harness.order("o-1", 1)])
        asyncio.get_running_loop().call_soon(producer.release.set)
        await task.step()
        assert task.part.state.orders == 0 and [msg.offset for msg in task.orders] == [0, 1]
        await harness.settle()
        assert [(s["orders"], s["applied"]) for s in changelog_states(output)] == [(1, {ORDERS: 0}),
                                                                                  (2, {ORDERS: 1})], \
            "the record before the failing one commits on its own first, then the failing one"
        assert harness.counter("orders_processed_total") == 2
    run(scenario())
    assert "partition 0: its commit on its way failed too (TransactionError: refused)" in caplog.text
