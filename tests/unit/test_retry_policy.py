"""The retry policy: attempts, the not-before it writes, how long a copy may wait, what counts as an orphan."""
from orders.domain.headers import Attempt, RetryCopy
from orders.domain.retry_policy import RetryPolicy

POLICY = RetryPolicy(max_retries=3, delay_s=2.0, not_before_allowance_s=1.0, app_id="app", orders_topic="orders")


def copy(not_before_ms: int, seq: int | None = 1, app_id: str | None = "app", partition: int = 0) -> RetryCopy:
    return RetryCopy(Attempt("orders", partition, 40, number=2, not_before_ms=not_before_ms), seq, app_id)


def test_an_order_gets_max_retries_after_its_first_attempt():
    assert POLICY.attempts == 4
    assert [POLICY.retries_left(attempt) for attempt in (1, 3, 4)] == [True, True, False]


def test_the_not_before_it_writes_is_the_failure_time_plus_the_delay():
    assert POLICY.not_before_ms(10_000) == 12_000


def test_a_copy_is_due_at_its_not_before_when_that_is_within_the_policy():
    assert POLICY.due_at_ms(copy(12_000), written_ms=10_000, first_seen_ms=10_500) == 12_000


def test_a_not_before_past_the_delay_and_allowance_is_cut_to_them_from_the_copy_timestamp():
    assert POLICY.due_at_ms(copy(10_000 + 86_400_000), written_ms=10_000, first_seen_ms=10_500) == 13_000


def test_a_copy_stamped_ahead_of_this_clock_waits_at_most_the_delay_and_allowance_after_it_arrived():
    hour = 3_600_000
    assert POLICY.due_at_ms(copy(hour + 12_000), written_ms=hour + 10_000, first_seen_ms=10_500) == 13_500
    assert POLICY.due_at_ms(copy(hour + 12_000), written_ms=None, first_seen_ms=10_500) == 13_500


def test_only_copies_this_partition_could_have_sent_are_not_orphans():
    assert POLICY.orphan_reason(copy(0, seq=3), partition=0, retry_seq_sent=3) is None
    assert "never sent" in POLICY.orphan_reason(copy(0, seq=4), partition=0, retry_seq_sent=3)
    assert "x-retry-seq" in POLICY.orphan_reason(copy(0, seq=None), partition=0, retry_seq_sent=3)
    assert "other" in POLICY.orphan_reason(copy(0, app_id="other"), partition=0, retry_seq_sent=3)
    assert "not on partition 1" in POLICY.orphan_reason(copy(0), partition=1, retry_seq_sent=3)
