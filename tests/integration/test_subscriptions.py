"""Subscription reminders and expiry on the real database and a real SMTP server on loopback.

The clock is pinned by passing ``now`` to the plain functions and to the tasks' payloads; a
daily run is simulated by calling the same code with the next day's ``now``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from saas_tasks.db import session_scope
from saas_tasks.models import EmailLog, Subscription, SubscriptionReminder
from saas_tasks.reliability import deadletter
from saas_tasks.subscriptions import expire_lapsed, send_notices, send_renewal_reminders, service
from tests.conftest import wait_for
from tests.integration.subscription_data import (
    GRACE,
    OFFSETS,
    days,
    reminders,
    subjects,
    subscribe,
)
from tests.smtp_server import SmtpServer, email_settings, smtp_server


@pytest.fixture()
def smtp(clean_state: None) -> Iterator[SmtpServer]:
    with smtp_server() as server, email_settings(EMAIL_URL=server.url):
        yield server


@pytest.fixture()
def worker_smtp(worker: Any) -> Iterator[SmtpServer]:
    with smtp_server() as server, email_settings(EMAIL_URL=server.url):
        yield server


def run_day(day: date, chunk_size: int = 100) -> dict[str, Any]:
    """What the 09:00 beat job does, with its chunks run here rather than by a worker."""
    now = datetime.combine(day, time(9), tzinfo=UTC)
    created = service.record_reminders(now, OFFSETS)
    sent = service.dispatch(
        now, chunk_size, lambda ids: service.send_chunk(ids, now, task_id="test", ttl=60)
    )
    return {"created": created, **sent}


# --- reminders, as plain functions -----------------------------------------------------------


def test_each_offset_fires_once_per_period_over_daily_runs(smtp: SmtpServer) -> None:
    [sub] = subscribe(period_end=datetime(2026, 6, 20, 12, tzinfo=UTC))

    for day in days(date(2026, 6, 10), 12):
        run_day(day)

    assert reminders() == [(sub, "renewal", 7, "sent"), (sub, "renewal", 3, "sent"),
                           (sub, "renewal", 1, "sent")]  # fmt: skip
    assert len(smtp.received) == 3
    assert set(subjects(smtp)) == {"Your pro plan renews on Saturday 20 June 2026"}
    assert "12.50 USD" in smtp.received[0].part("text/plain")


def test_a_rerun_the_same_day_sends_nothing(smtp: SmtpServer) -> None:
    subscribe(3, period_end=datetime(2026, 6, 20, 12, tzinfo=UTC))
    first = run_day(date(2026, 6, 13))

    again = run_day(date(2026, 6, 13))

    assert first["created"] == {"7": 3, "3": 0, "1": 0} and first["enqueued"] == 3
    assert again == {"created": {"7": 0, "3": 0, "1": 0}, "enqueued": 0, "chunks": 0}
    assert len(smtp.received) == 3


def test_after_skipped_days_only_the_most_relevant_reminder_goes_out(smtp: SmtpServer) -> None:
    [late] = subscribe(period_end=datetime(2026, 6, 20, 12, tzinfo=UTC))
    [still] = subscribe(period_end=datetime(2026, 6, 22, 12, tzinfo=UTC), name="bo")
    run_day(date(2026, 6, 10))  # then the scheduler is down until the 17th

    run_day(date(2026, 6, 17))

    # 3 days before the 20th: the 3-day one only; 5 days before the 22nd: the 7-day one, late
    assert sorted(reminders()) == [(late, "renewal", 3, "sent"), (still, "renewal", 7, "sent")]
    assert sorted(smtp.recipients()) == ["bo0@example.com", "user0@example.com"]


def test_renewals_lapses_and_trial_ends_get_their_own_templates_worded_in_local_time(
    smtp: SmtpServer,
) -> None:
    end = datetime(2026, 6, 20, 13, tzinfo=UTC)
    subscribe(period_end=end, name="renew", timezone="Pacific/Auckland")
    subscribe(period_end=end, name="lapse", auto_renew=False, user_timezone="America/New_York")
    subscribe(period_end=end + timedelta(days=20), name="trial", status="trialing",
              trial_ends_at=end)  # fmt: skip
    subscribe(period_end=end, name="gone", status="expired")

    run_day(date(2026, 6, 19))

    by_recipient = {m.rcpt_tos[0]: str(m.parsed()["Subject"]) for m in smtp.received}
    assert by_recipient == {
        "renew0@example.com": "Your pro plan renews on Sunday 21 June 2026",
        "lapse0@example.com": "Your pro subscription ends on Saturday 20 June 2026",
        "trial0@example.com": "Your saas-tasks trial ends on Saturday 20 June 2026",
    }


def test_a_crash_after_the_emails_went_out_does_not_send_them_again(smtp: SmtpServer) -> None:
    subscribe(2, period_end=datetime(2026, 6, 20, 12, tzinfo=UTC))
    run_day(date(2026, 6, 13))
    with session_scope() as session:  # as if the chunk died before recording its outcome
        session.execute(update(SubscriptionReminder).values(status="pending", enqueued_at=None))

    again = run_day(date(2026, 6, 13))

    assert again["enqueued"] == 2
    assert len(smtp.received) == 2
    assert [status for *_, status in reminders()] == ["sent", "sent"]


def test_a_reminder_whose_moment_passed_before_its_chunk_ran_is_skipped(smtp: SmtpServer) -> None:
    subscribe(period_end=datetime(2026, 6, 20, 12, tzinfo=UTC))
    service.record_reminders(datetime(2026, 6, 19, 9, tzinfo=UTC), OFFSETS)

    with session_scope() as session:
        ids = list(session.scalars(select(SubscriptionReminder.id)))
    service.send_chunk(ids, datetime(2026, 6, 20, 13, tzinfo=UTC), task_id="late", ttl=60)

    assert smtp.received == []
    assert [status for *_, status in reminders()] == ["skipped"]


# --- expiry ---------------------------------------------------------------------------------


def test_expiry_is_bounded_by_batches_and_a_second_run_changes_nothing(smtp: SmtpServer) -> None:
    now = datetime(2026, 7, 1, 0, tzinfo=UTC)
    lapsed = subscribe(5, period_end=now - timedelta(days=4), auto_renew=False)
    in_grace = subscribe(period_end=now - timedelta(days=2), name="grace")
    trial = subscribe(name="trial", status="trialing", period_end=now + timedelta(days=9),
                      trial_ends_at=now - timedelta(days=5))  # fmt: skip

    assert service.expire_lapsed(now, GRACE, batch_size=2) == 6
    assert service.expire_lapsed(now, GRACE, batch_size=2) == 0

    with session_scope() as session:
        status = dict(session.execute(select(Subscription.id, Subscription.status)).all())
    assert {status[i] for i in lapsed + trial} == {"expired"}
    assert status[in_grace[0]] == "active"
    assert sorted(kind for _, kind, *_ in reminders()) == ["expired"] * 6


def test_expired_subscriptions_are_told_once_through_the_worker(worker_smtp: SmtpServer) -> None:
    now = datetime(2026, 7, 1, 0, tzinfo=UTC)
    subscribe(3, period_end=now - timedelta(days=10), status="past_due", name="late")

    first = expire_lapsed.delay(now=now.isoformat()).get(timeout=20)
    wait_for(lambda: len(worker_smtp.received) == 3, message="3 expiry emails")
    second = expire_lapsed.delay(now=now.isoformat()).get(timeout=20)

    assert (first["expired"], first["enqueued"]) == (3, 3)
    assert (second["expired"], second["enqueued"]) == (0, 0)
    assert set(subjects(worker_smtp)) == {"Your pro subscription has expired"}
    wait_for(lambda: {s for *_, s in reminders()} == {"sent"}, message="notices marked sent")
    assert len(worker_smtp.received) == 3


def test_each_expiry_publishes_one_subscription_expired_event_when_webhooks_exist(
    smtp: SmtpServer,
) -> None:
    webhooks = pytest.importorskip("saas_tasks.webhooks")
    from saas_tasks.models import WebhookDelivery

    webhooks.create_endpoint("https://hooks.example.com/in", ["subscription.expired"])
    now = datetime(2026, 7, 1, 0, tzinfo=UTC)
    ids = subscribe(2, period_end=now - timedelta(days=4), name="hook")
    service.expire_lapsed(now, GRACE, batch_size=100)
    chunk = lambda batch: service.send_chunk(batch, now, task_id="t", ttl=60)  # noqa: E731
    service.dispatch(now, 100, chunk)
    with session_scope() as session:  # as if the chunk died before recording its outcome
        session.execute(update(SubscriptionReminder).values(status="pending", enqueued_at=None))
    service.dispatch(now, 100, chunk)

    with session_scope() as session:
        events = session.scalars(select(WebhookDelivery)).all()
    assert sorted(e.payload["subscription_id"] for e in events) == ids
    assert {e.event_type for e in events} == {"subscription.expired"}
    assert len(smtp.received) == 2


# --- through the worker -----------------------------------------------------------------------


def test_the_beat_job_fans_out_in_chunks_and_each_email_arrives_once(
    worker_smtp: SmtpServer,
) -> None:
    subscribe(5, period_end=datetime(2026, 6, 20, 12, tzinfo=UTC))
    with email_settings(EMAIL_URL=worker_smtp.url, SAAS_TASKS_SUBSCRIPTION_CHUNK_SIZE="2"):
        result = send_renewal_reminders.delay(today="2026-06-13").get(timeout=20)
        wait_for(lambda: len(worker_smtp.received) == 5, message="5 reminders")
        again = send_renewal_reminders.delay(today="2026-06-13").get(timeout=20)

    assert result["created"] == {"7": 5, "3": 0, "1": 0}
    assert (result["enqueued"], result["chunks"]) == (5, 3)
    assert (again["enqueued"], again["chunks"]) == (0, 0)
    assert sorted(worker_smtp.recipients()) == [f"user{i}@example.com" for i in range(5)]


def test_a_redelivered_chunk_sends_nothing_twice(worker_smtp: SmtpServer) -> None:
    subscribe(3, period_end=datetime(2026, 6, 20, 12, tzinfo=UTC))
    now = datetime(2026, 6, 13, 9, tzinfo=UTC)
    service.record_reminders(now, OFFSETS)
    with session_scope() as session:
        ids = list(session.scalars(select(SubscriptionReminder.id)))

    kwargs = {"reminder_ids": ids, "now": now.isoformat()}
    send_notices.apply_async(kwargs=kwargs, task_id="chunk-1").get(timeout=20)
    with session_scope() as session:  # the outcome was lost with the worker
        session.execute(update(SubscriptionReminder).values(status="pending"))
    send_notices.apply_async(kwargs=kwargs, task_id="chunk-1")  # same id: its result is cached

    wait_for(lambda: {s for *_, s in reminders()} == {"sent"}, message="the redelivered chunk")
    assert len(worker_smtp.received) == 3
    with session_scope() as session:
        assert len(session.scalars(select(EmailLog)).all()) == 3


def test_an_invalid_now_is_dead_lettered_naming_the_field(worker: Any) -> None:
    send_renewal_reminders.delay(now="next tuesday")

    [entry] = wait_for(
        lambda: deadletter.list_entries(deadletter.Filters(task=send_renewal_reminders.name)),
        message="a dead letter",
    )
    assert entry.reason == "invalid_payload" and "now" in entry.exception_message
