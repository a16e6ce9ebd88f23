"""Subscriptions for the subscriptions tests, and readers of what became of their notices."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from saas_tasks.db import session_scope
from saas_tasks.models import EmailLog, Subscription, SubscriptionReminder, Tenant, User
from tests.smtp_server import SmtpServer

OFFSETS = (7, 3, 1)
GRACE = timedelta(days=3)


def subscribe(n: int = 1, **values: Any) -> list[int]:
    """``n`` subscriptions, each with its own tenant and user (``email`` gets the index)."""
    ids = []
    with session_scope() as session:
        for i in range(n):
            suffix = f"{values.get('plan', 'pro')}{i}{id(values)}"
            tenant = Tenant(slug=f"t{suffix}", name="Acme")
            session.add(tenant)
            session.flush()
            user = User(
                tenant_id=tenant.id,
                email=f"{values.get('name', 'user')}{i}@example.com",
                name=values.get("name", "Ana"),
                timezone=values.get("user_timezone"),
            )
            session.add(user)
            session.flush()
            end = values.get("period_end", datetime(2026, 6, 20, 12, tzinfo=UTC))
            sub = Subscription(
                tenant_id=tenant.id,
                user_id=user.id,
                plan=values.get("plan", "pro"),
                status=values.get("status", "active"),
                auto_renew=values.get("auto_renew", True),
                amount=values.get("amount", 1250),
                currency="usd",
                trial_ends_at=values.get("trial_ends_at"),
                current_period_start=end - timedelta(days=30),
                current_period_end=end,
                timezone=values.get("timezone"),
            )
            session.add(sub)
            session.flush()
            ids.append(sub.id)
    return ids


def reminders() -> list[tuple[int, str, int, str]]:
    with session_scope() as session:
        rows = session.execute(
            select(
                SubscriptionReminder.subscription_id,
                SubscriptionReminder.kind,
                SubscriptionReminder.offset_days,
                SubscriptionReminder.status,
            ).order_by(SubscriptionReminder.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def subjects(smtp: SmtpServer) -> list[str]:
    return [str(message.parsed()["Subject"]) for message in smtp.received]


def days(first: date, count: int) -> list[date]:
    return [first + timedelta(days=n) for n in range(count)]


def change(subscription_id: int, **values: Any) -> None:
    """What the host app does to a subscription (cancel, renew, convert), committed."""
    with session_scope() as session:
        session.execute(
            update(Subscription).where(Subscription.id == subscription_id).values(**values)
        )


def outcomes() -> dict[int, tuple[str, str, str | None]]:
    """Each subscription's last notice as (kind, status, reason)."""
    with session_scope() as session:
        rows = session.execute(
            select(
                SubscriptionReminder.subscription_id,
                SubscriptionReminder.kind,
                SubscriptionReminder.status,
                SubscriptionReminder.reason,
            ).order_by(SubscriptionReminder.id)
        )
        return {sub: (kind, status, reason) for sub, kind, status, reason in rows}


def email_log() -> dict[str, tuple[str, str | None]]:
    """The email log by recipient: (status, error)."""
    with session_scope() as session:
        rows = session.execute(select(EmailLog.recipient, EmailLog.status, EmailLog.error))
        return {recipient: (status, error) for recipient, status, error in rows}
