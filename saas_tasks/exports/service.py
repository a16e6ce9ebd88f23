"""The exports family's work as plain functions: the web app, the task and the tests call these.

* :func:`request_export`: check the request, insert an ``exports`` row (``queued``), enqueue
  the task, return the export id at once (the web app answers 202).
* :func:`run_export`: what the task does: once per export id, stream the rows into a staging
  file, publish it atomically, record the outcome, announce it by email.
* :func:`status` and :func:`download_url`: what the web app shows.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select, update

from saas_tasks.db import session_scope
from saas_tasks.exceptions import InvalidPayload
from saas_tasks.exports import writer
from saas_tasks.exports.datasets import Dataset, get_dataset
from saas_tasks.exports.errors import ExportNotFound, InvalidFilter, UnknownFormat
from saas_tasks.exports.formats import FORMATS
from saas_tasks.exports.storage import get_storage
from saas_tasks.models import Export, User, utcnow
from saas_tasks.settings import get_settings

log = logging.getLogger("saas_tasks.exports")
TASK = "saas_tasks.exports.export"
PROGRESS_EVERY = 0.5  # seconds between progress writes


class ExportRequest(BaseModel):
    export_id: str = Field(min_length=8, max_length=64, pattern=r"^[0-9a-f]+$")


def check_request(
    dataset: str, format: str, filters: Mapping[str, Any] | None, gzip: bool = False
) -> Dataset:
    """Refuse an unknown dataset, format or filter before any work; names the culprit."""
    found = get_dataset(dataset)
    if format not in FORMATS:
        raise UnknownFormat(f"unknown format {format!r} (formats: {', '.join(FORMATS)})")
    if not isinstance(filters or {}, Mapping):
        raise InvalidFilter("filters must be an object of field: value")
    if gzip and (format == "xlsx" or found.is_bundle):
        raise InvalidFilter(f"gzip: a {'zip' if found.is_bundle else 'xlsx'} is compressed already")
    found.check_filters(dict(filters or {}))
    return found


def create_export(
    dataset: str,
    format: str,
    filters: Mapping[str, Any] | None = None,
    requested_by: str | int | None = None,
    notify_email: str | None = None,
    gzip: bool = False,
    bom: bool = False,
) -> str:
    """Check the request and insert its ``queued`` row; returns the export id."""
    check_request(dataset, format, filters, gzip)
    export_id = secrets.token_hex(16)
    with session_scope() as session:
        session.add(
            Export(
                id=export_id,
                dataset=dataset,
                format=format,
                filters=dict(filters or {}),
                options={"gzip": gzip, "bom": bom},
                requested_by=None if requested_by is None else str(requested_by),
                notify_email=notify_email,
                status="queued",
                rows_done=0,
                attempts=0,
            )
        )
    return export_id


def request_export(
    dataset: str,
    format: str = "csv",
    filters: Mapping[str, Any] | None = None,
    requested_by: str | int | None = None,
    notify_email: str | None = None,
    gzip: bool = False,
    bom: bool = False,
) -> str:
    """Queue an export and return its id at once. ``notify_email`` defaults to the email of
    the user ``requested_by`` (an id of ``users``)."""
    export_id = create_export(dataset, format, filters, requested_by, notify_email, gzip, bom)
    from saas_tasks.exports.tasks import export  # the task module imports this one

    try:
        export.apply_async(kwargs={"export_id": export_id})
    except Exception as exc:
        mark_failed(export_id, f"could not enqueue: {type(exc).__name__}: {exc}")
        raise
    return export_id


class Progress:
    """Rows done and total, written to the row and the task state at most every 0.5 s."""

    def __init__(self, export_id: str, report: Callable[[int, int | None], None] | None) -> None:
        self.export_id, self.report = export_id, report
        self.done, self.last = 0, 0.0
        self.total: int | None = None

    def start(self, total: int) -> None:
        self.total = total
        self._flush()

    def add(self, rows: int) -> None:
        self.done += rows
        if time.monotonic() - self.last >= PROGRESS_EVERY:
            self._flush()

    def _flush(self) -> None:
        self.last = time.monotonic()
        with session_scope() as session:
            session.execute(
                update(Export)
                .where(Export.id == self.export_id)
                .values(rows_done=self.done, rows_total=self.total)
            )
        if self.report:
            self.report(self.done, self.total)


def run_export(
    export_id: str, task_id: str, report: Callable[[int, int | None], None] | None = None
) -> dict[str, Any]:
    """Produce, publish and announce export ``export_id``; a second run makes no second file."""
    storage = get_storage()
    settings = get_settings()
    with session_scope() as session:
        row = session.get(Export, export_id, with_for_update=True)
        if row is None:
            raise ExportNotFound(f"no export has id {export_id!r}")
        if row.status == "succeeded" and row.location and storage.exists(row.location):
            log.info("%s[%s] export %s is done already: no second file", TASK, task_id, export_id)
            announce(row)
            return result(row)
        spec = (row.dataset, row.format, dict(row.filters or {}), dict(row.options or {}))
        try:
            dataset = check_request(spec[0], spec[1], spec[2], bool(spec[3].get("gzip")))
        except InvalidPayload as exc:
            row.status, row.error, row.finished_at = "failed", str(exc), utcnow()
            raise
        row.status, row.started_at, row.task_id = "running", utcnow(), task_id
        row.attempts, row.error = row.attempts + 1, None
        compress = bool(spec[3].get("gzip"))
        suffix = writer.extension(dataset, row.format, compress)
        row.filename = f"{row.dataset}-{row.created_at:%Y%m%d-%H%M%S}.{suffix}"
        key = f"{export_id}/{row.filename}"
    removed = storage.discard_partials(key)
    if removed:
        log.warning("%s[%s] removed %d partial file(s) of a killed attempt", TASK, task_id, removed)
    progress = Progress(export_id, report)
    progress.start(writer.total_rows(dataset, spec[2]))
    staged = storage.staging_path(key, task_id.replace("/", "_")[:40])
    try:
        count = writer.produce(
            dataset,
            spec[1],
            spec[2],
            staged,
            progress.add,
            settings.export_chunk_rows,
            compress=compress,
            bom=bool(spec[3].get("bom")),
        )
        size = storage.publish(staged, key, writer.content_type(dataset, spec[1], compress))
    finally:
        staged.unlink(missing_ok=True)
    with session_scope() as session:
        row = session.get(Export, export_id, with_for_update=True)
        assert row is not None  # locked above; rows are never deleted mid-export
        row.status, row.rows_done, row.rows_total, row.bytes = "succeeded", count, count, size
        row.storage, row.location, row.finished_at, row.error = storage.name, key, utcnow(), None
    log.info(
        "%s[%s] export %s: %d rows, %d bytes at %s", TASK, task_id, export_id, count, size, key
    )
    announce(row)
    return result(row)


def result(row: Export) -> dict[str, Any]:
    return {
        "export_id": row.id,
        "status": row.status,
        "rows": row.rows_done,
        "bytes": row.bytes,
        "location": row.location,
    }


def mark_failed(export_id: str, error: str, final: bool = True) -> None:
    """Record a failure: ``failed`` for good, or back to ``queued`` while a retry is due."""
    with session_scope() as session:
        session.execute(
            update(Export)
            .where(Export.id == export_id, Export.status != "succeeded")
            .values(
                status="failed" if final else "queued",
                error=error[:4000],
                finished_at=utcnow() if final else None,
            )
        )


def status(export_id: str) -> dict[str, Any]:
    """What the web app shows: status, progress, error, and a fresh link once done."""
    with session_scope() as session:
        row = session.get(Export, export_id)
        if row is None:
            raise ExportNotFound(f"no export has id {export_id!r}")
        shown = {
            "export_id": row.id,
            "dataset": row.dataset,
            "format": row.format,
            "status": row.status,
            "rows_done": row.rows_done,
            "rows_total": row.rows_total,
            "bytes": row.bytes,
            "error": row.error,
            "created_at": row.created_at.isoformat(),
            "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        }
    if row.status == "succeeded":
        shown["download_url"] = download_url(row)
    return shown


def download_url(row: Export) -> str:
    """A signed link valid for ``SAAS_TASKS_EXPORT_LINK_TTL`` seconds from now."""
    if row.location is None:
        raise ExportNotFound(f"export {row.id!r} has no file yet")
    ttl = get_settings().export_link_ttl
    return get_storage().url(row.location, ttl, row.filename or row.location.rsplit("/", 1)[-1])


def recipient(row: Export) -> tuple[str, str] | None:
    """(address, name) to announce the export to, or None."""
    if row.notify_email:
        return row.notify_email, row.notify_email.split("@")[0]
    if row.requested_by is None or not row.requested_by.isdigit():
        return None
    with session_scope() as session:
        user = session.execute(
            select(User.email, User.name).where(User.id == int(row.requested_by))
        ).first()
    return (user.email, user.name or user.email.split("@")[0]) if user else None


def announce(row: Export) -> None:
    """The "export ready" email, once per export (the email family dedups by key)."""
    to = recipient(row)
    if to is None:
        return
    from saas_tasks.email.tasks import send_email

    ttl = get_settings().export_link_ttl
    send_email.delay(
        to=to[0],
        template="export_ready",
        context={
            "name": to[1],
            "export_name": row.filename or row.dataset,
            "download_url": download_url(row),
            "expires_at": (utcnow() + timedelta(seconds=ttl)).strftime("%Y-%m-%d %H:%M UTC"),
        },
        idempotency_key=f"export-ready:{row.id}",
    )
