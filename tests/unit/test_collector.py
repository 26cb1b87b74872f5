"""The worker's collector settings: records kept alive by the thousands start no collection, and what start-up
built is never scanned again."""
from __future__ import annotations

import gc

import pytest

from orders.ops import collector


@pytest.fixture
def collections():
    """Collections run while the test runs, by generation; the interpreter's settings put back afterwards."""
    thresholds, runs = gc.get_threshold(), []

    def count(phase, info):
        if phase == "start":
            runs.append(info["generation"])
    gc.collect()
    gc.callbacks.append(count)
    yield runs
    gc.callbacks.remove(count)
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def keep_records(n: int) -> list:
    """Containers like a backlog's: each record object with its order and outcome, all kept alive."""
    return [({"orderId": f"o-{i}"}, [i], (i, [i])) for i in range(n)]


def test_with_the_interpreters_defaults_a_backlog_of_records_starts_collections(collections):
    gc.set_threshold(700, 10, 10)
    kept = keep_records(20_000)
    assert len(kept) == 20_000
    assert collections.count(0) > 50 and 2 in collections


def test_after_start_a_backlog_of_records_starts_no_collection(collections):
    collector.settle_after_start()
    kept = keep_records(20_000)
    assert len(kept) == 20_000
    assert collections == []


def test_after_start_what_start_up_built_is_frozen(collections):
    built_at_start = [[i] for i in range(1_000)]
    collector.settle_after_start()
    assert gc.get_freeze_count() >= len(built_at_start)
    scanned = {id(o) for o in gc.get_objects()}  # the objects a collection looks at
    assert not any(id(o) in scanned for o in built_at_start)
