"""Retry and dead-letter metadata, carried in Kafka headers: the contract between the worker, its
retry topic, the dead-letter topic and the DLQ tools.

Nothing about a retry lives in memory: the attempt number and the original
coordinates travel with the record, so counts survive restarts and any worker
can pick up any retry. Each retry copy also carries the sequence number its
partition gave it (`x-retry-seq`) and the app that sent it (`x-retry-app-id`):
a partition's copies are written in sequence order, one transaction at a
time, so the partition's state tells a copy to process from a duplicate, a
copy the consumer skipped, and one this app never sent (an orphan).
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
RETRY_SEQ = "x-retry-seq"
RETRY_APP_ID = "x-retry-app-id"

DLQ_REASON = "x-dlq-reason"
ERROR_TYPE = "x-error-type"
ERROR_MESSAGE = "x-error-message"
ATTEMPTS = "x-attempts"
DEAD_LETTERED_MS = "x-dead-lettered-ms"
#: On a `too-large` dead letter: the size of the original value; the record carries only its first bytes.
ORIGINAL_VALUE_BYTES = "x-original-value-bytes"

#: Values of x-dlq-reason: why an order was given up.
UNDECODABLE = "undecodable"
INVALID_ORDER = "invalid-order"
RETRIES_EXHAUSTED = "retries-exhausted"
NOT_A_RETRY_RECORD = "not-a-retry-record"
ORPHANED_RETRY = "orphaned-retry"
TOO_LARGE = "too-large"
#: An error no rule classifies (a bug, a record that breaks the processing) recurred on the same record.
PROCESSING_ERROR = "processing-error"
DEAD_LETTER_REASONS = (UNDECODABLE, INVALID_ORDER, RETRIES_EXHAUSTED, NOT_A_RETRY_RECORD, ORPHANED_RETRY, TOO_LARGE,
                       PROCESSING_ERROR)

Headers = list[tuple[str, bytes]]
MAX_ERROR_CHARS = 1000
#: What a record costs beyond its key, value and headers in a record batch (an upper bound), for size checks.
RECORD_OVERHEAD_BYTES = 512


def origin_key(topic: str, partition: int, offset: int) -> str:
    """`topic/partition/offset`: a record's stable identity (the DLQ's dedupe key, the ledger's key)."""
    return f"{topic}/{partition}/{offset}"


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
        return origin_key(self.topic, self.partition, self.offset)


@dataclass(frozen=True)
class RetryCopy:
    """What a record on the retry topic says about itself."""

    attempt: Attempt
    #: the sending partition's sequence number; None on a copy without one (hand-written, an older version)
    seq: int | None
    app_id: str | None


def _as_dict(headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None) -> dict[str, bytes]:
    if not headers:
        return {}
    return dict(headers.items() if isinstance(headers, Mapping) else headers)


def retry_attempt(headers: Any) -> Attempt | None:
    """The attempt a retry record stands for, or None when its headers are missing or garbled."""
    copy = retry_copy(headers)
    return None if copy is None else copy.attempt


def retry_copy(headers: Any) -> RetryCopy | None:
    """The retry copy a record on the retry topic is, or None when its attempt headers are missing or garbled."""
    found = _as_dict(headers)
    try:
        attempt = Attempt(
            topic=found[ORIGINAL_TOPIC].decode(),
            partition=int(found[ORIGINAL_PARTITION]),
            offset=int(found[ORIGINAL_OFFSET]),
            number=int(found[ATTEMPT]),
            first_failure_ms=int(found[FIRST_FAILURE_MS]) if FIRST_FAILURE_MS in found else None,
            not_before_ms=int(found.get(NOT_BEFORE_MS, b"0")),
        )
        seq = int(found[RETRY_SEQ]) if RETRY_SEQ in found else None
        app_id = found[RETRY_APP_ID].decode() if RETRY_APP_ID in found else None
    except (KeyError, ValueError, UnicodeDecodeError):
        return None
    return RetryCopy(attempt, seq, app_id)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


def _origin_headers(attempt: Attempt, first_failure_ms: int) -> Headers:
    return [
        (ORIGINAL_TOPIC, attempt.topic.encode()),
        (ORIGINAL_PARTITION, str(attempt.partition).encode()),
        (ORIGINAL_OFFSET, str(attempt.offset).encode()),
        (FIRST_FAILURE_MS, str(first_failure_ms).encode()),
    ]


def retry_headers(attempt: Attempt, error: BaseException, now_ms: int, not_before_ms: int, *, seq: int,
                  app_id: str) -> Headers:
    """Headers of the next attempt's record, copy number `seq` of its partition."""
    first = attempt.first_failure_ms or now_ms
    return [
        (ATTEMPT, str(attempt.number + 1).encode()),
        *_origin_headers(attempt, first),
        (LAST_ERROR, describe(error).encode()),
        (NOT_BEFORE_MS, str(not_before_ms).encode()),
        (RETRY_SEQ, str(seq).encode()),
        (RETRY_APP_ID, app_id.encode()),
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


def record_bytes(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """An upper bound of what a record weighs against a topic's max.message.bytes."""
    return (len(key or b"") + len(value or b"") + sum(len(name) + len(raw) for name, raw in headers)
            + RECORD_OVERHEAD_BYTES)


def shrink_dead_letter(key: bytes | None, value: bytes | None, headers: Headers, limit: int
                       ) -> tuple[bytes | None, Headers]:
    """A dead letter too large for its topic, cut to fit: reason `too-large`, the reason it had in the
    error message, the original size in a header and as much of the value as fits. The original stays
    in its source topic at the x-original-* coordinates, where `dlq replay` reads it from."""
    found = dict(headers)
    reason = found.get(DLQ_REASON, b"?").decode()
    size = len(value or b"")
    replaced = {DLQ_REASON: TOO_LARGE.encode(),
                ERROR_MESSAGE: (f"{reason} ({found.get(ERROR_MESSAGE, b'').decode(errors='replace')}); "
                                f"the value ({size} bytes) does not fit the dead-letter topic"
                                )[:MAX_ERROR_CHARS].encode()}
    shrunk = [(name, replaced.get(name, raw)) for name, raw in headers] + [(ORIGINAL_VALUE_BYTES,
                                                                            str(size).encode())]
    room = max(0, limit - record_bytes(key, b"", shrunk))
    return (value or b"")[:room], shrunk
