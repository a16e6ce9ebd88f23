"""Old exports: the file in storage first, then its record.

In that order a kill between the two leaves a record whose file is gone, which the next run
deletes (a missing file is not an error); the reverse order would orphan files nobody can find.
Each batch: choose the rows (one short transaction), delete their files (no transaction held
while storage answers), delete the records (a second short transaction).

The exports family is optional here: it is imported lazily, and when it is not installed (or
its ``exports`` table is not in the schema) the purge is skipped with a log line.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, TableClause, and_

from saas_tasks.cleanup import queries
from saas_tasks.cleanup.batches import Limits, PurgeReport, recorded, run_in_batches
from saas_tasks.db import get_engine
from saas_tasks.models import Base, utcnow
from saas_tasks.settings import get_settings

log = logging.getLogger("saas_tasks.cleanup")

EXPORTS_TABLE = "exports"
#: Column names tried in order: where the stored file's key is, and which time makes a row old.
FILE_COLUMNS = ("location", "storage_key", "file_key", "path")
AGE_COLUMNS = ("expires_at", "created_at")
#: Every status of an export: naming them lets PostgreSQL use the (status, created_at) index.
STATUSES = ("queued", "running", "succeeded", "failed")


class DeletesFiles(Protocol):
    """What cleanup needs of the export storage: delete one stored file by its key (raising
    FileNotFoundError, or nothing, when it is already gone)."""

    def delete(self, key: str) -> Any: ...


@dataclass(frozen=True)
class ExportsFamily:
    target: queries.Target
    file_column: str
    age_column: str
    get_storage: Callable[[], Any]


def _exports_family() -> ExportsFamily | str:
    """The exports table, its file and age columns and the storage; or why there is none."""
    try:
        storage_module = importlib.import_module("saas_tasks.exports.storage")
    except ModuleNotFoundError as exc:
        if exc.name and "saas_tasks.exports.storage".startswith(exc.name):
            return "the exports family (saas_tasks.exports) is not installed"
        raise
    exports = Base.metadata.tables.get(EXPORTS_TABLE)
    if exports is None:
        return f"no {EXPORTS_TABLE!r} table in the schema"
    file_column = next((c for c in FILE_COLUMNS if c in exports.c), None)
    age_column = next((c for c in AGE_COLUMNS if c in exports.c), None)
    get_storage = getattr(storage_module, "get_storage", None)
    if file_column is None or age_column is None or get_storage is None:
        return "the exports family has no file column, age column or get_storage()"

    def expired(t: TableClause, cutoff: datetime) -> ColumnElement[bool]:
        old = t.c[age_column] < cutoff
        return and_(t.c.status.in_(STATUSES), old) if "status" in t.c else old

    target = queries.Target("exports", exports, "id", age_column, expired)
    return ExportsFamily(target, file_column, age_column, get_storage)


def _delete_file(storage: DeletesFiles, key: str) -> bool:
    """Whether the file is gone now (deleted, or missing already: not an error)."""
    try:
        storage.delete(key)
    except FileNotFoundError:
        log.info("cleanup purge_old_exports: %s was already gone", key)
    except Exception:
        log.exception("cleanup purge_old_exports: could not delete %s; its record stays", key)
        return False
    return True


def purge_old_exports(
    limits: Limits | None = None,
    now: datetime | None = None,
    storage: DeletesFiles | None = None,
) -> PurgeReport:
    """Exports older than SAAS_TASKS_EXPORT_RETENTION_DAYS (or past their ``expires_at``)."""
    limits = limits or Limits.from_settings()
    with recorded("purge_old_exports", limits) as report:
        family = _exports_family()
        if isinstance(family, str):
            report.note = f"skipped: {family}"
            log.info("cleanup purge_old_exports %s", report.note)
            return report
        store = storage or family.get_storage()
        if not callable(getattr(store, "delete", None)):
            report.note = f"skipped: the export storage {type(store).__name__} has no delete(key)"
            log.warning("cleanup purge_old_exports %s", report.note)
            return report
        retention = timedelta(days=get_settings().export_retention_days)
        by_created = family.age_column == "created_at"
        cutoff = (now or utcnow()) - (retention if by_created else timedelta())
        _purge(report, family.target, family.file_column, cutoff, store)
    return report


def _purge(
    report: PurgeReport,
    target: queries.Target,
    file_column: str,
    cutoff: datetime,
    store: DeletesFiles,
) -> None:
    engine = get_engine()
    size = report.limits.batch_size
    failed: set[Any] = set()
    after: Any = None

    def batch() -> tuple[int, int]:
        nonlocal after
        with engine.begin() as connection:
            rows = queries.select_batch(connection, target, cutoff, size, (file_column,), after)
        after = rows[-1][target.order] if rows else after
        gone = []
        for row in rows:  # storage deletes one object at a time; the SQL stays set-based
            if not row[file_column] or _delete_file(store, str(row[file_column])):
                gone.append(row["id"])
            else:
                failed.add(row["id"])
        with engine.begin() as connection:
            deleted = queries.delete_keys(connection, target, gone)
        return len(rows), deleted

    run_in_batches(report, "exports", batch)
    if failed:
        report.note = f"{len(failed)} files could not be deleted; their records stay"
