"""The batch histogram exposes what prometheus_client's own Histogram would for the same observations."""
import random

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from orders.ops.batch_histogram import BatchHistogram
from orders.ops.metrics import LATENCY_BUCKETS


def samples(registry) -> dict:
    text = generate_latest(registry).decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if not sample.name.endswith("_created")}


def test_batches_expose_the_same_series_as_one_observation_at_a_time():
    rng = random.Random(11)
    values = [rng.expovariate(50) for _ in range(5000)] + list(LATENCY_BUCKETS) + [0.0, 61.0, 1e9]
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("lat_seconds", "doc", buckets=LATENCY_BUCKETS, registry=theirs)
    for value in values:
        reference.observe(value)
    batched = BatchHistogram("lat_seconds", "doc", LATENCY_BUCKETS, ours)
    for start in range(0, len(values), 777):
        batched.observe_many(values[start:start + 777])

    expected, got = samples(theirs), samples(ours)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key


def test_buckets_that_are_not_distinct_and_ascending_are_refused():
    with pytest.raises(ValueError):
        BatchHistogram("x_seconds", "doc", (0.1, 0.1, 1.0), CollectorRegistry())
    with pytest.raises(ValueError):
        BatchHistogram("x_seconds", "doc", (1.0, 0.1), CollectorRegistry())
