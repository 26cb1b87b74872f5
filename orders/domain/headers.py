"""Retry and dead-letter metadata, carried in Kafka headers.

Nothing about a retry lives in memory: the attempt number and the original
coordinates travel with the record, so counts survive restarts and any worker
can pick up any retry.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ATTEMPT = "x-attempt"
ORIGINAL_TOPIC = "x-original-topic"
ORIGINAL_PARTITION = "x-original-partition"
ORIGINAL_OFFSET = "x-original-offset"
FIRST_FAILURE_MS = "x-first-failure-ms"
LAST_ERROR = "x-last-error"
NOT_BEFORE_MS = "x-not-before-ms"

DLQ_REASON = "x-dlq-reason"
ERROR_TYPE = "x-error-type"
ERROR_MESSAGE = "x-error-message"
ATTEMPTS = "x-attempts"
DEAD_LETTERED_MS = "x-dead-lettered-ms"

#: Values of x-dlq-reason: why an order was given up.
UNDECODABLE = "undecodable"
INVALID_ORDER = "invalid-order"
RETRIES_EXHAUSTED = "retries-exhausted"
NOT_A_RETRY_RECORD = "not-a-retry-record"
DEAD_LETTER_REASONS = (UNDECODABLE, INVALID_ORDER, RETRIES_EXHAUSTED, NOT_A_RETRY_RECORD)

Headers = list[tuple[str, bytes]]
MAX_ERROR_CHARS = 1000


@dataclass(frozen=True)
class Attempt:
    """One attempt at one original `orders` record."""

    topic: str
    partition: int
    offset: int
    number: int = 1
    first_failure_ms: int | None = None
    not_before_ms: int = 0

    @property
    def origin_key(self) -> str:
        """Stable identity of the original record: the DLQ's dedupe key too."""
        return f"{self.topic}/{self.partition}/{self.offset}"


def _as_dict(headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None) -> dict[str, bytes]:
    if not headers:
        return {}
    return dict(headers.items() if isinstance(headers, Mapping) else headers)


def retry_attempt(headers: Any) -> Attempt | None:
    """The attempt a retry record stands for, or None when its headers are missing or garbled."""
    found = _as_dict(headers)
    try:
        return Attempt(
            topic=found[ORIGINAL_TOPIC].decode(),
            partition=int(found[ORIGINAL_PARTITION]),
            offset=int(found[ORIGINAL_OFFSET]),
            number=int(found[ATTEMPT]),
            first_failure_ms=int(found[FIRST_FAILURE_MS]) if FIRST_FAILURE_MS in found else None,
            not_before_ms=int(found.get(NOT_BEFORE_MS, b"0")),
        )
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


def _origin_headers(attempt: Attempt, first_failure_ms: int) -> Headers:
    return [
        (ORIGINAL_TOPIC, attempt.topic.encode()),
        (ORIGINAL_PARTITION, str(attempt.partition).encode()),
        (ORIGINAL_OFFSET, str(attempt.offset).encode()),
        (FIRST_FAILURE_MS, str(first_failure_ms).encode()),
    ]


def retry_headers(attempt: Attempt, error: BaseException, now_ms: int, delay_s: float) -> Headers:
    """Headers of the next attempt's record."""
    first = attempt.first_failure_ms or now_ms
    return [
        (ATTEMPT, str(attempt.number + 1).encode()),
        *_origin_headers(attempt, first),
        (LAST_ERROR, describe(error).encode()),
        (NOT_BEFORE_MS, str(now_ms + int(delay_s * 1000)).encode()),
    ]


def dlq_headers(attempt: Attempt, reason: str, error: BaseException, now_ms: int) -> Headers:
    return [
        (DLQ_REASON, reason.encode()),
        (ERROR_TYPE, type(error).__name__.encode()),
        (ERROR_MESSAGE, str(error)[:MAX_ERROR_CHARS].encode()),
        (ATTEMPTS, str(attempt.number).encode()),
        *_origin_headers(attempt, attempt.first_failure_ms or now_ms),
        (DEAD_LETTERED_MS, str(now_ms).encode()),
    ]
