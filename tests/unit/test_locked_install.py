"""The install is reproducible: what is installed is exactly requirements.lock, and the lock agrees with the
pins of requirements.txt and requirements-dev.txt (scripts/lock regenerates it)."""
from __future__ import annotations

import re
from importlib.metadata import distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Installed by venv itself, not by the requirements.
TOOLING = {"pip", "setuptools", "wheel"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _sep, version = line.partition("==")
            found[canonical(name.split("[", 1)[0])] = version
    return found


def test_the_installed_packages_are_exactly_the_locked_ones():
    locked = pins(ROOT / "requirements.lock")
    installed = {canonical(d.metadata["Name"]): d.version for d in distributions()
                 if canonical(d.metadata["Name"]) not in TOOLING}
    differ = {name: (installed.get(name), locked.get(name)) for name in set(installed) | set(locked)
              if installed.get(name) != locked.get(name)}
    assert not differ, f"installed vs requirements.lock (run scripts/setup, or scripts/lock after an upgrade): {differ}"


def test_the_lock_holds_every_pin_of_the_requirements_at_its_version():
    locked = pins(ROOT / "requirements.lock")
    for requirements in ("requirements.txt", "requirements-dev.txt"):
        for name, version in pins(ROOT / requirements).items():
            assert locked.get(name) == version, (f"{requirements} pins {name}=={version}, "
                                                 f"the lock has {locked.get(name)}")
