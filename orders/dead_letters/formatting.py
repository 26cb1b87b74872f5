"""What `dlq list` prints: table rows for people, one JSON object per line for scripts. Pure."""
from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .ledger import Entry
from .letters import DeadLetter

TABLE_HEADERS = ["DLQ at", "Dead-lettered (UTC)", "Order", "Reason", "Att.", "Original", "Value", "Error",
                 "Replayed"]
CELL_CHARS = 40


def iso_time(ms: int | None, *, precise: bool = False) -> str | None:
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if precise:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def shorten(text: str, limit: int = CELL_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def key_text(key: bytes | None) -> str | None:
    return None if key is None else key.decode("utf-8", errors="backslashreplace")


def describe_value(letter: DeadLetter) -> str:
    """The order in a few words, or that the value does not decode and its size (why: see `--json`)."""
    if letter.order is None:
        return f"UNDECODABLE, {letter.value_size} bytes"
    order = letter.order
    price = order.get("price")
    price_text = f"{price:.2f}" if isinstance(price, float) else str(price)
    parts = [str(order.get("product", "?")), price_text, order.get("currency"),
             f"x{order['quantity']}" if "quantity" in order else None]
    return " ".join(str(part) for part in parts if part is not None)


def replay_status(entry: Entry | None) -> str:
    if entry is None:
        return ""
    return entry.replayed_to or "yes"


def table_row(letter: DeadLetter, entry: Entry | None) -> list[str]:
    order = letter.order_id if letter.order is not None else f"? key={key_text(letter.key)}"
    return [f"{letter.partition}/{letter.offset}", iso_time(letter.time_ms) or "?", shorten(str(order), 24),
            letter.reason or "?", "?" if letter.attempts is None else str(letter.attempts),
            letter.original or "?", shorten(describe_value(letter)), shorten(letter.error or ""),
            replay_status(entry)]


def json_safe(value: Any) -> Any:
    """A decoded value made fit for strict JSON: NaN and infinities (a dead-lettered price can be one)
    become the strings "NaN", "Infinity" and "-Infinity"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return value


def json_object(letter: DeadLetter, entry: Entry | None) -> dict[str, Any]:
    """One dead letter for `dlq list --json`: every field, none shortened."""
    return {
        "dlq_topic": letter.topic, "dlq_partition": letter.partition, "dlq_offset": letter.offset,
        "time_ms": letter.time_ms, "time": iso_time(letter.time_ms, precise=True),
        "key": key_text(letter.key), "order_id": letter.order_id,
        "reason": letter.reason, "attempts": letter.attempts, "error": letter.error,
        "original_topic": letter.original_topic, "original_partition": letter.original_partition,
        "original_offset": letter.original_offset, "dedupe_key": letter.dedupe_key,
        "decoded": letter.order is not None, "value": json_safe(letter.order), "value_size": letter.value_size,
        "undecodable": letter.undecodable,
        "replay": None if entry is None else {"state": entry.state, "replayed_to": entry.replayed_to,
                                              "at_ms": entry.at_ms},
    }
