"""The email log's claims, run by run: a live run keeps its rows, a dead one loses them within a
lease, a stopped one gives them back at once. Plain functions on the real database and, where
something is sent, a real SMTP server on loopback."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from saas_tasks.db import session_scope
from saas_tasks.email import delivery, service, transports
from saas_tasks.email.delivery import Outgoing, Report
from saas_tasks.email.lease import LEASE_SECONDS, Lease
from saas_tasks.email.ratelimit import TokenBucket
from saas_tasks.exceptions import DuplicateInProgress, TransientError
from saas_tasks.models import EmailLog
from tests.smtp_server import smtp_server


@pytest.fixture(autouse=True)
def _clean(clean_state: None) -> None:
    """Empty tables before and after each test."""


def outgoing(count: int) -> list[Outgoing]:
    common = service.Common(template="welcome")
    return [
        service.compose(
            service.recipient_key("claims", f"c{i}@example.com"),
            f"c{i}@example.com",
            common,
            {"name": f"C{i}"},
            batch_key="claims",
        )
        for i in range(count)
    ]


def rows() -> list[EmailLog]:
    with session_scope() as session:
        return list(session.scalars(select(EmailLog).order_by(EmailLog.recipient)))


def test_a_second_run_of_the_same_task_id_leaves_a_live_runs_rows_and_waits_out_its_lease() -> None:
    items = outgoing(3)
    first, second = Lease(600), Lease(600)
    assert len(delivery.claim(items, "chunk-1", first, Report())) == 3

    report = Report()
    assert delivery.claim(items, "chunk-1", second, report) == []
    assert sorted(report.retry_later) == sorted(item.key for item in items)
    assert {row.claim_token for row in rows()} == {first.token}
    with pytest.raises(DuplicateInProgress) as raised:
        delivery.raise_for_retry_later(report)
    assert raised.value.retry_after is not None
    assert LEASE_SECONDS - 5 < raised.value.retry_after <= LEASE_SECONDS + 1


def test_a_live_runs_heartbeat_keeps_its_rows_and_a_dead_runs_rows_come_free_a_lease_later() -> (
    None
):
    items = outgoing(3)
    keys = [item.key for item in items]
    holder = Lease(1.0)  # a one-second lease, renewed every third of a second
    assert holder.seconds == 1.0
    delivery.claim(items, "chunk-1", holder, Report())
    with holder.kept(keys):
        time.sleep(2.5)  # two and a half leases: only the heartbeat keeps the rows
        assert delivery.claim(items, "chunk-1", Lease(600), Report()) == []
    # the holder is gone (no more beats): its rows are free within one lease
    time.sleep(1.2)
    taker = Lease(600)
    assert len(delivery.claim(items, "chunk-1", taker, Report())) == 3
    assert [(row.claim_token, row.attempts) for row in rows()] == [(taker.token, 2)] * 3


def test_a_run_stopped_by_a_dropped_connection_gives_back_what_it_did_not_send() -> None:
    items = outgoing(5)
    with smtp_server() as server:
        server.recorder.drop_after = 2
        lease = Lease(600)
        claimed = delivery.claim(items, "chunk-1", lease, Report())
        with pytest.raises(TransientError):
            delivery.send_claimed(
                claimed,
                transports.from_url(server.url),
                TokenBucket("claims", 0),
                "sender@example.com",
                Report(),
                lease,
                final_attempt=False,
            )
    assert [row.status for row in rows()] == ["sent"] * 2 + ["pending"] * 3
    assert [(row.claim_token, row.claimed_until) for row in rows()[2:]] == [(None, None)] * 3
    # so the retry takes the other three at once, not one lease later
    retry = delivery.claim(items, "chunk-1", Lease(600), Report())
    assert [item.to for item in retry] == [f"c{i}@example.com" for i in (2, 3, 4)]
