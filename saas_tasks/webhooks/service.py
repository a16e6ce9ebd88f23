"""The webhooks family's work as plain functions: the tasks call these, and so do tests.

* :func:`publish_event`: record one delivery per subscribed endpoint, then enqueue them.
* :func:`attempt_delivery`: one signed POST of one delivery, and its outcome in the log.
* :func:`dispatch_due`: requeue the retries whose time has come (the beat job, every minute).

Retries live in the ``webhook_deliveries`` table (``next_attempt_at``), never in Celery
countdowns: a wait of hours held by a Redis-broker message would outlast the visibility timeout
and be redelivered again and again. A delivery is ``queued`` while its task is on the way and
``delivering`` while a worker posts it, each with a lease, so a lost task or a dead worker is
picked up again by the dispatcher, and a duplicate task finds nothing to claim.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from saas_tasks.db import session_scope
from saas_tasks.exceptions import InvalidPayload
from saas_tasks.models import WebhookEndpoint, utcnow
from saas_tasks.settings import get_settings
from saas_tasks.webhooks import client, queries
from saas_tasks.webhooks.addresses import check_url
from saas_tasks.webhooks.errors import InvalidEndpoint
from saas_tasks.webhooks.signing import generate_secret, signed_headers

log = logging.getLogger("saas_tasks.webhooks")

#: How long a queued delivery's task may wait in the broker before the dispatcher resends it.
QUEUE_LEASE = 600.0
Enqueue = Callable[[int], None]


def _delivery_lease() -> float:
    settings = get_settings()
    return settings.webhook_connect_timeout + 2 * settings.webhook_read_timeout + 60.0


def create_endpoint(
    url: str,
    event_types: list[str],
    *,
    tenant_id: int | None = None,
    owner_email: str | None = None,
    description: str = "",
    secret: str | None = None,
) -> dict[str, Any]:
    """Register a receiver; returns its id and secret (show the secret to the customer once)."""
    check_url(url)
    if not event_types or not all(isinstance(e, str) and e for e in event_types):
        raise InvalidEndpoint("event_types: give at least one event name, or ['*'] for all")
    secret = secret or generate_secret()
    with session_scope() as session:
        endpoint = WebhookEndpoint(
            url=url,
            event_types=list(event_types),
            tenant_id=tenant_id,
            owner_email=owner_email,
            description=description,
            secret=secret,
            active=True,
            consecutive_failures=0,
        )
        session.add(endpoint)
        session.flush()
        return {"id": endpoint.id, "secret": secret}


def _check_event(event_type: Any, payload: Any) -> int | None:
    if not isinstance(event_type, str) or not 0 < len(event_type) <= 128:
        raise InvalidPayload("event_type: a non-empty string of at most 128 characters")
    if not isinstance(payload, dict):
        raise InvalidPayload(f"payload: a JSON object (dict), not {type(payload).__name__}")
    try:
        json.dumps(payload)
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"payload: not JSON-serialisable: {exc}") from None
    tenant = payload.get("tenant_id")
    if tenant is not None and not isinstance(tenant, int):
        raise InvalidPayload("payload.tenant_id: an integer tenant id, when given")
    return tenant


def publish_event(event_type: str, payload: dict[str, Any], enqueue: Enqueue) -> dict[str, Any]:
    """Fan an event out to every active subscribed endpoint; ``{"event_id", "deliveries"}``.

    An endpoint with a tenant receives only events whose ``payload["tenant_id"]`` is that
    tenant; endpoints without one receive every matching event. The delivery rows commit first
    and the tasks are enqueued after, so a worker never looks for a row that is not there yet;
    if the broker is down the rows stay and the dispatcher sends them on its next run.
    """
    tenant_id = _check_event(event_type, payload)
    event_id = f"msg_{uuid.uuid4().hex}"
    now = utcnow()
    with session_scope() as session:
        endpoints = queries.subscribers(session, event_type, tenant_id)
        ids = queries.insert_deliveries(
            session,
            [
                {
                    "event_id": event_id,
                    "endpoint_id": endpoint_id,
                    "event_type": event_type,
                    "payload": payload,
                    "status": "queued",
                    "attempt": 0,
                    "next_attempt_at": now,
                    "claimed_until": now + timedelta(seconds=QUEUE_LEASE),
                    "created_at": now,
                    "updated_at": now,
                }
                for endpoint_id in endpoints
            ],
        )
    queued = _enqueue_all(ids, enqueue, now)
    log.info("webhook %s %s: %d deliveries (%d enqueued)", event_type, event_id, len(ids), queued)
    return {"event_id": event_id, "deliveries": len(ids)}


def _enqueue_all(ids: list[int], enqueue: Enqueue, now: datetime) -> int:
    for position, delivery_id in enumerate(ids):
        try:
            enqueue(delivery_id)
        except Exception as exc:  # the rows are durable; the dispatcher resends them
            log.warning("webhook deliveries not enqueued (%s); the dispatcher will send them", exc)
            with session_scope() as session:
                queries.requeue_now(session, ids[position:], now)
            return position
    return len(ids)


def body_of(event_id: str, event_type: str, created_at: datetime, payload: Any) -> bytes:
    """The JSON a receiver gets: the same bytes on every attempt (keys sorted)."""
    document = {
        "id": event_id,
        "type": event_type,
        "timestamp": created_at.isoformat().replace("+00:00", "Z"),
        "data": payload,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before the next attempt after ``attempt`` POSTs: exponential, equal jitter.

    Half of ``base * 2**(attempt-1)`` is kept and half is drawn at random, so retries spread
    out yet never collapse to zero; a receiver's Retry-After is a floor; all capped.
    """
    settings = get_settings()
    ceiling = min(settings.webhook_retry_cap, settings.webhook_retry_base * 2 ** (attempt - 1))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return float(min(delay, settings.webhook_retry_cap))


