"""The webhooks family's Celery tasks; names are stable and route to the ``webhooks`` queue.

    saas_tasks.webhooks.deliver       one attempt of one delivery (enqueued by publish_event
                                      and by the dispatcher)
    saas_tasks.webhooks.dispatch_due  beat, every minute: requeue the retries that are due

``deliver`` never retries through Celery: a failed attempt is written to the deliveries table
with its ``next_attempt_at``, and ``dispatch_due`` sends it again when that time comes. Only
the database being briefly unreachable retries the task itself (policy ``default``).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, Field

from saas_tasks.reliability.task import task
from saas_tasks.webhooks import service
from saas_tasks.webhooks.queries import Disabled

log = logging.getLogger("saas_tasks.webhooks")


class DeliverPayload(BaseModel):
    delivery_id: int = Field(ge=1)


def _enqueue(delivery_id: int) -> None:
    deliver.apply_async(kwargs={"delivery_id": delivery_id})


def _notify_owner(disabled: Disabled) -> None:
    """Email the endpoint's owner, once per disabling (the key holds the moment)."""
    from saas_tasks.email.tasks import send_email

    if not disabled.owner_email:
        log.warning("webhook endpoint %d disabled; no owner email to tell", disabled.endpoint_id)
        return
    send_email.apply_async(
        kwargs={
            "to": disabled.owner_email,
            "template": "webhook_endpoint_disabled",
            "context": {
                "endpoint_id": disabled.endpoint_id,
                "endpoint_url": disabled.url,
                "disabled_at": disabled.disabled_at.strftime("%Y-%m-%d %H:%M UTC"),
            },
            "idempotency_key": (
                f"webhook-endpoint-disabled:{disabled.endpoint_id}:"
                f"{disabled.disabled_at.isoformat()}"
            ),
        }
    )


@task(
    name="saas_tasks.webhooks.deliver",
    payload=DeliverPayload,
    retry="default",
    time_limit=120,
    soft_time_limit=100,
)
def deliver(payload: DeliverPayload) -> dict[str, Any]:
    """POST one delivery once; the outcome (and any retry time) goes to the delivery log."""
    return service.attempt_delivery(payload.delivery_id, _notify_owner)


@task(
    name="saas_tasks.webhooks.dispatch_due",
    singleton=True,
    retry="default",
    time_limit=120,
    soft_time_limit=100,
)
def dispatch_due() -> dict[str, int]:
    """Requeue due retries and lost claims (overlap-locked: one dispatcher at a time)."""
    return service.dispatch_due(_enqueue)


def publish_event(event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Send ``event_type`` with ``payload`` to every subscribed endpoint (see the README).

    Returns ``{"event_id": "msg_...", "deliveries": n}``. Call it from the web app or from a
    task; it writes the delivery rows and enqueues one ``deliver`` task per endpoint.
    """
    return service.publish_event(event_type, payload, _enqueue)
