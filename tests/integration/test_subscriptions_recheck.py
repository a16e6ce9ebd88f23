"""A notice is re-checked against its subscription when its chunk runs, not only when the beat
job's query recorded it: on the real database, a real SMTP server on loopback and, where it
says so, the real worker.

The change "meanwhile" is made the way the host app would make it: a committed UPDATE of the
subscription, between the query that recorded the notice and the chunk that sends it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from celery.signals import task_prerun
from sqlalchemy import select, update

from saas_tasks.db import session_scope
from saas_tasks.models import SubscriptionReminder
from saas_tasks.subscriptions import send_notices, send_renewal_reminders, service
from saas_tasks.subscriptions.tasks import NOTICES
from tests.conftest import wait_for
from tests.integration.subscription_data import (
    GRACE,
    OFFSETS,
    change,
    email_log,
    outcomes,
    subjects,
    subscribe,
)
from tests.smtp_server import SmtpServer, email_settings, smtp_server

END = datetime(2026, 6, 20, 12, tzinfo=UTC)
MORNING = datetime(2026, 6, 13, 9, tzinfo=UTC)  # the 7-day reminder of END is due


@pytest.fixture()
def smtp(clean_state: None) -> Iterator[SmtpServer]:
    with smtp_server() as server, email_settings(EMAIL_URL=server.url):
        yield server


@pytest.fixture()
def worker_smtp(worker: Any) -> Iterator[SmtpServer]:
    with smtp_server() as server, email_settings(EMAIL_URL=server.url):
        yield server


def chunk_of_everything(now: datetime) -> dict[str, Any]:
    """Run one chunk of every notice recorded, here rather than on a worker."""
    with session_scope() as session:
        ids = list(session.scalars(select(SubscriptionReminder.id)))
    return service.send_chunk(ids, now, task_id="recheck", ttl=60)


# --- through the worker -----------------------------------------------------------------------


def test_a_chunk_run_by_the_worker_after_a_cancel_and_a_renewal_sends_only_the_reminder_still_due(
    worker_smtp: SmtpServer,
) -> None:
    [canceled] = subscribe(period_end=END, name="canceled")
    [renewed] = subscribe(period_end=END, name="renewed")
    [due] = subscribe(period_end=END, name="due")
    started: list[str] = []

    def meanwhile(task_id: str = "", task: Any = None, **_: Any) -> None:
        """The web app, after the beat job's query and before the chunk's send."""
        if task is None or task.name != NOTICES:
            return
        change(canceled, status="canceled")
        change(renewed, current_period_start=END, current_period_end=END + timedelta(days=30))
        started.append(task_id)

    task_prerun.connect(meanwhile, weak=False)
    try:
        beat = send_renewal_reminders.delay(today="2026-06-13").get(timeout=20)
        [chunk_id] = wait_for(lambda: started, message="the chunk to start")
        summary = send_notices.AsyncResult(chunk_id).get(timeout=20)
    finally:
        task_prerun.disconnect(meanwhile)

    assert (beat["created"], beat["chunks"]) == ({"7": 3, "3": 0, "1": 0}, 1)
    assert worker_smtp.recipients() == ["due0@example.com"]
    assert outcomes() == {
        canceled: ("renewal", "obsolete", "subscription is canceled"),
        renewed: ("renewal", "obsolete", "period end moved"),
        due: ("renewal", "sent", None),
    }
    assert email_log() == {
        "canceled0@example.com": ("skipped", "obsolete: subscription is canceled"),
        "renewed0@example.com": ("skipped", "obsolete: period end moved"),
        "due0@example.com": ("sent", None),
    }
    assert (summary["sent"], summary["skipped"], summary["obsolete"]) == (1, 0, 2)
    assert summary["obsolete_reasons"] == {"subscription is canceled": 1, "period end moved": 1}


# --- every kind of change, as plain functions -------------------------------------------------

TRIAL = {"status": "trialing", "trial_ends_at": END, "period_end": END + timedelta(days=20)}
LATER = END + timedelta(days=30)

CHANGES = {
    # name: (subscription as recorded, the change meanwhile, (status, reason) of its notice)
    "canceled": ({}, {"status": "canceled"}, ("obsolete", "subscription is canceled")),
    "past due": ({}, {"status": "past_due"}, ("obsolete", "subscription is past_due")),
    "renewed early": ({}, {"current_period_end": LATER}, ("obsolete", "period end moved")),
    "auto-renew off": ({}, {"auto_renew": False}, ("obsolete", "auto-renew turned off")),
    "auto-renew on": (
        {"auto_renew": False},
        {"auto_renew": True},
        ("obsolete", "auto-renew turned on"),
    ),
    "trial converted": (TRIAL, {"status": "active"}, ("obsolete", "subscription is active")),
    "trial extended": (TRIAL, {"trial_ends_at": LATER}, ("obsolete", "trial end moved")),
    "upgraded in place": ({}, {"plan": "team", "amount": 4900}, ("sent", None)),
    "unchanged": ({}, {}, ("sent", None)),
}


@pytest.mark.parametrize("case", list(CHANGES))
def test_a_notice_is_sent_only_if_its_subscription_still_matches_it_when_its_chunk_runs(
    smtp: SmtpServer, case: str
) -> None:
    recorded, meanwhile, expected = CHANGES[case]
    [sub] = subscribe(**{"period_end": END, **recorded})
    service.record_reminders(MORNING, OFFSETS)
    if meanwhile:
        change(sub, **meanwhile)

    summary = chunk_of_everything(MORNING)

    [(_, status, reason)] = outcomes().values()
    assert (status, reason) == expected
    [(logged, error)] = email_log().values()
    if status == "sent":
        assert (len(smtp.received), logged, summary["sent"]) == (1, "sent", 1)
    else:
        assert (smtp.received, logged, summary["obsolete"]) == ([], "skipped", 1)
        assert error == f"obsolete: {reason}"
        assert summary["obsolete_reasons"] == {reason: 1}
    if case == "upgraded in place":  # the email reads the plan and amount as they are now
        assert subjects(smtp) == ["Your team plan renews on Saturday 20 June 2026"]
        assert "49.00 USD" in smtp.received[0].part("text/plain")


def test_a_notice_an_earlier_run_already_sent_stays_sent_when_found_obsolete_on_redelivery(
    smtp: SmtpServer,
) -> None:
    [sub] = subscribe(period_end=END)
    service.record_reminders(MORNING, OFFSETS)
    chunk_of_everything(MORNING)
    with session_scope() as session:  # the chunk died before recording its outcome
        session.execute(update(SubscriptionReminder).values(status="pending"))
    change(sub, status="canceled")  # and then the customer canceled

    again = chunk_of_everything(MORNING)

    assert len(smtp.received) == 1
    assert outcomes() == {sub: ("renewal", "sent", None)}  # the customer has it: the row says so
    assert (again["already_done"], again["obsolete"], again["sent"]) == (1, 0, 0)


# --- expiry notices and their webhook event ---------------------------------------------------


def test_an_expiry_reactivated_before_its_chunk_ran_sends_neither_email_nor_event(
    smtp: SmtpServer,
) -> None:
    webhooks = pytest.importorskip("saas_tasks.webhooks")
    from saas_tasks.models import WebhookDelivery

    webhooks.create_endpoint("https://hooks.example.com/in", ["subscription.expired"])
    now = datetime.combine(END.date() + timedelta(days=5), time(0), tzinfo=UTC)
    [back] = subscribe(period_end=END, name="back", auto_renew=False)
    [gone] = subscribe(period_end=END, name="gone", auto_renew=False)
    assert service.expire_lapsed(now, GRACE, batch_size=100) == 2
    change(
        back, status="active", current_period_start=now, current_period_end=now + timedelta(days=30)
    )

    summary = chunk_of_everything(now)

    assert smtp.recipients() == ["gone0@example.com"]
    assert outcomes() == {
        back: ("expired", "obsolete", "subscription is active"),
        gone: ("expired", "sent", None),
    }
    with session_scope() as session:
        events = session.scalars(select(WebhookDelivery)).all()
    assert [event.payload["subscription_id"] for event in events] == [gone]
    assert (summary["events"], summary["obsolete"]) == (1, 1)
    assert chunk_of_everything(now)["events"] == 0  # a rerun does not publish the withheld one
