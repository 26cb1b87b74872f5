import math

import pytest

from orders.domain.order import FailureSimulator, InvalidOrder, Order, SimulatedFailure, process_order, validate


def test_valid_order_is_accepted():
    assert validate({"orderId": "o-1", "product": "Laptop", "price": 999.5}) == Order("o-1", "Laptop", 999.5)


@pytest.mark.parametrize("record", [
    {"orderId": "o-1", "product": "x", "price": -0.01},
    {"orderId": "o-1", "product": "x", "price": math.nan},
    {"orderId": "o-1", "product": "x", "price": math.inf},
    {"orderId": "o-1", "product": "x", "price": -math.inf},
    {"orderId": "", "product": "x", "price": 1.0},
    {"orderId": "   ", "product": "x", "price": 1.0},
    {"product": "x", "price": 1.0},
    {"orderId": "o-1", "product": "x" * 1_000_001, "price": 1.0},
    {"orderId": "o" * 201, "product": "x", "price": 1.0},
])
def test_invalid_orders_are_refused(record):
    with pytest.raises(InvalidOrder):
        validate(record)


def test_price_in_micros_is_exact_for_binary_fractions():
    assert Order("o", "p", 999.5).price_micros == 999_500_000
    assert Order("o", "p", 0.25).price_micros == 250_000


def test_seeded_failures_are_reproducible_per_order_and_attempt():
    first = FailureSimulator(0.5, seed=42)
    second = FailureSimulator(0.5, seed=42)
    decisions = [first.should_fail(f"o-{i}", a) for i in range(200) for a in (1, 2)]
    assert decisions == [second.should_fail(f"o-{i}", a) for i in range(200) for a in (1, 2)]
    assert 0.35 < sum(decisions) / len(decisions) < 0.65


def test_failure_rate_zero_never_fails_and_one_always_fails():
    assert not any(FailureSimulator(0.0).should_fail(f"o-{i}", 1) for i in range(100))
    assert all(FailureSimulator(1.0).should_fail(f"o-{i}", 1) for i in range(100))


def test_forced_failures_fail_the_first_attempts_only():
    failures = FailureSimulator(0.0, forced={"o-1": 2, "o-2": None})
    assert [failures.should_fail("o-1", a) for a in (1, 2, 3)] == [True, True, False]
    assert all(failures.should_fail("o-2", a) for a in range(1, 10))


def test_process_order_returns_micros_or_raises_a_retryable_failure():
    order = Order("o-1", "Laptop", 10.5)
    assert process_order(order, 1, FailureSimulator(0.0)) == 10_500_000
    with pytest.raises(SimulatedFailure):
        process_order(order, 1, FailureSimulator(1.0))
