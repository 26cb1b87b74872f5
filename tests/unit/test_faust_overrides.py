"""The upstream code orders/faust_overrides reaches into is the code it was written against."""
import hashlib
import importlib
import inspect
from importlib.metadata import version

import pytest

from orders.faust_overrides import PINNED, UPSTREAM


def upstream_source(dotted: str) -> str:
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attr in parts[split:]:
            obj = getattr(obj, attr)
        break
    if isinstance(obj, property):
        obj = obj.fget
    obj = getattr(obj, "fun", obj)  # a mode Service.task wraps its function
    return inspect.getsource(obj)


@pytest.mark.parametrize("package", sorted(PINNED))
def test_the_installed_versions_are_the_pinned_ones(package):
    assert version(package) == PINNED[package], (
        f"{package} {version(package)} is installed; orders/faust_overrides was written for {PINNED[package]}: "
        f"check every entry of UPSTREAM against the new code before changing the pin")


@pytest.mark.parametrize("dotted", sorted(UPSTREAM))
def test_the_upstream_code_an_override_relies_on_has_not_changed(dotted):
    digest = hashlib.sha256(upstream_source(dotted).encode()).hexdigest()[:16]
    assert digest == UPSTREAM[dotted], (
        f"{dotted} changed upstream (digest {digest}, was {UPSTREAM[dotted]}): read the new code, adapt the "
        f"override in orders/faust_overrides that names it, then update UPSTREAM")
