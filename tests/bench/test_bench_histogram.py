"""Quantiles from Prometheus histogram buckets, as histogram_quantile estimates them."""
import math
import random

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench.histogram import buckets_from_text, delta, overflowed, quantile
from bench.latency import LATENCY_METRIC, measured_buckets
from orders.ops.metrics import LATENCY_BUCKETS

INF = math.inf


def test_a_quantile_is_interpolated_linearly_inside_its_bucket():
    buckets = {0.01: 50, 0.02: 90, 0.05: 100, INF: 100}
    assert quantile(0.5, buckets) == pytest.approx(0.01)  # rank 50: the top of the first bucket
    assert quantile(0.25, buckets) == pytest.approx(0.005)  # the first bucket starts at 0
    assert quantile(0.95, buckets) == pytest.approx(0.035)  # rank 95: half-way through (0.02, 0.05]
    assert quantile(0.99, buckets) == pytest.approx(0.047)


def test_a_quantile_in_the_inf_bucket_is_the_highest_finite_bound_and_flagged():
    buckets = {0.01: 10, 1.0: 40, INF: 100}
    assert quantile(0.5, buckets) == 1.0
    assert overflowed(0.5, buckets)
    assert not overflowed(0.4, buckets)


def test_an_empty_histogram_has_no_quantile():
    assert math.isnan(quantile(0.5, {0.01: 0, INF: 0}))


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        quantile(1.5, {INF: 1})
    with pytest.raises(ValueError):
        quantile(0.5, {0.01: 1})
    with pytest.raises(ValueError):
        delta({0.01: 1, INF: 1}, {0.02: 1, INF: 1})


def test_the_difference_of_two_scrapes_holds_only_what_was_observed_in_between():
    registry = CollectorRegistry()
    histogram = Histogram("lat_seconds", "test", buckets=LATENCY_BUCKETS, registry=registry)
    for _ in range(1000):
        histogram.observe(5.0)  # before the interval: must not count
    before = buckets_from_text(generate_latest(registry).decode(), "lat_seconds")
    rng = random.Random(7)
    observed = sorted(rng.uniform(0.0, 0.1) for _ in range(10_000))
    for value in observed:
        histogram.observe(value)
    between = delta(before, buckets_from_text(generate_latest(registry).decode(), "lat_seconds"))

    assert between[INF] == len(observed)
    for q in (0.5, 0.95, 0.99):
        exact = observed[int(q * len(observed)) - 1]
        # Uniform within each bucket, so interpolation lands close to the exact quantile.
        assert quantile(q, between) == pytest.approx(exact, abs=0.002)


def test_buckets_are_read_from_the_text_format_by_metric_name():
    text = ('# TYPE other histogram\nother_bucket{le="1.0"} 9.0\nother_bucket{le="+Inf"} 9.0\n'
            '# TYPE lat histogram\nlat_bucket{le="0.5"} 2.0\nlat_bucket{le="+Inf"} 3.0\nlat_count 3.0\n')
    assert buckets_from_text(text, "lat") == {0.5: 2.0, INF: 3.0}
    with pytest.raises(ValueError):
        buckets_from_text(text, "missing")


def _latency_scrapes(*phases: list[float]) -> list[str]:
    """The worker's latency histogram scraped after each phase of observations."""
    registry = CollectorRegistry()
    histogram = Histogram(LATENCY_METRIC, "test", buckets=LATENCY_BUCKETS, registry=registry)
    scrapes = []
    for phase in phases:
        for value in phase:
            histogram.observe(value)
        scrapes.append(generate_latest(registry).decode())
    return scrapes


def test_the_latency_bench_measures_only_the_orders_counted_after_the_warmup_scrape():
    primed, warmed, final = _latency_scrapes([9.0] * 6, [1.5] * 300, [0.004] * 900)
    buckets, warmup_included = measured_buckets(primed, warmed, final)
    assert (buckets[INF], warmup_included) == (900, False)
    assert quantile(0.99, buckets) < 0.01


def test_a_warmup_scrape_that_already_holds_every_order_falls_back_to_all_orders_after_the_priming_ones():
    # The worker fell behind by the whole window: warm-up and measured orders land in one commit.
    primed, warmed, final = _latency_scrapes([9.0] * 6, [1.5] * 300 + [0.9] * 900, [])
    buckets, warmup_included = measured_buckets(primed, warmed, final)
    assert (buckets[INF], warmup_included) == (1200, True)
    assert buckets[5.0] == 1200  # the primers' 9 s are left out
