from orders.ops.watchdog import SourceProgress


def test_a_partition_with_nothing_waiting_is_never_stalled():
    progress = SourceProgress()
    assert progress.stalled_for("p0", delivered=9, highwater=10, now=0) == 0
    assert progress.stalled_for("p0", delivered=9, highwater=10, now=100) == 0


def test_waiting_records_without_progress_count_as_a_stall():
    progress = SourceProgress()
    assert progress.stalled_for("p0", delivered=4, highwater=10, now=0) == 0
    assert progress.stalled_for("p0", delivered=4, highwater=10, now=25) == 25


def test_progress_restarts_the_clock():
    progress = SourceProgress()
    progress.stalled_for("p0", delivered=4, highwater=10, now=0)
    assert progress.stalled_for("p0", delivered=6, highwater=12, now=25) == 0
    assert progress.stalled_for("p0", delivered=6, highwater=12, now=30) == 5


def test_a_rebalance_is_asked_at_most_once_per_partition_and_cause_within_the_cooldown():
    from orders.ops.watchdog import Watchdog
    watchdog = Watchdog(cooldown_s=180)
    assert watchdog.may_ask(("orders", 0), now=0) is True
    assert watchdog.may_ask(("orders", 0), now=179) is False
    assert watchdog.may_ask(("orders", 1), now=179) is True, "another partition is another cause"
    assert watchdog.may_ask(("orders", 0), now=181) is True
