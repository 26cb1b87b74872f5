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


class _Recovery:
    in_recovery = False
    _recovery_started_at = None
    _active_events_received_at: dict = {}


class _App:
    """What Watchdog.check reads of Faust's app: recovery's state and the consumer's assignment."""

    def __init__(self, assigned):
        self.tables = type("Tables", (), {"recovery": _Recovery()})()
        self.consumer = type("Consumer", (), {"assignment": lambda _self: set(assigned)})()


def _check_rounds(delivered_per_round, highwater=10_000, stall_s=20.0, interval_s=5.0):
    """Run Watchdog.check once per round with the given delivered offsets; return the partitions whose
    watermarks each round asked, and the partitions found to hold records (asked only for a stall)."""
    import asyncio

    from orders.ops.watchdog import Watchdog

    now = [0.0]
    watchdog = Watchdog(stall_s=stall_s, clock=lambda: now[0])
    asked_marks, asked_records = [], []
    delivered: dict = {}

    async def watermarks(tps):
        asked_marks[-1].extend(sorted(tps))
        return {tp: (0, highwater) for tp in tps}

    async def holds_records(tp, start, end):
        asked_records.append(tp)
        return False  # settles it: no rebalance is asked of the fake app

    app = _App(delivered_per_round[0])
    for round_delivered in delivered_per_round:
        delivered.update(round_delivered)
        asked_marks.append([])
        asyncio.run(watchdog.check(app, {"orders"}, delivered.__getitem__, dict, holds_records, watermarks))
        now[0] += interval_s
    return asked_marks, asked_records


def test_partitions_that_delivered_since_the_last_look_are_not_asked_for_their_watermarks():
    from faust.types import TP
    a, b = TP("orders", 0), TP("orders", 1)
    rounds = [{a: 10, b: 10}, {a: 500, b: 10}, {a: 900, b: 10}, {a: 1300, b: 10}]
    asked, _ = _check_rounds(rounds)
    assert asked == [[a, b], [b], [b], [b]]


def test_a_partition_that_stops_moving_is_still_found_stalled_and_checked_for_records():
    from faust.types import TP
    a = TP("orders", 0)
    # Moves for two rounds, then stops with records waiting: asked from the first round it did not move.
    rounds = [{a: 10}, {a: 500}, {a: 900}] + [{a: 900}] * 6
    asked, checked = _check_rounds(rounds)
    assert asked == [[a], [], []] + [[a]] * 6
    assert checked, "a partition stalled past stall_s must be checked for waiting records"
