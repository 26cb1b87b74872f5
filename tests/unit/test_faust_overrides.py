"""The upstream code orders/faust_overrides reaches into is the code it was written against."""
import hashlib
import importlib
import inspect
from importlib.metadata import version

import pytest
from faust.types import TP

from orders.faust_overrides import PINNED, UPSTREAM


def upstream_source(dotted: str) -> str:
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attr in parts[split:]:
            obj = getattr(obj, attr)
        break
    if isinstance(obj, property):
        obj = obj.fget
    obj = getattr(obj, "fun", obj)  # a mode Service.task wraps its function
    return inspect.getsource(obj)


@pytest.mark.parametrize("package", sorted(PINNED))
def test_the_installed_versions_are_the_pinned_ones(package):
    assert version(package) == PINNED[package], (
        f"{package} {version(package)} is installed; orders/faust_overrides was written for {PINNED[package]}: "
        f"check every entry of UPSTREAM against the new code before changing the pin")


@pytest.mark.parametrize("dotted", sorted(UPSTREAM))
def test_the_upstream_code_an_override_relies_on_has_not_changed(dotted):
    digest = hashlib.sha256(upstream_source(dotted).encode()).hexdigest()[:16]
    assert digest == UPSTREAM[dotted], (
        f"{dotted} changed upstream (digest {digest}, was {UPSTREAM[dotted]}): read the new code, adapt the "
        f"override in orders/faust_overrides that names it, then update UPSTREAM")


def test_a_seek_overtaken_by_a_rebalance_is_left_to_the_next_recovery(monkeypatch, caplog):
    """aiokafka raises IllegalStateError for a partition that a newer rebalance took away; the fast path's seek
    after a fetch during a rebalance hit it, and the Fetcher service crashed, stopping the worker."""
    import asyncio
    import logging

    from aiokafka.errors import IllegalStateError
    from faust.transport.drivers import aiokafka as faust_aiokafka

    from orders.faust_overrides.consumer import OrdersConsumer

    async def overtaken(self):
        raise IllegalStateError("No current assignment for partition TopicPartition(topic='orders', partition=3)")
    monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", overtaken)
    consumer = OrdersConsumer.__new__(OrdersConsumer)
    with caplog.at_level(logging.INFO, logger="orders"):
        asyncio.run(consumer.perform_seek())
    assert "seek skipped, the assignment changed meanwhile" in caplog.text


def test_the_worker_consumer_reads_committed_waits_100_ms_and_fetches_at_most_4_mib(monkeypatch):
    """What the worker's consumer changes in the AIOKafkaConsumer Faust builds (before start() builds its
    fetcher from these attributes, which the digest of AIOKafkaConsumer.start holds)."""
    import asyncio

    from aiokafka import AIOKafkaConsumer
    from faust.transport.drivers import aiokafka as faust_aiokafka

    from orders.faust_overrides.consumer import ReadCommittedConsumerThread

    async def build():
        stock = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
        monkeypatch.setattr(faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer",
                            lambda self, transport: stock)
        thread = ReadCommittedConsumerThread.__new__(ReadCommittedConsumerThread)
        consumer = thread._create_worker_consumer(None)
        await stock.stop()
        return stock, consumer

    stock, consumer = asyncio.run(build())
    assert consumer is stock
    assert consumer._isolation_level == "read_committed"
    assert consumer._fetch_max_wait_ms == 100
    assert consumer._fetch_max_bytes == 4 * 1024 * 1024


def test_a_source_partition_with_no_state_offset_and_no_committed_offset_is_sought_to_its_start(monkeypatch):
    """Records the fast path fetched and dropped (fetched while the flow was stopped, or of an older generation)
    must be fetched again: after Faust's seek to the committed offsets, a source partition with neither a
    state offset nor a committed offset goes back to offset 0, as a new assignment would. Other topics
    (the changelog) are left to Faust."""
    import asyncio

    from faust.transport.drivers import aiokafka as faust_aiokafka
    from faust.types import TP

    from orders.faust_overrides.consumer import OrdersConsumer

    async def faust_seek(self):
        self._committed_offset.update({TP("orders-retry", 2): 40})
    monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", faust_seek)
    assigned = {TP(topic, n) for topic in ("orders", "orders-retry", "app-order-stats-changelog") for n in (1, 2)}
    sought = {}

    class Hooks:
        source_topics = frozenset({"orders", "orders-retry"})

        def resume_offsets(self):
            return {("orders", 1): 500, ("orders", 2): 700}

    consumer = OrdersConsumer.__new__(OrdersConsumer)
    consumer._committed_offset = {}
    consumer.app = type("App", (), {"state_hooks": Hooks()})()
    consumer.assignment = lambda: assigned

    async def seek_wait(offsets):
        sought.update(offsets)
    consumer.seek_wait = seek_wait
    asyncio.run(consumer.perform_seek())
    assert sought == {TP("orders", 1): 500, TP("orders", 2): 700, TP("orders-retry", 1): 0}


