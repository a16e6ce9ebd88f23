"""The schema: the pack's own tables, and the reference SaaS schema the task families read.

Money is integer minor units (``amount`` in cents), never floats. Every timestamp is UTC.
Indexes follow the jobs that read them: cleanup by ``expires_at``/``created_at``, reminders by
``current_period_end``, reconciliation by tenant and day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Json = JSON().with_variant(JSONB(), "postgresql")
BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every database (SQLite forgets the zone; this restores it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware UTC datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# --- the pack's own tables ----------------------------------------------------------------


class DeadLetter(Base):
    """A task that failed for good, with everything needed to understand and replay it."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    task_id: Mapped[str] = mapped_column(String(255), unique=True)
    task_name: Mapped[str] = mapped_column(String(255), index=True)
    reason: Mapped[str] = mapped_column(String(32))  # failure, invalid_payload, unknown_task...
    queue: Mapped[str | None] = mapped_column(String(255))
    args: Mapped[Any] = mapped_column(Json, default=list)
    kwargs: Mapped[Any] = mapped_column(Json, default=dict)
    headers: Mapped[Any] = mapped_column(Json, default=dict)
    exception_type: Mapped[str] = mapped_column(String(255), index=True)
    exception_message: Mapped[str] = mapped_column(Text, default="")
    traceback: Mapped[str] = mapped_column(Text, default="")
    retries: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(255))
    failure_count: Mapped[int] = mapped_column(Integer, default=1)
    first_failed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_failed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, replayed
    replayed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    replay_task_id: Mapped[str | None] = mapped_column(String(255))
    replay_count: Mapped[int] = mapped_column(Integer, default=0)


class IdempotencyRecord(Base):
    """One key's claim and, once done, the first result every duplicate gets back."""

    __tablename__ = "idempotency_records"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    task_name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))  # running, succeeded, released
    owner_task_id: Mapped[str | None] = mapped_column(String(255))
    #: the token of the run that holds (or last held) the claim: see reliability/lease.py
    claim_token: Mapped[str | None] = mapped_column(String(255))
    result: Mapped[Any] = mapped_column(Json, nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class TaskRun(Base):
    """A run of a tracked (scheduled or singleton) task: what schedule status reads."""

    __tablename__ = "task_runs"
    __table_args__ = (Index("ix_task_runs_task_name_started_at", "task_name", "started_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    task_id: Mapped[str | None] = mapped_column(String(255))
    task_name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))  # running, succeeded, failed, skipped
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(255))


