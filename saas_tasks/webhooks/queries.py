"""Every SQL statement of the webhooks family, in one place.

A host app that keeps its endpoints elsewhere points the pack at its own tables here. Each
statement is set-based and bound: a fan-out is one SELECT and one multi-row INSERT, a claim is
one conditional UPDATE (two workers cannot both win it), the dispatcher requeues a whole batch
of due retries in one UPDATE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from saas_tasks.models import Tenant, WebhookDelivery, WebhookEndpoint

ALL_EVENTS = "*"
OPEN = ("pending", "queued", "delivering")


def _subscribed(session: Session, event_type: str) -> ColumnElement[bool]:
    """The endpoint's JSON list of event types holds ``event_type`` or ``*``."""
    column = WebhookEndpoint.event_types
    if session.get_bind().dialect.name == "postgresql":
        wanted = (literal(event_type, String()), literal(ALL_EVENTS, String()))
        return or_(*(column.op("?")(value) for value in wanted))
    items = func.json_each(column).table_valued("value")
    return exists(
        select(literal(1)).select_from(items).where(items.c.value.in_([event_type, ALL_EVENTS]))
    )


def subscribers(session: Session, event_type: str, tenant_id: int | None) -> list[int]:
    """Active endpoints subscribed to ``event_type``: the tenant's own and the platform's."""
    scope: ColumnElement[bool] = WebhookEndpoint.tenant_id.is_(None)
    if tenant_id is not None:
        scope = or_(scope, WebhookEndpoint.tenant_id == tenant_id)
    query = (
        select(WebhookEndpoint.id)
        .where(WebhookEndpoint.active.is_(True), scope, _subscribed(session, event_type))
        .order_by(WebhookEndpoint.id)
    )
    return list(session.scalars(query))


def insert_deliveries(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """One multi-row INSERT; the new ids in the order of ``rows``."""
    if not rows:
        return []
    result = session.scalars(
        insert(WebhookDelivery).returning(WebhookDelivery.id, sort_by_parameter_order=True),
        list(rows),
    )
    return list(result)


def requeue_now(session: Session, ids: Sequence[int], now: datetime) -> None:
    """Hand deliveries whose task could not be published to the dispatcher's next run."""
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids), WebhookDelivery.status == "queued")
        .values(status="pending", next_attempt_at=now, claimed_until=None, updated_at=now)
    )


@dataclass(frozen=True)
class Claimed:
    id: int
    event_id: str
    event_type: str
    payload: Any
    attempt: int
    created_at: datetime
    endpoint_id: int
    url: str
    secret: str


def claim(session: Session, delivery_id: int, now: datetime, lease: float) -> Claimed | None:
    """Take a queued delivery of an active endpoint for one attempt, or None if not ours."""
    active = select(WebhookEndpoint.id).where(WebhookEndpoint.active.is_(True))
    row = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == "queued",
            WebhookDelivery.endpoint_id.in_(active.scalar_subquery()),
        )
        .values(
            status="delivering",
            attempt=WebhookDelivery.attempt + 1,
            claimed_until=now + timedelta(seconds=lease),
            updated_at=now,
        )
        .returning(
            WebhookDelivery.id,
            WebhookDelivery.event_id,
            WebhookDelivery.event_type,
            WebhookDelivery.payload,
            WebhookDelivery.attempt,
            WebhookDelivery.created_at,
            WebhookDelivery.endpoint_id,
        )
    ).one_or_none()
    if row is None:
        return None
    url, secret = session.execute(
        select(WebhookEndpoint.url, WebhookEndpoint.secret).where(
            WebhookEndpoint.id == row.endpoint_id
        )
    ).one()
    return Claimed(**row._asdict(), url=url, secret=secret)


def cancel_if_endpoint_inactive(session: Session, delivery_id: int, now: datetime) -> int:
    """Cancel an open delivery whose endpoint was disabled meanwhile; rows changed."""
    inactive = select(WebhookEndpoint.id).where(WebhookEndpoint.active.is_(False))
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status.in_(OPEN),
            WebhookDelivery.endpoint_id.in_(inactive.scalar_subquery()),
        )
        .values(status="cancelled", error="endpoint disabled", updated_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def record(session: Session, delivery_id: int, values: dict[str, Any]) -> None:
    """Write one attempt's outcome (only while this worker still holds the claim)."""
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "delivering")
        .values(**values)
    )


def endpoint_succeeded(session: Session, endpoint_id: int, now: datetime) -> None:
    session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.consecutive_failures != 0)
        .values(consecutive_failures=0, updated_at=now)
    )


def endpoint_failed(session: Session, endpoint_id: int, now: datetime) -> int:
    """Count one more failure in a row; the new count."""
    return int(
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id)
            .values(consecutive_failures=WebhookEndpoint.consecutive_failures + 1, updated_at=now)
            .returning(WebhookEndpoint.consecutive_failures)
        ).scalar_one()
    )


@dataclass(frozen=True)
class Disabled:
    endpoint_id: int
    url: str
    owner_email: str | None
    disabled_at: datetime


def disable_endpoint(
    session: Session, endpoint_id: int, reason: str, now: datetime
) -> Disabled | None:
    """Disable an active endpoint and cancel its open deliveries; None if already disabled."""
    row = session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.active.is_(True))
        .values(active=False, disabled_at=now, disabled_reason=reason, updated_at=now)
        .returning(WebhookEndpoint.url, WebhookEndpoint.owner_email, WebhookEndpoint.tenant_id)
    ).one_or_none()
    if row is None:
        return None
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status.in_(("pending", "queued")),
        )
        .values(status="cancelled", error="endpoint disabled", updated_at=now)
    )
    owner = row.owner_email
    if owner is None and row.tenant_id is not None:
        owner = session.scalar(select(Tenant.billing_email).where(Tenant.id == row.tenant_id))
    return Disabled(endpoint_id, row.url, owner, now)


def take_due(session: Session, now: datetime, lease: float, limit: int) -> list[int]:
    """Mark up to ``limit`` due deliveries ``queued`` and return their ids.

    Due: a retry whose time has come, or a claim whose lease ran out (its task was lost, or
    its worker died mid-POST). The lease keeps the next dispatcher run from sending them again
    while their tasks wait in the queue.
    """
    due = or_(
        and_(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now),
        and_(
            WebhookDelivery.status.in_(("queued", "delivering")),
            WebhookDelivery.claimed_until < now,
        ),
    )
    batch = (
        select(WebhookDelivery.id)
        .where(due)
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .scalar_subquery()
    )
    result = session.scalars(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(batch), due)
        .values(status="queued", claimed_until=now + timedelta(seconds=lease), updated_at=now)
        .returning(WebhookDelivery.id)
    )
    return sorted(result)