def test_the_read_ahead_is_bounded_on_the_fetcher_before_faust_handles_the_first_assignment(monkeypatch):
    """Installed in the consumer's thread, once per fetcher (a later assignment keeps it), before Faust's
    handling of the assignment, after which the fetcher's requests go out; each of Faust's fetches of records
    tells it which partitions are being delivered."""
    import asyncio
    from types import SimpleNamespace

    from faust.transport.consumer import ConsumerThread
    from faust.transport.drivers import aiokafka as faust_aiokafka

    from orders.faust_overrides.consumer import ReadCommittedConsumerThread
    from orders.faust_overrides.read_ahead import HELD_BYTES_LIMIT, READ_AHEAD_BYTES

    def plan(assignment):
        return [], {}, 0.2, False, []
    fetcher = SimpleNamespace(_records={}, _fetcher_timeout=0.2, _get_actions_per_node=plan)
    seen = []

    async def faust_handles(self, assigned, generation_id=0):
        seen.append((len(assigned), generation_id, self.read_ahead.fetcher, self.read_ahead.limit,
                     self.read_ahead.held_limit))

    async def faust_fetches(self, consumer, active_partitions, timeout=None, max_records=None):
        return {"delivering": self.read_ahead.delivering, "max_records": max_records}
    monkeypatch.setattr(ConsumerThread, "on_partitions_assigned", faust_handles)
    monkeypatch.setattr(faust_aiokafka.AIOKafkaConsumerThread, "_fetch_records", faust_fetches)
    thread = ReadCommittedConsumerThread.__new__(ReadCommittedConsumerThread)
    thread._ensure_consumer = lambda: SimpleNamespace(_fetcher=fetcher)
    assigned = {TP("orders", p) for p in range(576)}
    asyncio.run(thread.on_partitions_assigned(assigned, 7))
    first = thread.read_ahead
    asyncio.run(thread.on_partitions_assigned(assigned, 8))
    assert seen == [(576, 7, fetcher, READ_AHEAD_BYTES, HELD_BYTES_LIMIT),
                    (576, 8, fetcher, READ_AHEAD_BYTES, HELD_BYTES_LIMIT)]
    assert thread.read_ahead is first
    assert fetcher._get_actions_per_node == first._get_actions_per_node

    active = {TP("orders", 1), TP("orders", 2)}
    fetched = asyncio.run(thread._fetch_records(None, active, timeout=1.0, max_records=10))
    assert fetched == {"delivering": active, "max_records": 10}


def test_a_resume_wakes_the_fetch_of_records_waiting_in_the_consumers_thread_and_a_pause_does_not():
    """aiokafka wakes a waiting fetch of records only when a response brings new ones, so a resumed partition's
    records already fetched waited for that fetch's timeout (one second). Every resume wakes it: the app's own
    (hold_partitions) and Faust's table recovery's, which call the same consumer method."""
    from types import SimpleNamespace

    from orders.faust_overrides.consumer import OrdersConsumer, ReadCommittedConsumerThread, hold_partitions

    thread = ReadCommittedConsumerThread.__new__(ReadCommittedConsumerThread)
    woken = []
    thread.wake_fetch_soon = lambda: woken.append("wake")
    consumer = OrdersConsumer.__new__(OrdersConsumer)
    consumer._thread = thread
    consumer._active_partitions = {TP("orders", 1), TP("orders", 3), TP("orders-retry", 3)}
    consumer._paused_partitions = set()
    app = SimpleNamespace(consumer=consumer)

    hold_partitions(app, [("orders", 3), ("orders-retry", 3)], True)
    assert consumer._active_partitions == {TP("orders", 1)} and woken == []
    hold_partitions(app, [("orders", 3)], False)
    assert consumer._active_partitions == {TP("orders", 1), TP("orders", 3)} and woken == ["wake"]
    consumer.resume_partitions({TP("orders-retry", 3)})  # as Faust's recovery does
    assert TP("orders-retry", 3) in consumer._active_partitions and not consumer._paused_partitions
    assert woken == ["wake", "wake"]


def test_the_wake_notifies_aiokafkas_fetch_waiters_in_the_consumers_loop_and_is_a_no_op_once_it_is_closed():
    import asyncio
    from types import SimpleNamespace

    from aiokafka.consumer.fetcher import Fetcher

    from orders.faust_overrides.consumer import ReadCommittedConsumerThread

    async def scenario():
        loop = asyncio.get_running_loop()
        fetcher = Fetcher.__new__(Fetcher)
        fetcher._loop, fetcher._fetch_waiters = loop, set()
        waiter = fetcher._create_fetch_waiter()  # as fetched_records makes it when it finds no records
        thread = ReadCommittedConsumerThread.__new__(ReadCommittedConsumerThread)
        thread.thread_loop, thread._consumer = loop, SimpleNamespace(_fetcher=fetcher)
        thread.wake_fetch_soon()
        assert not waiter.done()  # posted to the thread's loop, not run in the caller's call
        await asyncio.wait_for(waiter, 1)
        return thread

    thread = asyncio.run(scenario())
    assert thread.thread_loop.is_closed()
    thread.wake_fetch_soon()  # at shutdown: nothing to wake, no error

    idle = ReadCommittedConsumerThread.__new__(ReadCommittedConsumerThread)
    idle._consumer = None
    idle._wake_fetch()  # before the consumer is built
