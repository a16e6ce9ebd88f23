"""Webhooks through the real worker to real HTTP receivers on loopback.

Retries go through the due-retries path only: a failed attempt leaves its delivery ``pending``
with a ``next_attempt_at``, and nothing happens until ``dispatch_due`` (the beat job) runs.
The retry base is 0 here so a retry is due at once; loopback is allowed, nothing else private.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from saas_tasks.db import session_scope
from saas_tasks.models import Tenant, WebhookDelivery, WebhookEndpoint
from saas_tasks.webhooks import (
    WebhookVerificationError,
    create_endpoint,
    dispatch_due,
    publish_event,
    verify_signature,
)
from tests.conftest import wait_for
from tests.smtp_server import email_settings, smtp_server
from tests.webhook_receiver import Receiver, Reply, webhook_receiver

SETTINGS = {
    "SAAS_TASKS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
    "SAAS_TASKS_WEBHOOK_RETRY_BASE": "0",
    "SAAS_TASKS_WEBHOOK_READ_TIMEOUT": "0.5",
    "SAAS_TASKS_WEBHOOK_CONNECT_TIMEOUT": "1",
    "SAAS_TASKS_WEBHOOK_MAX_ATTEMPTS": "5",
    "SAAS_TASKS_WEBHOOK_DISABLE_AFTER_FAILURES": "3",
}


@pytest.fixture()
def receiver(worker: Any) -> Iterator[Receiver]:
    with webhook_receiver() as server, email_settings(**SETTINGS):
        yield server


def subscribe(receiver: Receiver, events: list[str] | None = None, **extra: Any) -> int:
    created = create_endpoint(receiver.url, events or ["invoice.paid"], **extra)
    receiver.secret = created["secret"]
    return int(created["id"])


def delivery(endpoint_id: int) -> WebhookDelivery:
    with session_scope() as session:
        return session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
        ).one()


def endpoint(endpoint_id: int) -> WebhookEndpoint:
    with session_scope() as session:
        found = session.get(WebhookEndpoint, endpoint_id)
        assert found is not None
        return found


def settled(endpoint_id: int, attempt: int) -> WebhookDelivery:
    """Wait until attempt number ``attempt`` has been recorded (the claim released)."""

    def done() -> WebhookDelivery | None:
        row = delivery(endpoint_id)
        ok = row.attempt == attempt and row.status not in ("queued", "delivering")
        return row if ok else None

    return wait_for(done, message=f"attempt {attempt} to be recorded")


def test_the_receiver_verifies_the_signature_with_the_shipped_helper(receiver: Receiver) -> None:
    endpoint_id = subscribe(receiver)

    result = publish_event("invoice.paid", {"invoice_id": 42, "amount": 1999})

    row = settled(endpoint_id, 1)
    [request] = receiver.received()
    assert result == {"event_id": row.event_id, "deliveries": 1}
    assert request.verified["data"] == {"invoice_id": 42, "amount": 1999}
    assert request.verified["type"] == "invoice.paid" and request.verified["id"] == row.event_id
    assert request.headers["webhook-id"] == row.event_id
    assert request.headers["webhook-signature"].startswith("v1,")
    assert request.headers["content-type"] == "application/json"
    assert (row.status, row.status_code, row.response_excerpt) == ("succeeded", 200, "ok")
    assert row.duration_ms is not None and row.delivered_at is not None


def test_a_replayed_request_with_an_old_timestamp_is_refused_by_verify_signature(
    receiver: Receiver,
) -> None:
    subscribe(receiver)
    publish_event("invoice.paid", {"invoice_id": 1})
    [request] = wait_for(receiver.received, message="the delivery")

    later = int(request.headers["webhook-timestamp"]) + 301
    with pytest.raises(WebhookVerificationError, match="replayed or delayed"):
        verify_signature(request.body, request.headers, receiver.secret, now=later)


def test_a_flaky_receiver_gets_the_event_exactly_once_after_retries_through_the_dispatcher(
    receiver: Receiver,
) -> None:
    receiver.script(Reply(500), Reply(503, headers={"retry-after": "0"}), Reply(200))
    endpoint_id = subscribe(receiver)
    publish_event("invoice.paid", {"invoice_id": 7})

    first = settled(endpoint_id, 1)
    time.sleep(0.3)  # due at once, yet nothing retries until the dispatcher runs
    assert (first.status, first.status_code, len(receiver.received())) == ("pending", 500, 1)
    assert dispatch_due.delay().get(timeout=10) == {"due": 1, "enqueued": 1}
    assert settled(endpoint_id, 2).status_code == 503
    assert dispatch_due.delay().get(timeout=10) == {"due": 1, "enqueued": 1}
    final = settled(endpoint_id, 3)

    assert (final.status, final.status_code, final.error) == ("succeeded", 200, None)
    assert [r.replied for r in receiver.received()] == [500, 503, 200]
    assert len(receiver.accepted()) == 1
    assert {r.headers["webhook-id"] for r in receiver.received()} == {final.event_id}
    assert dispatch_due.delay().get(timeout=10) == {"due": 0, "enqueued": 0}
    assert endpoint(endpoint_id).consecutive_failures == 0


def test_a_slow_receiver_times_out_and_is_retried(receiver: Receiver) -> None:
    receiver.script(Reply(200, delay=1.5), Reply(200))
    endpoint_id = subscribe(receiver)
    publish_event("invoice.paid", {"invoice_id": 8})

    first = settled(endpoint_id, 1)
    assert first.status == "pending" and first.status_code is None
    assert "timeout" in (first.error or "")
    assert first.duration_ms is not None and first.duration_ms < 1400
    dispatch_due.delay().get(timeout=10)
    assert settled(endpoint_id, 2).status == "succeeded"


def test_a_410_gone_stops_retries_for_good(receiver: Receiver) -> None:
    receiver.script(Reply(410, body="gone"))
    endpoint_id = subscribe(receiver)
    publish_event("invoice.paid", {"invoice_id": 9})

    row = settled(endpoint_id, 1)
    assert (row.status, row.status_code, row.error) == ("failed", 410, "HTTP 410")
    assert row.next_attempt_at is None
    assert dispatch_due.delay().get(timeout=10) == {"due": 0, "enqueued": 0}
    assert len(receiver.received()) == 1


def test_an_endpoint_is_disabled_after_n_failures_and_its_owner_is_emailed(
    receiver: Receiver,
) -> None:
    receiver.script(Reply(500))
    with smtp_server() as smtp, email_settings(EMAIL_URL=smtp.url):
        endpoint_id = subscribe(receiver, owner_email="ops@customer.example")
        publish_event("invoice.paid", {"invoice_id": 10})
        for attempt in (1, 2):
            settled(endpoint_id, attempt)
            dispatch_due.delay().get(timeout=10)
        row = settled(endpoint_id, 3)
        [message] = wait_for(lambda: smtp.received, message="the disabled notice")

    disabled = endpoint(endpoint_id)
    assert (disabled.active, disabled.consecutive_failures) == (False, 3)
    assert disabled.disabled_at is not None and "3 failed attempts" in (
        disabled.disabled_reason or ""
    )
    assert (row.status, row.error) == ("cancelled", "endpoint disabled")
    assert message.rcpt_tos == ["ops@customer.example"]
    assert message.parsed()["Subject"] == f"Your webhook endpoint {receiver.url} has been disabled"
    assert publish_event("invoice.paid", {"invoice_id": 11})["deliveries"] == 0
    assert len(receiver.received()) == 3


def test_a_private_address_is_refused_without_a_request(receiver: Receiver) -> None:
    private = create_endpoint("http://10.20.30.40:8080/hooks", ["invoice.paid"])["id"]
    metadata = create_endpoint("http://169.254.169.254/latest/meta-data", ["*"])["id"]

    publish_event("invoice.paid", {"invoice_id": 12})

    for endpoint_id, why in ((private, "a private address"), (metadata, "metadata")):
        row = settled(endpoint_id, 1)
        assert row.status == "failed" and row.status_code is None
        assert why in (row.error or "")


def test_loopback_is_refused_too_unless_a_setting_allows_it(receiver: Receiver) -> None:
    endpoint_id = subscribe(receiver)

    with email_settings(SAAS_TASKS_WEBHOOK_ALLOWED_NETWORKS=""):
        publish_event("invoice.paid", {"invoice_id": 13})
        row = settled(endpoint_id, 1)

    assert row.status == "failed" and "a loopback address" in (row.error or "")
    assert receiver.received() == []


def test_events_reach_only_subscribed_active_endpoints_of_their_tenant(receiver: Receiver) -> None:
    with session_scope() as session:
        session.add_all([Tenant(id=1, slug="a", name="A"), Tenant(id=2, slug="b", name="B")])
    own = subscribe(receiver, ["invoice.paid"], tenant_id=1)
    subscribe(receiver, ["invoice.paid"], tenant_id=2)
    platform = subscribe(receiver, ["*"])
    subscribe(receiver, ["subscription.expired"])

    result = publish_event("invoice.paid", {"tenant_id": 1, "invoice_id": 14})

    with session_scope() as session:
        targets = set(
            session.scalars(
                select(WebhookDelivery.endpoint_id).where(
                    WebhookDelivery.event_id == result["event_id"]
                )
            )
        )
    assert result["deliveries"] == 2 and targets == {own, platform}


def test_a_bad_event_is_refused_with_the_field_named(receiver: Receiver) -> None:
    from saas_tasks.exceptions import InvalidPayload

    with pytest.raises(InvalidPayload, match="payload: a JSON object"):
        publish_event("invoice.paid", ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(InvalidPayload, match="event_type"):
        publish_event("", {})
