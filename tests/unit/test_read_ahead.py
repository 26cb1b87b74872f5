"""The bound on what the consumer's fetcher holds ahead (orders/faust_overrides/read_ahead.py), on aiokafka's own
fetch results: real record batches, as a fetch response brings them."""
from __future__ import annotations

from types import SimpleNamespace

from aiokafka.consumer.fetcher import FetchError, FetchResult, PartitionRecords
from aiokafka.errors import KafkaError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition

from orders.faust_overrides.read_ahead import ReadAhead

READ_COMMITTED = 1
FETCHER_TIMEOUT_S = 0.2
RESETS = {3: [TopicPartition("orders", 9)]}


def batch_bytes(records: int, value_size: int = 1000) -> bytes:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=10 ** 8)
    for offset in range(records):
        builder.append(offset, timestamp=None, key=b"order", value=b"x" * value_size, headers=[])
    return bytes(builder.build())


class Position:
    """A partition's consumed position, as aiokafka's assignment keeps it."""

    paused = False
    position = 0

    def consumed_to(self, offset: int) -> None:
        self.position = offset


class Assignment:
    active = True

    def __init__(self) -> None:
        self.positions: dict[TopicPartition, Position] = {}

    def state_value(self, tp: TopicPartition) -> Position:
        return self.positions.setdefault(tp, Position())


def fetched(topic: str, partition: int, data: bytes) -> tuple[TopicPartition, FetchResult]:
    tp = TopicPartition(topic, partition)
    records = PartitionRecords(tp, MemoryRecords(data), None, 0, None, None, True, READ_COMMITTED)
    return tp, FetchResult(tp, assignment=Assignment(), partition_records=records, backoff=0)


class Fetcher:
    """What ReadAhead uses of aiokafka's Fetcher: its fetched records, its timeout and its fetch planning, which
    here always has one request to send and one offset reset to do."""

    def __init__(self) -> None:
        self._records: dict = {}
        self._fetcher_timeout = FETCHER_TIMEOUT_S
        self.request = object()

    def _get_actions_per_node(self, assignment):
        return [(1, self.request)], RESETS, 0.05, False, ["resume"]


def test_fetches_go_out_while_the_records_held_are_under_the_bound():
    fetcher = Fetcher()
    data = batch_bytes(10)
    fetcher._records.update([fetched("orders", 0, data)])
    read_ahead = ReadAhead(fetcher, limit=len(data) + 1)
    assert read_ahead.held() == (len(data), len(data))
    assert fetcher._get_actions_per_node(None) == ([(1, fetcher.request)], RESETS, 0.05, False, ["resume"])
    assert read_ahead.held_back == 0


def test_no_fetch_goes_out_once_the_records_held_reach_the_bound_but_offset_resets_still_do():
    fetcher = Fetcher()
    first, second = batch_bytes(10), batch_bytes(5)
    fetcher._records.update([fetched("orders", 0, first), fetched("orders", 1, second)])
    read_ahead = ReadAhead(fetcher, limit=len(first) + len(second))
    fetches, resets, timeout, invalid_metadata, resume_futures = fetcher._get_actions_per_node(None)
    assert fetches == []
    assert resets == RESETS and invalid_metadata is False and resume_futures == ["resume"]
    assert timeout == FETCHER_TIMEOUT_S  # plans again by then at the latest
    assert read_ahead.held_back == 1

    del fetcher._records[TopicPartition("orders", 1)]  # its records were taken
    assert fetcher._get_actions_per_node(None)[0] == [(1, fetcher.request)]


def test_records_held_for_partitions_not_being_delivered_do_not_hold_the_others_up():
    """A paused partition (a retry copy not due, a partition not set up, blocked) keeps what was fetched for it;
    that must not stop the fetches of the partitions that are being delivered."""
    fetcher = Fetcher()
    paused = batch_bytes(200)
    small = batch_bytes(2)
    fetcher._records.update([fetched("orders-retry", 4, paused), fetched("orders", 4, small)])
    read_ahead = ReadAhead(fetcher, limit=len(paused), held_limit=10 * len(paused))
    read_ahead.delivering = {TopicPartition("orders", 4), TopicPartition("orders", 5)}
    assert read_ahead.held() == (len(small), len(paused) + len(small))
    assert fetcher._get_actions_per_node(None)[0] == [(1, fetcher.request)]

    read_ahead.delivering = None  # before the consumer's first fetch of records: every partition counts
    assert read_ahead.held()[0] == len(paused) + len(small)
    assert fetcher._get_actions_per_node(None)[0] == []


def test_no_fetch_goes_out_once_paused_partitions_hold_the_limit_over_all_partitions():
    """Hundreds of partitions paused at once (an outage, with a backlog) would each hold a full fetch."""
    fetcher = Fetcher()
    paused = [fetched("orders", p, batch_bytes(50)) for p in range(8)]
    fetcher._records.update(paused)
    each = paused[0][1]._partition_records._records.size_in_bytes()
    read_ahead = ReadAhead(fetcher, limit=1, held_limit=8 * each)
    read_ahead.delivering = {TopicPartition("orders", 99)}
    assert read_ahead.held() == (0, 8 * each)
    assert fetcher._get_actions_per_node(None)[0] == []

    del fetcher._records[TopicPartition("orders", 7)]  # resumed and taken
    assert fetcher._get_actions_per_node(None)[0] == [(1, fetcher.request)]


def test_errors_and_records_taken_to_the_end_hold_nothing():
    fetcher = Fetcher()
    tp, result = fetched("orders", 0, batch_bytes(3))
    assert len(result.getall()) == 3  # taken to the end: aiokafka drops its records
    fetcher._records[tp] = result
    fetcher._records[TopicPartition("orders", 1)] = FetchError(error=KafkaError("no"), backoff=0)
    assert ReadAhead(fetcher, limit=1, held_limit=1).held() == (0, 0)
    assert fetcher._get_actions_per_node(None)[0] == [(1, fetcher.request)]


def test_a_partly_taken_fetch_counts_whole_until_its_records_are_all_taken():
    fetcher = Fetcher()
    data = batch_bytes(10)
    tp, result = fetched("orders", 0, data)
    fetcher._records[tp] = result
    assert len(result.getall(max_records=4)) == 4
    assert ReadAhead(fetcher, limit=10 ** 9).held() == (len(data), len(data))


def test_the_fetchers_own_planning_is_kept_and_called_each_round():
    calls = []
    fetcher = SimpleNamespace(_records={}, _fetcher_timeout=FETCHER_TIMEOUT_S,
                              _get_actions_per_node=lambda assignment: calls.append(assignment) or ([], {}, 1.0,
                                                                                                   True, []))
    ReadAhead(fetcher)
    assert fetcher._get_actions_per_node("assignment") == ([], {}, 1.0, True, [])
    assert calls == ["assignment"]