# --- the reference SaaS schema ------------------------------------------------------------


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    billing_email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(255), default="")
    locale: Mapped[str] = mapped_column(String(16), default="en")
    timezone: Mapped[str | None] = mapped_column(String(64))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    email_verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class UserSession(Base):
    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        Index("ix_subscriptions_status_period_end", "status", "current_period_end"),
        Index("ix_subscriptions_status_trial_end", "status", "trial_ends_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    plan: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # trialing, active, past_due, canceled, expired
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=True)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)  # minor units per period
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    trial_ends_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    current_period_start: Mapped[datetime] = mapped_column(UtcDateTime)
    current_period_end: Mapped[datetime] = mapped_column(UtcDateTime)
    timezone: Mapped[str | None] = mapped_column(String(64))
    expired_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("tenant_id", "number"),
        Index("ix_invoices_tenant_id_paid_at", "tenant_id", "paid_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id"))
    number: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))  # draft, open, paid, void, refunded
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (Index("ix_payments_tenant_id_created_at", "tenant_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))  # succeeded, failed, refunded, disputed
    provider: Mapped[str] = mapped_column(String(32), default="stripe")
    provider_charge_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class AuditLog(Base):
    __tablename__ = "audit_logs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(128))
    target: Mapped[str | None] = mapped_column(String(255))
    data: Mapped[Any] = mapped_column(Json, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)


class SystemLog(Base):
    __tablename__ = "system_logs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(128), index=True)
    level: Mapped[str] = mapped_column(String(16), default="INFO")
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[Any] = mapped_column(Json, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)


# --- task families' tables ----------------------------------------------------------------


class EmailLog(Base):
    """The email family's log: one row a (message key, recipient) and what became of it.

    It is also the per-recipient idempotency record: a row is claimed (``pending``) before its
    message goes out and marked ``sent`` once the server accepted it, so a retried chunk or a
    duplicate delivery skips every recipient already done. Status: ``pending`` (claimed, being
    sent or waiting for a retry), ``sent``, ``failed`` (refused for good by the server, or
    retries ran out), ``skipped`` (not sent: its own data was invalid). Host apps query it.
    """

    __tablename__ = "email_log"
    __table_args__ = (Index("ix_email_log_status_updated_at", "status", "updated_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    message_id: Mapped[str] = mapped_column(String(255))
    recipient: Mapped[str] = mapped_column(String(320), index=True)
    template: Mapped[str] = mapped_column(String(100))
    batch_key: Mapped[str | None] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    task_id: Mapped[str | None] = mapped_column(String(255))
    #: The delivery run holding a ``pending`` row (``host:pid:random``, see
    #: :mod:`saas_tasks.email.lease`); the last one that held it, once done.
    claim_token: Mapped[str | None] = mapped_column(String(255))
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# --- exports family -----------------------------------------------------------------------


class Export(Base):
    """One requested export: what was asked, how far it got, and where the file is.

    ``id`` is a random hex token handed to the web app at once; the task's idempotency is per
    this id (a redelivery finds ``succeeded`` and returns the stored location). Status:
    ``queued``, ``running``, ``succeeded``, ``failed``. ``rows_done``/``rows_total`` are the
    progress the web app shows; ``location`` is the storage key, never a URL (links are signed
    on demand and expire).
    """

    __tablename__ = "exports"
    __table_args__ = (Index("ix_exports_status_created_at", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(100))
    format: Mapped[str] = mapped_column(String(16))
    filters: Mapped[Any] = mapped_column(Json, default=dict)
    options: Mapped[Any] = mapped_column(Json, default=dict)
    requested_by: Mapped[str | None] = mapped_column(String(255), index=True)
    notify_email: Mapped[str | None] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    rows_done: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_total: Mapped[int | None] = mapped_column(BigInteger)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    storage: Mapped[str | None] = mapped_column(String(16))
    location: Mapped[str | None] = mapped_column(Text)
    filename: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    task_id: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# --- subscriptions family -------------------------------------------------------------------


class SubscriptionReminder(Base):
    """One notice about one subscription period: the reminders (``renewal``, ``lapse``,
    ``trial_end`` at an offset in days) and the ``expired`` notice (offset 0).

    The unique (subscription, kind, period end, offset) makes each notice happen once per
    period whatever runs twice; the row is also the outbox of the notice's email (and webhook):
    it commits before anything is enqueued, and ``status`` says whether the email went out.
    Status: ``pending`` (recorded, email not yet done), ``sent``, ``failed`` (refused for good),
    ``skipped`` (its window passed, or it could not be rendered), ``obsolete`` (when its chunk
    ran, the subscription no longer matched it: canceled, renewed, converted, reactivated).
    ``reason`` says why a notice was not sent, so an operator can tell a withheld notice from
    a lost one without reading logs.
    """

    __tablename__ = "subscription_reminders"
    __table_args__ = (
        UniqueConstraint("subscription_id", "kind", "period_end", "offset_days"),
        Index("ix_subscription_reminders_status_enqueued_at", "status", "enqueued_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # renewal, lapse, trial_end, expired
    period_end: Mapped[datetime] = mapped_column(UtcDateTime)
    offset_days: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    enqueued_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    webhook_published_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


# --- billing reconciliation ---------------------------------------------------------------


class ProviderRecord(Base):
    """One record of the payment provider (a charge, or a refund/dispute reversing one),
    imported by an idempotent upsert keyed by ``(provider, record_id)``.

    ``charge_id`` links a record to the provider's charge (its own id for a charge) and so to
    ``payments.provider_charge_id``; ``invoice_id`` is our invoice id when the provider carries
    it in the charge's metadata. ``tenant_id`` may be empty when the provider does not say;
    reconciliation then attributes the record through the payment or invoice it links to.
    """

    __tablename__ = "provider_records"
    __table_args__ = (
        UniqueConstraint("provider", "record_id"),
        Index("ix_provider_records_tenant_id_created_at", "tenant_id", "created_at"),
        Index("ix_provider_records_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    record_id: Mapped[str] = mapped_column(String(255))
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"))
    type: Mapped[str] = mapped_column(String(16))  # charge, refund, dispute
    charge_id: Mapped[str | None] = mapped_column(String(255), index=True)
    invoice_id: Mapped[int | None] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))  # succeeded, failed, refunded, disputed
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    imported_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ReconciliationRun(Base):
    """One tenant's reconciliation of one day; a rerun replaces it (unique tenant and day)."""

    __tablename__ = "reconciliation_runs"
    __table_args__ = (UniqueConstraint("tenant_id", "day"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    day: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))  # clean, discrepancies
    matched: Mapped[int] = mapped_column(Integer, default=0)
    discrepancies: Mapped[int] = mapped_column(Integer, default=0)
    counts: Mapped[Any] = mapped_column(Json, default=dict)  # kind -> count
    totals: Mapped[Any] = mapped_column(Json, default=dict)  # currency -> ours/theirs minor
    task_id: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ReconciliationDiscrepancy(Base):
    """One disagreement found by a run: our value and the provider's, as text."""

    __tablename__ = "reconciliation_discrepancies"
    __table_args__ = (Index("ix_reconciliation_discrepancies_run_id_kind", "run_id", "kind"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("reconciliation_runs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    invoice_id: Mapped[int | None] = mapped_column(BigInteger)
    provider_record_id: Mapped[str | None] = mapped_column(String(255))
    our_value: Mapped[str | None] = mapped_column(String(64))
    their_value: Mapped[str | None] = mapped_column(String(64))


# --- webhooks -----------------------------------------------------------------------------


class WebhookEndpoint(Base):
    """A customer's receiver: where events go, the secret that signs them, and its health.

    ``event_types`` is a JSON list of event names (``"*"`` for every event). ``tenant_id``
    scopes the endpoint: it receives only events whose payload carries that ``tenant_id``
    (an endpoint without a tenant is the platform's own and receives every event). After
    ``SAAS_TASKS_WEBHOOK_DISABLE_AFTER_FAILURES`` failed attempts in a row the endpoint is
    disabled (``active`` false, ``disabled_at`` set) and ``owner_email`` (else the tenant's
    billing email) is told.
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    owner_email: Mapped[str | None] = mapped_column(String(320))
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(255))
    event_types: Mapped[Any] = mapped_column(Json, default=list)
    description: Mapped[str] = mapped_column(String(255), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One event for one endpoint, and what became of it: the log support teams read.

    Status: ``pending`` (waiting for ``next_attempt_at``), ``queued`` (a deliver task is on
    its way; ``claimed_until`` bounds how long before the dispatcher sends another),
    ``delivering`` (a worker is posting it, until ``claimed_until``), ``succeeded``,
    ``failed`` (refused for good or out of attempts), ``cancelled`` (its endpoint was
    disabled). ``attempt`` counts the POSTs made; the other columns describe the last one.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_id_created_at", "endpoint_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), index=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(128))
    payload: Mapped[Any] = mapped_column(Json)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
