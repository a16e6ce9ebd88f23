"""Rows for the cleanup tests: expired and live ones, inserted set-based, counted by table."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select

from saas_tasks.db import session_scope
from saas_tasks.models import (
    AuditLog,
    DeadLetter,
    IdempotencyRecord,
    SystemLog,
    Tenant,
    User,
    UserSession,
    utcnow,
)

NOW = utcnow()
DAY = timedelta(days=1)


def add_sessions(expired: int, live: int, now: datetime = NOW) -> None:
    with session_scope() as session:
        tenant = Tenant(slug="acme", name="Acme")
        session.add(tenant)
        session.flush()
        user = User(tenant_id=tenant.id, email="a@acme.test")
        session.add(user)
        session.flush()
        rows = [
            {
                "token_hash": f"t{i}",
                "user_id": user.id,
                "expires_at": now - timedelta(minutes=1 + i) if i < expired else now + DAY,
            }
            for i in range(expired + live)
        ]
        session.execute(insert(UserSession), rows)


def add_audit_logs(expired: int, live: int, age_days: int = 91, now: datetime = NOW) -> None:
    rows = [
        {"action": "old" if i < expired else "new", "created_at": now - DAY * age_days}
        if i < expired
        else {"action": "new", "created_at": now - DAY * 89}
        for i in range(expired + live)
    ]
    with session_scope() as session:
        session.execute(insert(AuditLog), rows)


def add_system_logs(expired: int, live: int, now: datetime = NOW) -> None:
    rows = [
        {
            "source": "app",
            "message": "old" if i < expired else "new",
            "created_at": now - DAY * (91 if i < expired else 1),
        }
        for i in range(expired + live)
    ]
    with session_scope() as session:
        session.execute(insert(SystemLog), rows)


def add_idempotency_records(now: datetime = NOW) -> None:
    """Three kinds: old and done (goes), recent (stays), old but still claimed (stays)."""
    rows: list[dict[str, Any]] = [
        {"key": "old-done", "created_at": now - DAY * 8, "claimed_until": now - DAY * 8},
        {"key": "old-null", "created_at": now - DAY * 9, "claimed_until": None},
        {"key": "recent", "created_at": now - DAY * 6, "claimed_until": now - DAY * 6},
        {"key": "old-claimed", "created_at": now - DAY * 8, "claimed_until": now + DAY},
    ]
    with session_scope() as session:
        session.execute(
            insert(IdempotencyRecord),
            [{"task_name": "t", "status": "succeeded", **row} for row in rows],
        )


def add_dead_letters(expired: int, live: int, now: datetime = NOW) -> None:
    rows = [
        {
            "task_id": f"id-{i}",
            "task_name": "t",
            "reason": "failure",
            "exception_type": "E",
            "last_failed_at": now - DAY * (31 if i < expired else 29),
        }
        for i in range(expired + live)
    ]
    with session_scope() as session:
        session.execute(insert(DeadLetter), rows)


def count(model: Any, *where: Any) -> int:
    with session_scope() as session:
        return int(session.execute(select(func.count()).select_from(model).where(*where)).scalar())


def cleanup_log_lines() -> list[tuple[str, str, Any]]:
    with session_scope() as session:
        rows = session.execute(
            select(SystemLog.level, SystemLog.message, SystemLog.data)
            .where(SystemLog.source == "saas_tasks.cleanup")
            .order_by(SystemLog.id)
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]
