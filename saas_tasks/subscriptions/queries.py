"""Every SQL statement of the subscriptions family, in one place.

A host app whose subscriptions live in its own tables changes this module only: the rest of
the family speaks in reminder ids and :class:`NoticeRow` values. Every statement is set-based
(one statement a window, a batch or a chunk) with bound parameters only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, case, exists, literal, null, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from saas_tasks.models import Subscription, SubscriptionReminder, User, UtcDateTime

S = cast(Table, Subscription.__table__)
R = cast(Table, SubscriptionReminder.__table__)
U = cast(Table, User.__table__)

#: Statuses whose period end or trial end can still lapse into ``expired``.
LIVE = ("active", "past_due")
#: ``reason`` of a reminder whose due moment passed before its chunk ran.
LATE = "late: its due moment passed before its chunk ran"


@dataclass(frozen=True)
class NoticeRow:
    """A reminder row with what its email needs."""

    id: int
    subscription_id: int
    kind: str
    period_end: datetime
    offset_days: int
    status: str
    webhook_published_at: datetime | None
    tenant_id: int
    plan: str
    amount: int
    currency: str
    timezone: str | None
    email: str
    name: str
    user_timezone: str | None
    obsolete: str | None = None  # why the notice no longer applies; None while it does


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _insert(session: Session) -> Any:
    module: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return module.insert(R)


def _columns() -> list[str]:
    return ["subscription_id", "kind", "period_end", "offset_days", "status", "created_at"]


def record_due_reminders(
    session: Session, offset: int, start: datetime, end: datetime, now: datetime
) -> int:
    """Insert the ``offset``-day reminder of every renewal, lapse or trial end due in
    ``[start, end)`` that has not had it for that period; return how many were new."""
    trialing = S.c.status == "trialing"
    kind = case((trialing, "trial_end"), (S.c.auto_renew, "renewal"), else_="lapse")
    due = case((trialing, S.c.trial_ends_at), else_=S.c.current_period_end)
    already = exists().where(
        R.c.subscription_id == S.c.id,
        R.c.kind == kind,
        R.c.period_end == due,
        R.c.offset_days == offset,
    )
    found = select(
        S.c.id, kind, due, literal(offset), literal("pending"), literal(now, UtcDateTime())
    ).where(
        or_(
            and_(trialing, S.c.trial_ends_at >= start, S.c.trial_ends_at < end),
            and_(
                S.c.status == "active",
                S.c.current_period_end >= start,
                S.c.current_period_end < end,
            ),
        ),
        ~already,
    )
    statement = _insert(session).from_select(_columns(), found).on_conflict_do_nothing()
    # RETURNING counts on every driver (psycopg reports -1 for INSERT ... SELECT here)
    return len(session.execute(statement.returning(R.c.id)).all())


def lapsed_ids(session: Session, cutoff: datetime, limit: int) -> list[int]:
    """Up to ``limit`` subscriptions whose period (or trial) ended before ``cutoff``, locked;
    concurrent runs skip each other's rows on PostgreSQL."""
    query = (
        select(S.c.id)
        .where(
            or_(
                and_(S.c.status.in_(LIVE), S.c.current_period_end < cutoff),
                and_(S.c.status == "trialing", S.c.trial_ends_at < cutoff),
            )
        )
        .order_by(S.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [int(i) for i in session.scalars(query)]


def expire(session: Session, ids: Sequence[int], now: datetime) -> int:
    """Mark ``ids`` expired and record each one's ``expired`` notice, in the caller's
    transaction: the notice commits with the expiry or not at all."""
    due = case((S.c.status == "trialing", S.c.trial_ends_at), else_=S.c.current_period_end)
    notices = select(
        S.c.id, literal("expired"), due, literal(0), literal("pending"), literal(now, UtcDateTime())
    ).where(S.c.id.in_(ids))
    session.execute(_insert(session).from_select(_columns(), notices).on_conflict_do_nothing())
    changed = session.execute(
        update(S)
        .where(S.c.id.in_(ids), S.c.status.in_((*LIVE, "trialing")))
        .values(status="expired", expired_at=now)
    )
    return _count(changed)


def pending_ids(session: Session, stale_before: datetime, limit: int) -> list[int]:
    """Reminders not yet done and not enqueued since ``stale_before`` (never, or by a run
    that died before its chunks ran), oldest first."""
    query = (
        select(R.c.id)
        .where(
            R.c.status == "pending",
            or_(R.c.enqueued_at.is_(None), R.c.enqueued_at < stale_before),
        )
        .order_by(R.c.id)
        .limit(limit)
    )
    return [int(i) for i in session.scalars(query)]


def mark_enqueued(session: Session, ids: Sequence[int], now: datetime) -> None:
    session.execute(update(R).where(R.c.id.in_(ids)).values(enqueued_at=now))


def skip_passed(session: Session, ids: Sequence[int], now: datetime) -> int:
    """Reminders whose due moment has passed are not sent late: marked ``skipped``."""
    result = session.execute(
        update(R)
        .where(
            R.c.id.in_(ids), R.c.status == "pending", R.c.kind != "expired", R.c.period_end <= now
        )
        .values(status="skipped", reason=LATE)
    )
    return _count(result)


def obsolete_reason() -> Any:
    """Why a notice no longer applies to its subscription as it stands now; NULL while it does.

    Each kind is read again with the rule that recorded it, minus the window: a ``renewal``
    (``lapse``) reminder needs an ``active`` subscription with auto-renew on (off) whose current
    period still ends at the reminder's period end; a ``trial_end`` reminder a ``trialing`` one
    whose trial still ends then; an ``expired`` notice a subscription still ``expired`` for that
    period. Plan and amount are not part of the rule: the email reads them when it is sent, so
    an upgrade that keeps the period end gets its reminder with the new plan and amount.
    """
    state = literal("subscription is ") + S.c.status
    billing = R.c.kind.in_(("renewal", "lapse"))
    period_moved = S.c.current_period_end != R.c.period_end
    trial_moved = S.c.trial_ends_at.is_distinct_from(R.c.period_end)
    trial, expired = R.c.kind == "trial_end", R.c.kind == "expired"
    return case(
        (and_(billing, S.c.status != "active"), state),
        (and_(billing, period_moved), literal("period end moved")),
        (and_(R.c.kind == "renewal", ~S.c.auto_renew), literal("auto-renew turned off")),
        (and_(R.c.kind == "lapse", S.c.auto_renew), literal("auto-renew turned on")),
        (and_(trial, S.c.status != "trialing"), state),
        (and_(trial, trial_moved), literal("trial end moved")),
        (and_(expired, S.c.status != "expired"), state),
        (and_(expired, period_moved, trial_moved), literal("period end moved")),
        else_=null(),
    )


def chunk_rows(session: Session, ids: Sequence[int]) -> list[NoticeRow]:
    """The rows of a chunk still to do (email pending, or an expiry whose webhook is not out
    and that was not withheld), each with :func:`obsolete_reason` read in the same statement:
    the subscription's state as of now, not as of the query that recorded the notice."""
    query = (
        select(
            R.c.id,
            R.c.subscription_id,
            R.c.kind,
            R.c.period_end,
            R.c.offset_days,
            R.c.status,
            R.c.webhook_published_at,
            S.c.tenant_id,
            S.c.plan,
            S.c.amount,
            S.c.currency,
            S.c.timezone,
            U.c.email,
            U.c.name,
            U.c.timezone.label("user_timezone"),
            obsolete_reason().label("obsolete"),
        )
        .join(S, S.c.id == R.c.subscription_id)
        .join(U, U.c.id == S.c.user_id)
        .where(
            R.c.id.in_(ids),
            or_(
                R.c.status == "pending",
                and_(
                    R.c.kind == "expired",
                    R.c.webhook_published_at.is_(None),
                    R.c.status != "obsolete",
                ),
            ),
        )
        .order_by(R.c.id)
    )
    return [NoticeRow(**row._mapping) for row in session.execute(query)]


def set_status(
    session: Session, ids: Sequence[int], status: str, now: datetime, reason: str | None = None
) -> None:
    """Settle pending reminders ``ids`` as ``status`` (one statement an outcome and reason)."""
    if ids:
        values: dict[str, Any] = {"status": status, "reason": reason}
        if status == "sent":
            values["sent_at"] = now
        session.execute(update(R).where(R.c.id.in_(ids), R.c.status == "pending").values(**values))


def mark_published(session: Session, ids: Sequence[int], now: datetime) -> None:
    if ids:
        session.execute(update(R).where(R.c.id.in_(ids)).values(webhook_published_at=now))
