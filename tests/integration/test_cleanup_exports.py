"""Old exports: the file in storage goes first, then the record; a missing file is no error."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from saas_tasks.cleanup.batches import Limits
from saas_tasks.cleanup.exports import purge_old_exports
from saas_tasks.db import session_scope
from saas_tasks.exports.storage import LocalStorage
from saas_tasks.models import Base
from tests.integration.cleanup_data import NOW

pytestmark = pytest.mark.skipif(
    "exports" not in Base.metadata.tables, reason="the exports family's table is not built yet"
)


@dataclass
class DirStorage:
    """Export files under ``root``, deleted as the storage Protocol's ``delete(key)`` does."""

    root: Path
    refuse: set[str] = field(default_factory=set)

    def delete(self, key: str) -> None:
        if key in self.refuse:
            raise PermissionError(f"{key}: access denied")
        (self.root / key).unlink()  # FileNotFoundError when already gone


def add_exports(storage: DirStorage | LocalStorage, rows: dict[str, tuple[int, bool]]) -> None:
    """``{id: (age in days, file exists)}``; every export's file key is ``<id>/data.csv``."""
    table = Base.metadata.tables["exports"]
    values = []
    for export_id, (age, has_file) in rows.items():
        if has_file:
            (storage.root / export_id).mkdir(parents=True)
            (storage.root / export_id / "data.csv").write_text("a,b\n")
        values.append(
            {
                "id": export_id,
                "dataset": "invoices",
                "format": "csv",
                "status": "succeeded",
                "location": f"{export_id}/data.csv",
                "created_at": NOW - timedelta(days=age),
            }
        )
    with session_scope() as session:
        session.execute(insert(table), values)


def export_ids() -> set[str]:
    table = Base.metadata.tables["exports"]
    with session_scope() as session:
        return set(session.execute(select(table.c.id)).scalars())


def test_old_exports_lose_their_file_then_their_record(clean_state: None, tmp_path: Path) -> None:
    storage = LocalStorage(root=tmp_path, base_url="http://app.test/exports")  # the pack's own
    add_exports(storage, {"old1": (8, True), "old2": (9, True), "new": (1, True)})
    add_exports(storage, {"gone": (10, False)})  # its file was removed by hand: not an error

    report = purge_old_exports(Limits(batch_size=2, time_budget=60), now=NOW, storage=storage)

    assert report.deleted == {"exports": 3}
    assert report.note is None
    assert export_ids() == {"new"}
    assert sorted(p.name for p in tmp_path.rglob("*.csv")) == ["data.csv"]
    assert (tmp_path / "new" / "data.csv").exists()


def test_a_file_storage_refuses_to_delete_keeps_its_record(
    clean_state: None, tmp_path: Path
) -> None:
    storage = DirStorage(tmp_path, refuse={"old2/data.csv"})
    add_exports(storage, {"old1": (8, True), "old2": (9, True)})

    report = purge_old_exports(Limits(batch_size=10, time_budget=60), now=NOW, storage=storage)

    assert report.deleted == {"exports": 1}
    assert report.note == "1 files could not be deleted; their records stay"
    assert export_ids() == {"old2"}
    assert (tmp_path / "old2" / "data.csv").exists()


def test_a_storage_without_delete_skips_the_purge_and_says_so(clean_state: None) -> None:
    report = purge_old_exports(Limits(batch_size=10, time_budget=60), storage=object())  # type: ignore[arg-type]

    assert report.total == 0
    assert report.note is not None and "has no delete(key)" in report.note
