"""docs/guarantees.md names the test behind each promise; a renamed or deleted test must not
leave a promise pointing at nothing."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "guarantees.md"
#: `tier/file.py` or `tier/file.py::test_name`, and `::test_name` meaning the same file as the
#: reference before it in that cell.
REFERENCE = re.compile(r"`((?:unit|integration|system|smoke)/[\w/]+\.py)?(?:::(\w+))?`")


def references() -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for line in DOC.read_text().splitlines():
        current: str | None = None
        for match in REFERENCE.finditer(line):
            path, name = match.groups()
            current = path or current
            if current is not None and (path or name):
                found.append((current, name))
    return found


def test_every_promise_names_a_test_that_exists() -> None:
    refs = references()
    assert len(refs) >= 30
    for path, name in refs:
        source = ROOT / "tests" / path
        assert source.is_file(), f"docs/guarantees.md names {path}, which does not exist"
        if name is not None:
            assert re.search(rf"^(async )?def {name}\(", source.read_text(), re.M), (
                f"docs/guarantees.md names {path}::{name}, which {path} does not define"
            )


def test_no_promise_is_left_without_its_proof() -> None:
    text = DOC.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    for row in rows[1:]:
        if row.startswith("| promise |"):
            continue
        assert REFERENCE.search(row.split("|")[2]), f"no test named for: {row}"
