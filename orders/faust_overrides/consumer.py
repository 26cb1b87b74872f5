"""The worker's Kafka consumer: Faust's aiokafka consumer, reading committed records, resuming where
the partition states say, and (the fast path) handing each fetched partition's records to its agent
as one batch."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.errors import IllegalStateError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from .read_ahead import ReadAhead

log = logging.getLogger("orders")


#: How long the broker may hold a fetch that finds no new record. Faust hard-codes 1,500 ms; the broker
#: answers one connection's requests in order, so every offset lookup of a rebalance's recovery waited behind
#: an idle fetch for up to that long (three of them: about 4 s before a new owner resumed).
FETCH_MAX_WAIT_MS = 100

#: The most one fetch may bring, over all partitions (aiokafka's default: 50 MiB). Each partition still
#: brings at most `consumer_max_fetch_size` (1 MiB), so the default let a worker owning 192 partitions of
#: backlog hold about 50 MiB of fetched records at once: peak RSS 237 MiB at 192 partitions against
#: 152 MiB at 6 (`bench partitions --orders 1000000`). 4 MiB still holds tens of thousands of orders.
FETCH_MAX_BYTES = 4 * 1024 * 1024


class ReadCommittedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # AIOKafkaConsumer keeps the settings as given and builds its fetcher from them in start(), which has
        # not run yet. Read committed: aborted retry copies, dead letters and states are never seen.
        consumer._isolation_level = "read_committed"
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        consumer._fetch_max_bytes = FETCH_MAX_BYTES
        return consumer

    #: the bound on the fetcher's read-ahead (read_ahead.py), installed on the fetcher at the first assignment
    read_ahead: ReadAhead | None = None

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        """Faust's, after bounding the fetcher's read-ahead (once per fetcher: aiokafka builds it in start()).
        Runs in the consumer's thread, as the fetcher's routine does."""
        fetcher = self._ensure_consumer()._fetcher
        if self.read_ahead is None or self.read_ahead.fetcher is not fetcher:
            self.read_ahead = ReadAhead(fetcher)
        await super().on_partitions_assigned(assigned, generation_id)

    def wake_fetch_soon(self) -> None:
        """From any thread: wake, in the consumer's thread, a fetch of records waiting for new ones (a
        partition resumed meanwhile may hold some already). A no-op once the thread's loop is closed."""
        try:
            self.thread_loop.call_soon_threadsafe(self._wake_fetch)
        except RuntimeError:  # closed meanwhile, at shutdown
            pass

    def _wake_fetch(self) -> None:
        consumer = self._consumer
        if consumer is None or consumer._fetcher is None:
            return
        fetcher = consumer._fetcher
        for waiter in list(fetcher._fetch_waiters):
            fetcher._notify(waiter)

    async def _fetch_records(self, consumer: Any, active_partitions: set[TP], timeout: float | None = None,
                             max_records: int | None = None) -> Any:
        """Faust's, noting which partitions are being delivered: the read-ahead counts only theirs."""
        if self.read_ahead is not None:
            self.read_ahead.delivering = active_partitions
        return await super()._fetch_records(consumer, active_partitions, timeout=timeout, max_records=max_records)


class FetchedRecord:
    """One fetched record as the processing reads it (Faust's message fields, timestamp in seconds)."""

    __slots__ = ("topic", "partition", "offset", "timestamp", "key", "value", "headers")

    def __init__(self, record: Any) -> None:
        self.topic = record.topic
        self.partition = record.partition
        self.offset = record.offset
        self.timestamp = None if record.timestamp is None else record.timestamp / 1000.0
        self.key = record.key
        self.value = record.value
        self.headers = record.headers


class RecordBatches:
    """The fast path's hand-over from the consumer to one agent: one partition's fetched records, at
    most `max_records` at a time (a fetch can bring tens of thousands). Bounded, so a busy agent holds
    the fetching back; a batch fetched before a rebalance is dropped (the consumer seeks again after it)."""

    def __init__(self, app: Any, max_records: int, max_batches: int = 8) -> None:
        self._app = app
        self.max_records = max_records
        self._queue: asyncio.Queue = asyncio.Queue(max_batches)

    async def put(self, generation: int, tp: TP, fetched: list[Any]) -> None:
        for start in range(0, len(fetched), self.max_records):
            chunk = [FetchedRecord(record) for record in fetched[start:start + self.max_records]]
            await self._queue.put((generation, tp.partition, chunk))

    async def get(self) -> tuple[int, list[FetchedRecord]]:
        """The next batch of the current generation: (its partition, its records in offset order)."""
        while True:
            generation, partition, records = await self._queue.get()
            if generation == self._app.consumer_generation_id:
                return partition, records


