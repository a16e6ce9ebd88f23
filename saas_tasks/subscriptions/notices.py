"""What a reminder row becomes: its key, its email and, for an expiry, its webhook event.

The key is the reminder's business identity (subscription, kind, period end, offset). The
email goes out under ``send_key(key)``, the very key ``send_email.delay(...,
idempotency_key=key)`` would use, so the email log sends it once whoever sends it. A notice
that no longer applies when its chunk runs goes through the same log as an unsendable item:
recorded ``skipped`` with its reason, or, if an earlier run of the chunk already sent it,
reported as sent rather than claimed withheld.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from datetime import UTC
from typing import Any

from saas_tasks.email.delivery import Outgoing
from saas_tasks.email.message import message_id_for
from saas_tasks.email.service import Common, compose, send_key
from saas_tasks.settings import get_settings
from saas_tasks.subscriptions.queries import NoticeRow
from saas_tasks.subscriptions.windows import local_date, money, zone

log = logging.getLogger("saas_tasks.subscriptions")

TEMPLATES = {
    "renewal": "subscription_renewal_reminder",
    "lapse": "subscription_will_lapse",
    "trial_end": "trial_ending",
    "expired": "subscription_expired",
}
EXPIRED_EVENT = "subscription.expired"
#: Prefix of the email log error of a withheld notice.
OBSOLETE = "obsolete: "


def reminder_key(subscription_id: int, kind: str, period_end: Any, offset: int) -> str:
    when = period_end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"subscription:{subscription_id}:{kind}:{when}:{offset}"


def row_key(row: NoticeRow) -> str:
    return reminder_key(row.subscription_id, row.kind, row.period_end, row.offset_days)


def context(row: NoticeRow) -> dict[str, Any]:
    """The template variables; dates in the customer's zone, amounts from minor units."""
    url = get_settings().subscription_manage_url
    when = local_date(row.period_end, zone(row.timezone, row.user_timezone))
    common: dict[str, Any] = {"name": row.name or row.email.split("@")[0], "plan": row.plan}
    if row.kind == "renewal":
        return {
            **common,
            "renews_on": when,
            "amount": money(row.amount, row.currency),
            "manage_url": url,
        }
    if row.kind == "trial_end":
        return {**common, "trial_ends_on": when, "upgrade_url": url}
    if row.kind == "lapse":
        return {**common, "lapses_on": when, "renew_url": url}
    return {**common, "expired_on": when, "renew_url": url}


def email_for(row: NoticeRow) -> Outgoing:
    """The row's message, or an unsendable item (recorded as skipped) if it cannot render."""
    return compose(
        send_key(row_key(row), ""),
        row.email,
        Common(template=TEMPLATES[row.kind]),
        context(row),
        strict=False,
    )


def withheld(row: NoticeRow) -> Outgoing:
    """The unsendable item of a notice that no longer applies (``row.obsolete`` says why).

    Not rendered: nothing about it is sent. It goes through the email log all the same, so the
    log shows the key as ``skipped`` with the reason, and a chunk redelivered after its emails
    went out learns from the log that this one was in fact sent.
    """
    key = send_key(row_key(row), "")
    sender = get_settings().email_from
    error = OBSOLETE + (row.obsolete or "no longer applies")
    return Outgoing(key, row.email, TEMPLATES[row.kind], message_id_for(key, sender), None, error)


def event_payload(row: NoticeRow) -> dict[str, Any]:
    """The ``subscription.expired`` event; ``id`` lets receivers drop a redelivered event."""
    return {
        "id": row_key(row),
        "subscription_id": row.subscription_id,
        "tenant_id": row.tenant_id,
        "plan": row.plan,
        "period_end": row.period_end.astimezone(UTC).isoformat(),
    }


def publisher() -> Any:
    """``saas_tasks.webhooks.publish_event`` once the webhooks family exists, else ``None``.

    Imported lazily: the reminders must run whether or not that family is installed.
    """
    try:
        module = importlib.import_module("saas_tasks.webhooks")
    except ImportError:
        return None
    return getattr(module, "publish_event", None)


def publish_expired(rows: list[NoticeRow], record: Callable[[list[int]], None]) -> int:
    """Publish each expiry's event and ``record`` the ids published, even when one fails
    midway (the retry then publishes only the rest); none without the webhooks family."""
    publish = publisher()
    if publish is None or not rows:
        if rows:
            log.info("subscriptions: webhooks not installed, %d expiry events not sent", len(rows))
        return 0
    done: list[int] = []
    try:
        for row in rows:
            publish(EXPIRED_EVENT, event_payload(row))
            done.append(row.id)
    finally:
        if done:
            record(done)
    return len(done)
