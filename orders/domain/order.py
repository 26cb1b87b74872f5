"""What processing an order means, free of Kafka and the registry.

`validate` turns a decoded record into an `Order` (or says why it can never
succeed); the `Order` is what the rest of the processing, the outcomes and
the console lines read. A field the reader schema has and this class does not
name yet (a newer schema's) travels in `extras`, as decoded.
"""
from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

MICROS_PER_UNIT = 1_000_000
MAX_ORDER_ID_CHARS = 200
MAX_PRODUCT_CHARS = 1_000


class InvalidOrder(ValueError):
    """The order can never succeed; retrying would not help."""


class SimulatedFailure(RuntimeError):
    """Flaky processing, simulated; worth retrying."""


@dataclass(frozen=True)
class Order:
    order_id: str
    product: str
    price: float
    #: schema v2 added these two, with these defaults (a v1 record decodes with them)
    quantity: int = 1
    currency: str = "USD"
    #: the reader schema's other fields, by their Avro names, as decoded
    extras: Mapping[str, Any] = field(default_factory=dict)

    #: the Avro field names this class reads into its attributes
    FIELDS = ("orderId", "product", "price", "quantity", "currency")

    @property
    def price_micros(self) -> int:
        """Price in millionths, exact for every float, so sums do not depend on order."""
        return int((Decimal(self.price) * MICROS_PER_UNIT).to_integral_value())


def validate(record: Mapping[str, Any]) -> Order:
    order_id = record.get("orderId")
    price = record.get("price")
    if not isinstance(order_id, str) or not order_id.strip():
        raise InvalidOrder("orderId is empty")
    if len(order_id) > MAX_ORDER_ID_CHARS:
        raise InvalidOrder(f"orderId has {len(order_id)} characters, more than {MAX_ORDER_ID_CHARS}")
    product = record.get("product", "")
    if not isinstance(product, str) or len(product) > MAX_PRODUCT_CHARS:
        raise InvalidOrder(f"product name has {len(product)} characters, more than {MAX_PRODUCT_CHARS}")
    if not isinstance(price, (int, float)) or isinstance(price, bool):
        raise InvalidOrder(f"price {price!r} is not a number")
    if not math.isfinite(price):
        raise InvalidOrder(f"price {price} is not finite")
    if price < 0:
        raise InvalidOrder(f"price {price} is negative")
    extras = {name: value for name, value in record.items() if name not in Order.FIELDS}
    return Order(order_id, product, float(price), quantity=record.get("quantity", 1),
                 currency=record.get("currency", "USD"), extras=extras)


class FailureSimulator:
    """Decides whether an attempt fails, the seed's "flaky processing".

    With a seed the decision is a pure function of (seed, orderId, attempt), so a
    replayed message fails or passes exactly as it did before a crash.
    `forced` names orders that fail their first N attempts (None: all of them).
    """

    def __init__(self, rate: float, seed: int | None = None, forced: Mapping[str, int | None] | None = None) -> None:
        self.rate = rate
        self.seed = seed
        self.forced = dict(forced or {})
        self._random = random.Random()

    def _draw(self, order_id: str, attempt: int) -> float:
        if self.seed is None:
            return self._random.random()
        digest = hashlib.blake2b(f"{self.seed}:{order_id}:{attempt}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def should_fail(self, order_id: str, attempt: int) -> bool:
        if order_id in self.forced:
            failing = self.forced[order_id]
            return failing is None or attempt <= failing
        return self.rate > 0 and self._draw(order_id, attempt) < self.rate


def process_order(order: Order, attempt: int, failures: FailureSimulator) -> int:
    """Process one attempt (1-based) of an order; return the amount to add, in micros."""
    if failures.should_fail(order.order_id, attempt):
        raise SimulatedFailure(f"simulated processing failure of {order.order_id} on attempt {attempt}")
    return order.price_micros