class OrdersConsumer(faust_aiokafka.Consumer):
    #: Faust's last offset commit at shutdown is done; the consumer thread may be gone.
    _closed_for_commits = False
    def _new_consumer_thread(self) -> ReadCommittedConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def resume_partitions(self, tps: Any) -> None:
        """Faust's, then a wake for the fetch of records that is waiting: it asked for the active partitions
        of its start (the same set, which the resume updates), and aiokafka wakes it only when a response
        brings new records, so the records a resumed partition already held waited for the end of that
        fetch's timeout (one second) whenever no other partition had any: the last records of a drain, a
        retry copy come due, the partitions a table's recovery resumes. A drain of 200,000 orders over 6
        partitions ran at about 66,000 orders/s in half the runs, against about 100,000."""
        super().resume_partitions(tps)
        thread = getattr(self, "_thread", None)
        if isinstance(thread, ReadCommittedConsumerThread):
            thread.wake_fetch_soon()

    async def perform_seek(self) -> None:
        """Seek to the committed offsets (Faust), then move each source partition to the next offset its
        state has not applied: the group's committed offset may lag (replays, skipped cheaply) or, around
        rebalances, run ahead of what the state holds (records that would otherwise never be applied).
        A source partition with neither (nothing applied, nothing committed: a retry partition whose
        copies were never taken) goes back to its first offset, as a new assignment would: records the
        fast path fetched and dropped (fetched while the flow was stopped, or of an older generation) are
        then fetched again. Left where it was, its position stayed past them, and they waited until the
        next rebalance (issue 19's CI: 87 retry copies held for over two minutes).

        A rebalance can take a partition away between reading the assignment and seeking it (aiokafka
        then raises IllegalStateError); the seek is moot then: the recovery after that rebalance seeks
        every partition the worker then owns."""
        try:
            await super().perform_seek()
            hooks = getattr(self.app, "state_hooks", None)
            if hooks is None:
                return
            assigned = self.assignment()
            offsets = {tp: offset for (topic, partition), offset in hooks.resume_offsets().items()
                       if (tp := TP(topic, partition)) in assigned}
            offsets.update({tp: 0 for tp in assigned
                            if tp.topic in hooks.source_topics and tp not in offsets
                            and self._committed_offset.get(tp) is None})
            if offsets:
                await self.seek_wait(offsets)
                log.debug("resumed source partitions at %s", offsets)
        except IllegalStateError as exc:
            log.info("seek skipped, the assignment changed meanwhile (%s); the next recovery seeks again", exc)

    async def on_stop(self) -> None:
        """Faust's last commit runs here, while the consumer thread still does (mode stops children after
        on_stop). A commit started later (the periodic commit task is cancelled only after the thread has
        stopped) would be handed to the thread's closed event loop and crash the worker on SIGTERM
        ("Event loop is closed", exit 1), so later commits are skipped: the partition states, not the
        group's offsets, say where processing resumes."""
        await super().on_stop()
        self._closed_for_commits = True

    async def commit(self, *args: Any, **kwargs: Any) -> bool:
        if self._closed_for_commits:
            return False
        return await super().commit(*args, **kwargs)

    async def _drain_messages(self, fetcher: Any) -> None:
        """The fast path: Faust's loop (transport/consumer.py `Consumer._drain_messages`) hands each
        record to the conductor one at a time, each behind `wait_first` (four tasks and three event-loop
        turns a record), the conductor builds an Event and queues it, and the stream takes it out again.
        Here the records of a fast-path topic go to their agent as the fetched list, one partition at a
        time; other topics (the table's changelog during recovery) go Faust's way, record by record."""
        batches = self.app.record_batches
        if not batches:
            await super()._drain_messages(fetcher)
            return
        try:
            while not (self.should_stop or fetcher.should_stop):
                # Only the active partitions are fetched; a partition a task paused after this fetch still has
                # its records delivered below (Faust's getmany would drop them, and the fetcher has moved
                # past them): the pause stops the next fetch, not this one.
                records, _active = await self._wait_next_records(1.0)
                await asyncio.sleep(0)  # Faust's loop releases the event loop here too
                if not records or self.should_stop:
                    continue
                if not self.flow_active:
                    # As Faust's getmany does: records fetched while the flow is stopped (a rebalance) are
                    # not delivered; the partitions are sought again.
                    await self.perform_seek()
                    continue
                generation = self.app.consumer_generation_id
                for tp, fetched in records.items():
                    if not self.flow_active or self.app.consumer_generation_id != generation:
                        break
                    if not fetched:
                        continue
                    sink = batches.get(tp.topic)
                    if sink is None:
                        await self._deliver_one_by_one(tp, fetched)
                    else:
                        await sink.put(generation, tp, fetched)
                        self._read_offset[tp] = fetched[-1].offset
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    async def _deliver_one_by_one(self, tp: TP, fetched: list[Any]) -> None:
        """Faust's own delivery of each record (its read offset, gaps and flow checks), for other topics."""
        for record in fetched:
            message = self._to_message(tp, record)
            read = self._read_offset[tp]
            if read is not None and message.offset < read:
                continue
            if read and message.offset - read > 1 and self.app.topics.acks_enabled_for(message.topic):
                await self._add_gap(tp, read + 1, message.offset)
            await self.wait_first(self.callback(message), self.suspend_flow.wait())
            self._read_offset[tp] = message.offset


def hold_partitions(app: Any, tps: list[tuple[str, int]], paused: bool) -> None:
    """Stop (or resume) delivering source partitions to the agents: Faust's `Consumer.pause_partitions` and
    `resume_partitions` take them out of (or put them back in) the active partitions, the only ones
    `_wait_next_records` asks the fetcher for, on the fast path and the stock path alike; what aiokafka
    fetched for a paused partition stays in its fetcher until it is resumed, so nothing is skipped. A
    rebalance forgets the pauses of revoked partitions (`on_partitions_revoked`), and a new owner's task
    starts unpaused. A resume wakes the fetch of records waiting meanwhile (`OrdersConsumer.resume_partitions`)."""
    topic_partitions = [TP(topic, partition) for topic, partition in tps]
    if paused:
        app.consumer.pause_partitions(topic_partitions)
    else:
        app.consumer.resume_partitions(topic_partitions)


class OrdersTransport(faust_aiokafka.Transport):
    Consumer = OrdersConsumer
