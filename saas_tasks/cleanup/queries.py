"""Every table, column and statement of the cleanup family, in one place.

A host app whose sessions or logs live in tables of its own changes the names here (and only
here). Tables are named with lightweight ``table()``/``column()`` constructs rather than the
pack's models, so this module is the whole contract. Every value (cutoffs, batch sizes) is a
bound parameter; no SQL text is ever built from input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Connection,
    String,
    TableClause,
    Text,
    and_,
    any_,
    bindparam,
    column,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import OperationalError

from saas_tasks.models import UtcDateTime, utcnow

SESSIONS = table("sessions", column("id", BigInteger), column("expires_at", UtcDateTime()))
AUDIT_LOGS = table("audit_logs", column("id", BigInteger), column("created_at", UtcDateTime()))
SYSTEM_LOGS = table(
    "system_logs",
    column("id", BigInteger),
    column("source", String),
    column("level", String),
    column("message", Text),
    column("data", JSON),
    column("created_at", UtcDateTime()),
)
IDEMPOTENCY_RECORDS = table(
    "idempotency_records",
    column("key", String),
    column("created_at", UtcDateTime()),
    column("claimed_until", UtcDateTime()),
)
DEAD_LETTERS = table(
    "dead_letters", column("id", BigInteger), column("last_failed_at", UtcDateTime())
)

#: The ``source`` of the line each run writes to ``system_logs``.
LOG_SOURCE = "saas_tasks.cleanup"

Expired = Callable[[TableClause, datetime], ColumnElement[bool]]


@dataclass(frozen=True)
class Target:
    """One table a purge trims: the rows past ``cutoff``, named by a unique ``key`` column and
    taken in the order of the indexed ``order`` column (the age), so that each batch starts
    where the last one ended instead of wading through the entries it just deleted."""

    label: str
    table: TableClause
    key: str
    order: str
    expired: Expired


def _older(name: str) -> Expired:
    return lambda t, cutoff: t.c[name] < cutoff


def _idempotency_expired(t: TableClause, cutoff: datetime) -> ColumnElement[bool]:
    # A claim whose holder may still be running is never touched, however old the record.
    return and_(
        t.c.created_at < cutoff, or_(t.c.claimed_until.is_(None), t.c.claimed_until < cutoff)
    )


EXPIRED_SESSIONS = Target("sessions", SESSIONS, "id", "expires_at", _older("expires_at"))
OLD_AUDIT_LOGS = Target("audit_logs", AUDIT_LOGS, "id", "created_at", _older("created_at"))
OLD_SYSTEM_LOGS = Target("system_logs", SYSTEM_LOGS, "id", "created_at", _older("created_at"))
OLD_IDEMPOTENCY_RECORDS = Target(
    "idempotency_records", IDEMPOTENCY_RECORDS, "key", "created_at", _idempotency_expired
)
OLD_DEAD_LETTERS = Target(
    "dead_letters", DEAD_LETTERS, "id", "last_failed_at", _older("last_failed_at")
)


def select_batch(
    connection: Connection,
    target: Target,
    cutoff: datetime,
    limit: int,
    columns: Sequence[str] = (),
    after: Any = None,
) -> list[dict[str, Any]]:
    """Up to ``limit`` expired rows in ``order``, from ``after`` on (the last batch's end):
    the key, the order column and ``columns``. On PostgreSQL they stay locked until commit,
    and rows another transaction holds (a concurrent run, the app touching a session) are
    skipped for a later batch instead of making this one wait."""
    t = target.table
    order = t.c[target.order]
    names = dict.fromkeys((target.key, target.order, *columns))
    query = select(*(t.c[name] for name in names)).where(target.expired(t, cutoff))
    if after is not None:
        query = query.where(order >= after)
    query = query.order_by(order).limit(limit)
    if connection.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [dict(row._mapping) for row in connection.execute(query)]


def delete_keys(
    connection: Connection, target: Target, keys: Sequence[Any], cutoff: datetime | None = None
) -> int:
    """Delete the rows named by ``keys`` (one bounded batch already chosen); with ``cutoff``,
    only those still expired (SQLite does not lock the chosen rows: a session the app
    extended in between must stay)."""
    if not keys:
        return 0
    t = target.table
    key = t.c[target.key]
    if connection.dialect.name == "postgresql":  # one array parameter, an index scan
        condition = key == any_(bindparam("keys", list(keys), type_=ARRAY(key.type)))
    else:
        condition = key.in_(keys)
    if cutoff is not None:
        condition = and_(condition, target.expired(t, cutoff))
    return int(connection.execute(delete(t).where(condition)).rowcount)


#: How long a batch's range DELETE waits for a row the app holds (a session being touched)
#: before it leaves the locked rows for a later batch instead.
ROW_LOCK_WAIT = "500ms"


class RowsHeld(Exception):
    """A batch's range DELETE waited :data:`ROW_LOCK_WAIT` for a row another transaction holds
    (the app touching a session). Its transaction is aborted: run the batch again in a new one
    with ``skip_locked=True``, which leaves the held rows for a later run."""


def delete_batch(
    connection: Connection,
    target: Target,
    cutoff: datetime,
    limit: int,
    after: Any = None,
    skip_locked: bool = False,
) -> tuple[int, int, Any]:
    """One batch of at most ``limit`` expired rows; returns ``(rows chosen, rows deleted,
    where the next batch starts)``; fewer than ``limit`` chosen means the table is done.

    PostgreSQL, in the batch's own transaction:

    1. the batch's upper bound: the age of the ``limit + 1``-th expired row from ``after`` on,
       ``SELECT age … ORDER BY age OFFSET :n LIMIT 1`` (an index-only scan);
    2. ``DELETE … WHERE <expired> AND age >= :after AND age < :upper``: an index range scan
       that deletes the batch where it lies, like the single DELETE would, with no rows
       chosen one by one, locked, then deleted again (that cost the purge three times the
       single DELETE's time; this costs about as much).

    Rows at ``upper`` itself stay for the next batch, so a batch never holds more than
    ``limit`` rows. A row the app holds is waited for at most :data:`ROW_LOCK_WAIT`, and the
    WHERE clause is checked again on the row as the app left it (a session it extended
    stays); if the wait runs out, :class:`RowsHeld` is raised. When more than ``limit`` rows
    share one age, and with ``skip_locked``, the batch instead chooses ``limit`` rows by ctid
    ``FOR UPDATE SKIP LOCKED``. SQLite: choose the keys, then delete them.
    """
    if connection.dialect.name != "postgresql":
        rows = select_batch(connection, target, cutoff, limit, after=after)
        deleted = delete_keys(connection, target, [row[target.key] for row in rows], cutoff)
        return len(rows), deleted, rows[-1][target.order] if rows else after
    # One round trip for the batch's settings, all for this transaction only. JIT: a batch is
    # a short OLTP statement, and compiling it (the planner sees a big table) would cost more
    # than running it. synchronous_commit: a batch lost in a crash only brings back expired
    # rows for the next run to delete, so its commit need not wait for the WAL to reach the
    # disk (the run's record in system_logs does wait). lock_timeout: see RowsHeld.
    connection.execute(
        text(
            "SELECT set_config('jit', 'off', true),"
            " set_config('synchronous_commit', 'off', true),"
            " set_config('lock_timeout', :wait, true)"
        ),
        {"wait": ROW_LOCK_WAIT},
    )
    if skip_locked:
        return _delete_chosen(connection, target, cutoff, limit, after)
    t = target.table
    order = t.c[target.order]
    due = target.expired(t, cutoff)
    if after is not None:
        due = and_(due, order >= after)
    upper = connection.execute(
        select(order).where(due).order_by(order).offset(limit).limit(1)
    ).scalar()
    in_range = due if upper is None else and_(due, order < upper)
    try:
        deleted = int(connection.execute(delete(t).where(in_range)).rowcount)
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            raise RowsHeld(target.label) from exc
        raise
    if upper is None:  # the last batch: everything that was left
        return deleted, deleted, after
    if deleted == 0:  # more than a batch's worth of rows at one age
        return _delete_chosen(connection, target, cutoff, limit, after)
    return limit, deleted, upper


#: PostgreSQL's SQLSTATE for lock_timeout (and NOWAIT) running out.
LOCK_NOT_AVAILABLE = "55P03"


def _delete_chosen(
    connection: Connection, target: Target, cutoff: datetime, limit: int, after: Any
) -> tuple[int, int, Any]:
    """``WITH gone AS (DELETE … WHERE ctid = ANY(ARRAY(SELECT ctid … ORDER BY age LIMIT :n
    FOR UPDATE SKIP LOCKED)) RETURNING age) SELECT count(*), max(age)``: ``limit`` rows
    chosen one by one, the ones another transaction holds skipped for a later batch."""
    t = target.table
    order = t.c[target.order]
    # The row's physical address: the DELETE goes straight to each row, no key-index probe.
    # Safe within the statement: a row locked FOR UPDATE cannot move.
    ctid: ColumnElement[Any] = literal_column("ctid")
    chosen = select(ctid).select_from(t).where(target.expired(t, cutoff))
    if after is not None:
        chosen = chosen.where(order >= after)
    chosen = chosen.order_by(order).limit(limit).with_for_update(skip_locked=True)
    gone = (
        delete(t)
        .where(ctid == any_(func.array(chosen.scalar_subquery())))
        .returning(order)
        .cte("gone")
    )
    count, last = connection.execute(
        select(func.count(), func.max(gone.c[target.order])).select_from(gone)
    ).one()
    return int(count), int(count), last if last is not None else after


def record_run(connection: Connection, level: str, message: str, data: dict[str, Any]) -> None:
    """The one line a run writes to ``system_logs``."""
    connection.execute(
        insert(SYSTEM_LOGS).values(
            source=LOG_SOURCE, level=level, message=message, data=data, created_at=utcnow()
        )
    )
