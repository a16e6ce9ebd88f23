"""The exports family's SQL, in one place: the shipped datasets over the reference schema.

A host app whose tables differ re-registers a dataset of the same name (see
:mod:`saas_tasks.exports.datasets`), or edits this module. Every select orders by primary key
so an export is repeatable, and never exposes secrets (session token hashes stay out).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from saas_tasks.exports.datasets import AnySelect, Filter, register_bundle, register_dataset
from saas_tasks.models import AuditLog, Invoice, Payment, Subscription, User, UserSession


def _users() -> AnySelect:
    return select(
        User.id,
        User.tenant_id,
        User.email,
        User.name,
        User.locale,
        User.timezone,
        User.is_active,
        User.email_verified_at,
        User.created_at,
    ).order_by(User.id)


def _invoices() -> AnySelect:
    return select(
        Invoice.id,
        Invoice.tenant_id,
        Invoice.user_id,
        Invoice.subscription_id,
        Invoice.number,
        Invoice.amount,
        Invoice.currency,
        Invoice.status,
        Invoice.issued_at,
        Invoice.paid_at,
        Invoice.created_at,
    ).order_by(Invoice.id)


def _payments() -> AnySelect:
    return (
        select(
            Payment.id,
            Payment.tenant_id,
            Payment.invoice_id,
            Payment.amount,
            Payment.currency,
            Payment.status,
            Payment.provider,
            Payment.provider_charge_id,
            Payment.created_at,
        )
        .outerjoin(Invoice, Invoice.id == Payment.invoice_id)
        .order_by(Payment.id)
    )


def _subscriptions() -> AnySelect:
    return select(
        Subscription.id,
        Subscription.tenant_id,
        Subscription.user_id,
        Subscription.plan,
        Subscription.status,
        Subscription.auto_renew,
        Subscription.amount,
        Subscription.currency,
        Subscription.trial_ends_at,
        Subscription.current_period_start,
        Subscription.current_period_end,
        Subscription.created_at,
    ).order_by(Subscription.id)


def _audit_logs() -> AnySelect:
    return select(
        AuditLog.id,
        AuditLog.tenant_id,
        AuditLog.actor_id,
        AuditLog.action,
        AuditLog.target,
        AuditLog.data,
        AuditLog.created_at,
    ).order_by(AuditLog.id)


def _sessions() -> AnySelect:
    return select(
        UserSession.id, UserSession.user_id, UserSession.created_at, UserSession.expires_at
    ).order_by(UserSession.id)


def _common(created: Any, tenant: Any) -> dict[str, Filter]:
    return {"tenant_id": Filter(tenant, int), "created_at": Filter(created, datetime)}


users = register_dataset(
    "users",
    _users,
    {
        **_common(User.created_at, User.tenant_id),
        "id": Filter(User.id, int),
        "email": Filter(User.email, str),
        "is_active": Filter(User.is_active, bool, frozenset({"eq"})),
    },
)
invoices = register_dataset(
    "invoices",
    _invoices,
    {
        **_common(Invoice.created_at, Invoice.tenant_id),
        "user_id": Filter(Invoice.user_id, int),
        "status": Filter(Invoice.status, str),
        "currency": Filter(Invoice.currency, str),
        "issued_at": Filter(Invoice.issued_at, datetime),
        "paid_at": Filter(Invoice.paid_at, datetime),
    },
)
payments = register_dataset(
    "payments",
    _payments,
    {
        **_common(Payment.created_at, Payment.tenant_id),
        "user_id": Filter(Invoice.user_id, int),
        "invoice_id": Filter(Payment.invoice_id, int),
        "status": Filter(Payment.status, str),
        "currency": Filter(Payment.currency, str),
    },
)
subscriptions = register_dataset(
    "subscriptions",
    _subscriptions,
    {
        **_common(Subscription.created_at, Subscription.tenant_id),
        "user_id": Filter(Subscription.user_id, int),
        "status": Filter(Subscription.status, str),
        "plan": Filter(Subscription.plan, str),
    },
)
audit_logs = register_dataset(
    "audit_logs",
    _audit_logs,
    {
        **_common(AuditLog.created_at, AuditLog.tenant_id),
        "actor_id": Filter(AuditLog.actor_id, int),
        "action": Filter(AuditLog.action, str),
    },
)

#: Everything held about one user, for data-access requests: a zip of one file a table.
_one_user = {"user_id": Filter(User.id, int, frozenset({"eq"}))}
user_data = register_bundle(
    "user_data",
    {
        "user": register_dataset("user_data.user", _users, {"user_id": _one_user["user_id"]}),
        "sessions": register_dataset(
            "user_data.sessions", _sessions, {"user_id": Filter(UserSession.user_id, int)}
        ),
        "subscriptions": register_dataset(
            "user_data.subscriptions",
            _subscriptions,
            {"user_id": Filter(Subscription.user_id, int)},
        ),
        "invoices": register_dataset(
            "user_data.invoices", _invoices, {"user_id": Filter(Invoice.user_id, int)}
        ),
        "payments": register_dataset(
            "user_data.payments", _payments, {"user_id": Filter(Invoice.user_id, int)}
        ),
        "audit_logs": register_dataset(
            "user_data.audit_logs", _audit_logs, {"user_id": Filter(AuditLog.actor_id, int)}
        ),
    },
    _one_user,
    required=("user_id",),
)
