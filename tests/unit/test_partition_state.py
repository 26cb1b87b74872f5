from orders.domain.partition_state import PartitionState, summarize


def test_state_round_trips_through_its_table_value():
    state = PartitionState(orders=2, total_micros=3_500_000, retries=1, dead_letters=1,
                           applied={"orders": 7}, pending={"orders/0/5"})
    assert PartitionState.from_value(state.to_value()) == state


def test_the_next_offset_follows_the_last_applied_one_per_topic():
    state = PartitionState()
    assert state.next_offset("orders") is None
    state.mark_applied("orders", 4)
    assert state.next_offset("orders") == 5
    assert state.next_offset("orders-retry") is None


def test_summary_adds_up_partitions_exactly():
    a, b = PartitionState(), PartitionState()
    a.count(250_000)
    a.count(500_000)
    b.count(1_000_000)
    b.retries, b.dead_letters = 2, 1
    summary = summarize([a, b])
    assert summary["orders"] == 3
    assert summary["total_price_micros"] == 1_750_000
    assert summary["total_price"] == 1.75
    assert summary["average"] == round(1.75 / 3, 6)
    assert (summary["retries"], summary["dead_letters"]) == (2, 1)


def test_summary_of_nothing_has_zero_average():
    assert summarize([])["average"] == 0.0
