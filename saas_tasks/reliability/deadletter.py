"""The dead-letter store: tasks that failed for good, kept durably until replayed or purged.

Entries are written idempotently by task id (a second failure of the same id updates the entry
and counts it), carry enough to replay the task under its original name, and expire after the
retention setting. The CLI (``saas-tasks dlq …``) is a thin layer over these functions.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import Select, delete, func, select

from saas_tasks.db import session_scope
from saas_tasks.exceptions import DeadLetterNotFound, PermanentError
from saas_tasks.models import DeadLetter, utcnow
from saas_tasks.reliability.redaction import cut_middle
from saas_tasks.settings import get_settings

log = logging.getLogger(__name__)

TRACEBACK_LIMIT = 20_000
MESSAGE_LIMIT = 4_000
UNREPLAYABLE = frozenset({"decode_error", "rejected"})
Q = TypeVar("Q", bound=Select[*tuple[Any, ...]])


class DeadLetterEntry(BaseModel):  # type: ignore[no-redef]  # pydantic plugin: 'kwargs' field
    """What the failure hooks capture and the store records (the record task's payload)."""

    task_id: str
    task_name: str
    reason: str = "failure"
    queue: str | None = None
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, Any] = Field(default_factory=dict)
    exception_type: str = ""
    exception_message: str = ""
    traceback: str = ""
    retries: int = 0
    worker: str | None = None
    failed_at: datetime = Field(default_factory=utcnow)

    @field_validator("args", "kwargs", "headers", mode="before")
    @classmethod
    def _cut_deep_nesting(cls, value: Any) -> Any:
        """A payload nested deeper than pydantic serializes (255 levels; a poison or fuzzed
        message can be) would make the entry itself unsendable and the dead letter lost. The
        levels below :data:`MAX_DEPTH` are kept as a marker instead: the entry still records
        which task failed, why, and the payload's shape; a replay of it sends the cut payload."""
        return _cut_depth(value, MAX_DEPTH)

    def trimmed(self) -> DeadLetterEntry:
        """Long texts cut in the middle; NUL characters (which PostgreSQL's text and JSONB
        refuse, and poison messages carry) written as ``\\x00``."""
        return self.model_copy(
            update={
                "traceback": _text(cut_middle(self.traceback, TRACEBACK_LIMIT)),
                "exception_message": _text(cut_middle(self.exception_message, MESSAGE_LIMIT)),
                "exception_type": _text(self.exception_type),
                "args": _storable(self.args),
                "kwargs": _storable(self.kwargs),
                "headers": _storable(self.headers),
            }
        )


#: How deep a stored payload may nest (pydantic's JSON serializer stops at 255 levels).
MAX_DEPTH = 100
CUT_MARKER = f"[nested deeper than {MAX_DEPTH} levels: cut]"


def _cut_depth(value: Any, levels: int) -> Any:
    if isinstance(value, dict | list | tuple):
        if levels <= 0:
            return CUT_MARKER
        if isinstance(value, dict):
            return {key: _cut_depth(item, levels - 1) for key, item in value.items()}
        return [_cut_depth(item, levels - 1) for item in value]
    return value


