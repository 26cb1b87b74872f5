"""The README's settings table and settings.py name the same variables."""
import dataclasses
import re
from pathlib import Path

from orders.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def settings_table() -> str:
    text = README.read_text()
    section = text[text.index("\n## Settings\n"):]
    return section[:section.index("\n## ", 1)]


def test_every_setting_is_in_the_readme_table_and_the_table_names_no_other():
    documented = set()
    for row in settings_table().splitlines():
        if row.startswith("| `"):
            first_cell = row.split("|")[1]
            documented.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
    assert documented == {field.name.upper() for field in dataclasses.fields(Settings)}
