"""Quantiles of a Prometheus histogram over an interval, estimated as Prometheus' histogram_quantile does.

Two scrapes give cumulative bucket counts; their difference is the histogram of
the observations in between. Within the bucket that holds the wanted rank the
value is interpolated linearly between the bucket's bounds (the first bucket
starts at 0); a rank in the +Inf bucket yields the highest finite bound, so the
answer is then a lower bound ("more than").
"""
from __future__ import annotations

import math
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

Buckets = dict[float, float]  # upper bound ("le") -> cumulative count


def buckets_from_text(text: str, name: str) -> Buckets:
    """The `<name>_bucket` series of a histogram without labels other than `le`, from the text format."""
    found: Buckets = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                found[float(sample.labels["le"])] = sample.value
    if not found:
        raise ValueError(f"no {name}_bucket series in the scrape")
    return found


def sample_value(text: str, sample_name: str) -> float:
    """The value of an unlabelled sample (a counter's `<name>_total`, say) in a scrape."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and not sample.labels:
                return sample.value
    raise ValueError(f"no {sample_name} sample in the scrape")


def delta(before: Mapping[float, float], after: Mapping[float, float]) -> Buckets:
    """Observations made between two scrapes of the same histogram, bucket by bucket (still cumulative)."""
    if set(before) != set(after):
        raise ValueError("the two scrapes have different buckets")
    return {le: after[le] - before[le] for le in sorted(after)}


def quantile(q: float, buckets: Mapping[float, float]) -> float:
    """The q-quantile (0 <= q <= 1) of cumulative `buckets`; NaN when they hold no observation."""
    if not 0 <= q <= 1:
        raise ValueError(f"quantile {q} is not between 0 and 1")
    bounds = sorted(buckets)
    if not bounds or bounds[-1] != math.inf:
        raise ValueError("a histogram needs a +Inf bucket")
    total = buckets[math.inf]
    if total <= 0:
        return math.nan
    rank = q * total
    lower, below = 0.0, 0.0
    for upper in bounds:
        count = buckets[upper]
        if count >= rank:
            if upper == math.inf:
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower  # not reached: the +Inf bucket holds every observation


def overflowed(q: float, buckets: Mapping[float, float]) -> bool:
    """True when the q-quantile lies in the +Inf bucket, so `quantile` gives only a lower bound."""
    finite = [le for le in buckets if le != math.inf]
    return bool(finite) and buckets[max(finite)] < q * buckets[math.inf]
