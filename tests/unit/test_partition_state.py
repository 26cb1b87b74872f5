import json

from orders.domain.partition_state import Aggregate, PartitionState


def test_state_round_trips_through_its_table_value():
    state = PartitionState(orders=2, total_micros=3_500_000, retries=3, dead_letters=1,
                           applied={"orders": 7, "orders-retry": 2}, retry_seq_sent=3, retry_seq_done=2)
    assert PartitionState.from_value(json.loads(json.dumps(state.to_value()))) == state


def test_a_copy_changes_independently_of_its_original():
    state = PartitionState(applied={"orders": 1})
    copy = state.copy()
    copy.mark_applied("orders", 9)
    copy.count(5)
    assert (state.applied, state.orders) == ({"orders": 1}, 0)


def test_the_next_offset_follows_the_last_applied_one_per_topic():
    state = PartitionState()
    assert state.next_offset("orders") is None
    state.mark_applied("orders", 4)
    assert state.next_offset("orders") == 5
    assert state.next_offset("orders-retry") is None


def test_orders_in_retry_are_the_copies_sent_and_not_yet_resolved():
    state = PartitionState()
    assert [state.next_retry_seq(), state.next_retry_seq()] == [1, 2]
    state.retry_seq_done = 1
    assert (state.in_retry, state.retries) == (1, 2)


def test_the_value_has_a_fixed_size_however_many_orders_are_in_retry():
    state = PartitionState(applied={"orders": 10, "orders-retry": 10})
    small = len(json.dumps(state.to_value()))
    for _ in range(150_000):
        state.next_retry_seq()
    assert len(json.dumps(state.to_value())) - small < 20


def test_a_value_written_by_the_version_with_a_pending_set_still_loads():
    old = {"orders": 4, "total_micros": 40, "retries": 2, "dead_letters": 0, "applied": {"orders": 9},
           "pending": ["orders/0/3"]}
    state = PartitionState.from_value(old)
    assert (state.orders, state.applied, state.in_retry) == (4, {"orders": 9}, 0)


def test_the_aggregate_adds_up_partitions_exactly():
    a, b = PartitionState(), PartitionState()
    a.count(250_000)
    a.count(500_000)
    b.count(1_000_000)
    b.next_retry_seq()
    b.next_retry_seq()
    b.retry_seq_done, b.dead_letters = 1, 1
    aggregate = Aggregate.of([(a, 0), (b, 2)])
    assert (aggregate.orders, aggregate.total_micros, aggregate.total_price) == (3, 1_750_000, 1.75)
    assert aggregate.average == round(1.75 / 3, 6)
    assert (aggregate.retries, aggregate.dead_letters, aggregate.in_retry) == (2, 1, 1)
    assert (aggregate.uncommitted, aggregate.partitions) == (2, 2)
    assert aggregate.to_json() == {"orders": 3, "total_price": 1.75, "total_price_micros": 1_750_000,
                                   "average": 0.583333, "retries": 2, "dead_letters": 1, "in_retry": 1,
                                   "uncommitted": 2, "partitions": 2}


def test_the_aggregate_of_nothing_has_zero_average():
    assert Aggregate.of([]).average == 0.0
