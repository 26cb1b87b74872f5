from orders.ops.watchdog import SourceProgress


def test_a_partition_with_nothing_waiting_is_never_stalled():
    progress = SourceProgress()
    assert progress.stalled_for("p0", applied=9, highwater=10, now=0) == 0
    assert progress.stalled_for("p0", applied=9, highwater=10, now=100) == 0


def test_waiting_records_without_progress_count_as_a_stall():
    progress = SourceProgress()
    assert progress.stalled_for("p0", applied=4, highwater=10, now=0) == 0
    assert progress.stalled_for("p0", applied=4, highwater=10, now=25) == 25


def test_progress_restarts_the_clock():
    progress = SourceProgress()
    progress.stalled_for("p0", applied=4, highwater=10, now=0)
    assert progress.stalled_for("p0", applied=6, highwater=12, now=25) == 0
    assert progress.stalled_for("p0", applied=6, highwater=12, now=30) == 5
