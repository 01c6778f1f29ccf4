"""The README's troubleshooting table names exactly the Event reasons the operator emits."""

from __future__ import annotations

import re
from pathlib import Path

from wmco import names

ROOT = Path(__file__).resolve().parents[2]


def _table_reasons() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Troubleshooting by Event reason", 1)[1].split("\n## ", 1)[0]
    reasons: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            reasons |= set(re.findall(r"`([A-Za-z]+)`", first))
    return reasons


def _emitted() -> set[str]:
    used: set[str] = set()
    for path in (ROOT / "src" / "wmco").rglob("*.py"):
        used |= set(re.findall(r"EventReason\.([A-Z_]+)", path.read_text()))
    return {names.EventReason[member].value for member in used}


def test_every_reason_the_operator_emits_is_explained_and_nothing_else() -> None:
    assert _table_reasons() == {reason.value for reason in names.EventReason}


def test_every_declared_reason_is_emitted_somewhere() -> None:
    assert _emitted() == {reason.value for reason in names.EventReason}


def test_the_readme_selects_the_operators_events_by_its_component() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"--field-selector reportingComponent={names.EVENT_COMPONENT}" in readme