def _text(value: str) -> str:
    return value.replace("\x00", "\\x00")


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, list):
        return [_storable(item) for item in value]
    if isinstance(value, dict):
        return {_text(str(key)): _storable(item) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class Filters:
    """The filters every listing, replay and purge shares."""

    task: str | None = None
    exception: str | None = None
    since: datetime | None = None
    status: str | None = None
    reason: str | None = None

    def apply(self, query: Q) -> Q:
        if self.task:
            query = query.where(DeadLetter.task_name == self.task)
        if self.exception:
            query = query.where(
                (DeadLetter.exception_type == self.exception)
                | DeadLetter.exception_type.endswith("." + self.exception)
            )
        if self.since:
            query = query.where(DeadLetter.last_failed_at >= self.since)
        if self.status:
            query = query.where(DeadLetter.status == self.status)
        if self.reason:
            query = query.where(DeadLetter.reason == self.reason)
        return query


def store(entry: DeadLetterEntry) -> tuple[int, bool]:
    """Insert or update the entry for ``entry.task_id``; returns ``(id, created)``."""
    entry = entry.trimmed()
    with session_scope() as session:
        existing = session.execute(
            select(DeadLetter).where(DeadLetter.task_id == entry.task_id).with_for_update()
        ).scalar_one_or_none()
        if existing is not None:
            if existing.last_failed_at >= entry.failed_at:
                return existing.id, False  # the same failure delivered twice
            existing.failure_count += 1
            existing.last_failed_at = entry.failed_at
            existing.exception_type = entry.exception_type
            existing.exception_message = entry.exception_message
            existing.traceback = entry.traceback
            existing.retries = entry.retries
            existing.status = "pending"
            return existing.id, False
        row = DeadLetter(
            task_id=entry.task_id,
            task_name=entry.task_name,
            reason=entry.reason,
            queue=entry.queue,
            args=entry.args,
            kwargs=entry.kwargs,
            headers=entry.headers,
            exception_type=entry.exception_type,
            exception_message=entry.exception_message,
            traceback=entry.traceback,
            retries=entry.retries,
            worker=entry.worker,
            first_failed_at=entry.failed_at,
            last_failed_at=entry.failed_at,
        )
        session.add(row)
        session.flush()
        return row.id, True


def list_entries(filters: Filters, limit: int = 100) -> list[DeadLetter]:
    query = filters.apply(select(DeadLetter)).order_by(DeadLetter.last_failed_at.desc())
    with session_scope() as session:
        return list(session.execute(query.limit(limit)).scalars())


def get_entry(entry_id: int | str) -> DeadLetter:
    """By numeric id, or by the failed task's id."""
    with session_scope() as session:
        if isinstance(entry_id, int) or str(entry_id).isdigit():
            row = session.get(DeadLetter, int(entry_id))
        else:
            row = session.execute(
                select(DeadLetter).where(DeadLetter.task_id == entry_id)
            ).scalar_one_or_none()
        if row is None:
            raise DeadLetterNotFound(
                f"no dead letter with id {entry_id!r} (see: saas-tasks dlq list)"
            )
        return row


def stats(filters: Filters) -> list[tuple[str, str, int]]:
    """``(task name, exception type, count)``, most frequent first."""
    query = filters.apply(
        select(DeadLetter.task_name, DeadLetter.exception_type, func.count())
    ).group_by(DeadLetter.task_name, DeadLetter.exception_type)
    with session_scope() as session:
        rows = session.execute(query).all()
    return sorted(((r[0], r[1], int(r[2])) for r in rows), key=lambda r: (-r[2], r[0], r[1]))


Sender = Callable[[str, list[Any], dict[str, Any], str | None], str]


def replay(entry_id: int | str, send: Sender) -> str:
    """Re-enqueue the entry's task under its original name and args; returns the new task id."""
    entry = get_entry(entry_id)
    if entry.reason in UNREPLAYABLE:
        raise PermanentError(
            f"dead letter {entry.id} ({entry.reason}) carries no task that can be re-run; "
            "inspect it with 'saas-tasks dlq show' and purge it"
        )
    new_id = send(entry.task_name, list(entry.args or []), dict(entry.kwargs or {}), entry.queue)
    with session_scope() as session:
        row = session.get(DeadLetter, entry.id)
        if row is not None:
            row.status = "replayed"
            row.replayed_at = utcnow()
            row.replay_task_id = new_id
            row.replay_count += 1
    log.info(
        "dead letter %s replayed: %s[%s] as %s", entry.id, entry.task_name, entry.task_id, new_id
    )
    return new_id


def purge(filters: Filters) -> int:
    with session_scope() as session:
        ids = select(DeadLetter.id)
        result = session.execute(delete(DeadLetter).where(DeadLetter.id.in_(filters.apply(ids))))
        return int(result.rowcount)  # type: ignore[attr-defined]


def purge_older_than(days: int | None = None) -> int:
    """Retention: drop entries whose last failure is older than the retention setting."""
    cutoff = utcnow() - timedelta(days=days or get_settings().dead_letter_retention_days)
    with session_scope() as session:
        result = session.execute(delete(DeadLetter).where(DeadLetter.last_failed_at < cutoff))
        return int(result.rowcount)  # type: ignore[attr-defined]


# --- the last-resort spool: when neither the broker nor the database answers -------------------


def spool_path() -> Path:
    return get_settings().spool_dir / "dead-letters.jsonl"


def spool(entry: DeadLetterEntry) -> Path:
    """Append the entry to a local file so it survives until :func:`drain_spool`."""
    path = spool_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(entry.model_dump_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return path


def drain_spool(forward: Callable[[DeadLetterEntry], Any]) -> int:
    """Hand every spooled entry to ``forward``; entries it fails on stay spooled."""
    path = spool_path()
    if not path.exists():
        return 0
    claimed = path.with_suffix(f".draining-{os.getpid()}")
    path.rename(claimed)
    done, failed = 0, []
    for line in claimed.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            forward(DeadLetterEntry.model_validate(json.loads(line)))
            done += 1
        except Exception:
            log.exception("dead-letter spool: could not forward an entry; kept for next time")
            failed.append(line)
    if failed:
        with path.open("a", encoding="utf-8") as handle:
            handle.write("\n".join(failed) + "\n")
    claimed.unlink()
    return done
