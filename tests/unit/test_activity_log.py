from orders.domain.partition_state import Aggregate
from orders.ops.activity_log import DEAD_LETTERED, PROCESSED, RETRIED, ActivityLog

TOTALS = Aggregate(orders=12, total_micros=30_000_000, dead_letters=1)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_beyond_the_share_of_a_second_are_left_out_and_the_next_second_has_a_new_share():
    clock = Clock()
    log = ActivityLog(lines_per_second=3, clock=clock)
    assert [log.record(PROCESSED) for _ in range(5)] == [True, True, True, False, False]
    clock.now += 1
    assert log.record(RETRIED) is True


def test_the_summary_counts_every_event_of_its_interval_and_the_rate():
    clock = Clock()
    log = ActivityLog(lines_per_second=1, clock=clock)
    for _ in range(40):
        log.record(PROCESSED)
    log.record(RETRIED)
    log.record(DEAD_LETTERED)
    clock.now += 4
    line = log.summary(TOTALS)
    assert "last 4.0s: 40 processed (10/s), 1 retried, 1 dead-lettered (41 not logged one by one)" in line
    assert "orders=12 average=2.50 dead_letters=1" in line


def test_no_summary_when_every_event_had_its_line_and_counts_restart_after_a_summary():
    clock = Clock()
    log = ActivityLog(lines_per_second=10, clock=clock)
    log.record(PROCESSED)
    assert log.summary(TOTALS) is None
    quiet = ActivityLog(lines_per_second=0, clock=clock)
    quiet.record(PROCESSED)
    assert "1 processed" in quiet.summary(TOTALS)
    assert quiet.summary(TOTALS) is None