def attempt_delivery(
    delivery_id: int, notify: Callable[[queries.Disabled], None]
) -> dict[str, Any]:
    """POST one delivery once, record the outcome, schedule a retry or give up."""
    settings = get_settings()
    with session_scope() as session:
        claimed = queries.claim(session, delivery_id, utcnow(), _delivery_lease())
        if claimed is None:
            cancelled = queries.cancel_if_endpoint_inactive(session, delivery_id, utcnow())
    if claimed is None:
        reason = "endpoint disabled" if cancelled else "not queued (done, or another worker has it)"
        return {"delivery_id": delivery_id, "skipped": True, "reason": reason}
    body = body_of(claimed.event_id, claimed.event_type, claimed.created_at, claimed.payload)
    outcome = client.post(claimed.url, body, signed_headers(claimed.secret, claimed.event_id, body))
    now = utcnow()
    values: dict[str, Any] = {
        "status_code": outcome.status_code,
        "response_excerpt": outcome.excerpt,
        "duration_ms": outcome.duration_ms,
        "error": outcome.error,
        "claimed_until": None,
        "updated_at": now,
    }
    status = outcome.verdict
    if status == "retry" and claimed.attempt >= settings.webhook_max_attempts:
        status = "failed"
        values["error"] = f"{outcome.error} (gave up after {claimed.attempt} attempts)"
    disabled = None
    with session_scope() as session:
        if status == "succeeded":
            values.update(status="succeeded", delivered_at=now, next_attempt_at=None)
            queries.endpoint_succeeded(session, claimed.endpoint_id, now)
        elif status == "retry":
            wait = backoff(claimed.attempt, outcome.retry_after)
            values.update(status="pending", next_attempt_at=now + timedelta(seconds=wait))
        else:
            values.update(status="failed", next_attempt_at=None)
        queries.record(session, delivery_id, values)
        if status != "succeeded":
            failures = queries.endpoint_failed(session, claimed.endpoint_id, now)
            if failures >= settings.webhook_disable_after_failures:
                disabled = queries.disable_endpoint(
                    session,
                    claimed.endpoint_id,
                    f"{failures} failed attempts in a row; last: {values['error']}",
                    now,
                )
    log.log(
        logging.INFO if status == "succeeded" else logging.WARNING,
        "webhook delivery %d (%s) attempt %d to endpoint %d: %s%s",
        delivery_id,
        claimed.event_id,
        claimed.attempt,
        claimed.endpoint_id,
        values["status"],
        f": {values['error']}" if values["error"] else "",
    )
    if disabled is not None:
        log.warning("webhook endpoint %d disabled: %s", disabled.endpoint_id, values["error"])
        notify(disabled)
    return {
        "delivery_id": delivery_id,
        "status": values["status"],
        "attempt": claimed.attempt,
        "status_code": outcome.status_code,
        "endpoint_disabled": disabled is not None,
    }


def dispatch_due(enqueue: Enqueue) -> dict[str, int]:
    """Enqueue the deliveries whose retry time has come (and those whose lease ran out)."""
    settings = get_settings()
    now = utcnow()
    with session_scope() as session:
        ids = queries.take_due(session, now, QUEUE_LEASE, settings.webhook_dispatch_batch)
    queued = _enqueue_all(ids, enqueue, now)
    return {"due": len(ids), "enqueued": queued}
