from orders.domain.headers import (
    ATTEMPT,
    ATTEMPTS,
    DLQ_REASON,
    NOT_BEFORE_MS,
    ORIGINAL_OFFSET,
    Attempt,
    dlq_headers,
    retry_attempt,
    retry_headers,
)


def test_a_record_without_retry_headers_is_not_a_retry():
    assert retry_attempt([]) is None
    assert retry_attempt(None) is None


def test_retry_headers_carry_the_next_attempt_and_the_original():
    first = Attempt("orders", 2, 40)
    headers = retry_headers(first, RuntimeError("boom"), now_ms=1_000, delay_s=2.0)
    second = retry_attempt(headers)
    assert second == Attempt("orders", 2, 40, number=2, first_failure_ms=1_000, not_before_ms=3_000)
    third = retry_attempt(retry_headers(second, RuntimeError("again"), 5_000, 2.0))
    assert (third.number, third.first_failure_ms, third.origin_key) == (3, 1_000, "orders/2/40")


def test_garbled_retry_headers_are_not_a_retry():
    assert retry_attempt([(ATTEMPT, b"two")]) is None


def test_dead_letter_headers_name_reason_attempts_and_origin():
    headers = dict(dlq_headers(Attempt("orders", 0, 12, 4, 500), "retries-exhausted", ValueError("no"), 9_000))
    assert headers[DLQ_REASON] == b"retries-exhausted"
    assert headers[ATTEMPTS] == b"4"
    assert headers[ORIGINAL_OFFSET] == b"12"
    assert headers["x-error-type"] == b"ValueError"
    assert headers["x-first-failure-ms"] == b"500"
    assert NOT_BEFORE_MS not in headers
