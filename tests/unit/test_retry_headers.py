from orders.domain.headers import (
    ATTEMPT,
    ATTEMPTS,
    DLQ_REASON,
    ERROR_MESSAGE,
    NOT_BEFORE_MS,
    ORIGINAL_OFFSET,
    ORIGINAL_VALUE_BYTES,
    RETRY_APP_ID,
    RETRY_SEQ,
    Attempt,
    dlq_headers,
    record_bytes,
    retry_attempt,
    retry_copy,
    retry_headers,
    shrink_dead_letter,
)


def test_a_record_without_retry_headers_is_not_a_retry():
    assert retry_attempt([]) is None
    assert retry_attempt(None) is None


def test_retry_headers_carry_the_next_attempt_and_the_original():
    first = Attempt("orders", 2, 40)
    headers = retry_headers(first, RuntimeError("boom"), now_ms=1_000, not_before_ms=3_000, seq=7,
                            app_id="orders-app")
    second = retry_attempt(headers)
    assert second == Attempt("orders", 2, 40, number=2, first_failure_ms=1_000, not_before_ms=3_000)
    third = retry_attempt(retry_headers(second, RuntimeError("again"), 5_000, 7_000, seq=8, app_id="orders-app"))
    assert (third.number, third.first_failure_ms, third.origin_key) == (3, 1_000, "orders/2/40")


def test_a_retry_copy_names_its_sequence_number_and_app():
    headers = retry_headers(Attempt("orders", 2, 40), RuntimeError("boom"), 1_000, 3_000, seq=7, app_id="orders-app")
    copy = retry_copy(headers)
    assert (copy.seq, copy.app_id, copy.attempt.number) == (7, "orders-app", 2)


def test_a_copy_without_a_sequence_number_is_still_a_copy_but_says_so():
    headers = [(name, raw) for name, raw in retry_headers(Attempt("orders", 2, 40), RuntimeError("x"), 1, 2_001,
                                                          seq=1, app_id="a") if name not in (RETRY_SEQ, RETRY_APP_ID)]
    copy = retry_copy(headers)
    assert (copy.seq, copy.app_id) == (None, None)


def test_a_dead_letter_too_large_for_its_topic_is_cut_to_fit_and_says_what_it_was():
    value = b"v" * 5_000
    headers = dlq_headers(Attempt("orders", 1, 9), "undecodable", ValueError("not avro"), 1_000)
    assert record_bytes(b"k", value, headers) > 2_000
    cut, shrunk = shrink_dead_letter(b"k", value, headers, limit=2_000)
    found = dict(shrunk)
    assert record_bytes(b"k", cut, shrunk) <= 2_000 and value.startswith(cut) and len(cut) > 0
    assert found[DLQ_REASON] == b"too-large" and found[ORIGINAL_VALUE_BYTES] == b"5000"
    assert found[ERROR_MESSAGE].startswith(b"undecodable (not avro)")
    assert found[ORIGINAL_OFFSET] == b"9"


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
