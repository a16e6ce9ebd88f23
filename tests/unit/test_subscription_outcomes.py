"""What a chunk records for each notice, from the email log's report, as a plain function:
every notice ends with a status and, unless sent, a reason; none is dropped."""

from __future__ import annotations

from datetime import UTC, datetime

from saas_tasks.email.delivery import Report
from saas_tasks.subscriptions.queries import NoticeRow
from saas_tasks.subscriptions.service import settle


def notice(row_id: int, obsolete: str | None = None) -> NoticeRow:
    return NoticeRow(
        id=row_id,
        subscription_id=row_id,
        kind="renewal",
        period_end=datetime(2026, 6, 20, 12, tzinfo=UTC),
        offset_days=7,
        status="pending",
        webhook_published_at=None,
        tenant_id=1,
        plan="pro",
        amount=1250,
        currency="usd",
        timezone=None,
        email=f"u{row_id}@example.com",
        name="Ana",
        user_timezone=None,
        obsolete=obsolete,
    )


def test_each_notice_gets_the_status_and_reason_of_what_the_email_log_did_with_it() -> None:
    by_key = {
        "sent": notice(1),
        "refused": notice(2),
        "unrenderable": notice(3),
        "withheld": notice(4, obsolete="subscription is canceled"),
        "sent before, canceled since": notice(5, obsolete="subscription is canceled"),
        "withheld before": notice(6, obsolete="period end moved"),
        "deferred": notice(7, obsolete="period end moved"),
    }
    report = Report(
        sent=["sent"],
        failed={"refused": "550 5.1.1 no such user"},
        skipped={
            "unrenderable": "context: 'plan' is undefined",
            "withheld": "obsolete: subscription is canceled",
        },
        done_before={"sent before, canceled since": "sent", "withheld before": "skipped"},
        retry_later={"deferred": "being sent by task t2"},
    )

    settled = settle(by_key, report)

    assert settled == {
        ("sent", None): [1, 5],
        ("failed", "550 5.1.1 no such user"): [2],
        ("skipped", "context: 'plan' is undefined"): [3],
        ("obsolete", "subscription is canceled"): [4],
        ("obsolete", "period end moved"): [6],
    }
    # the only notice without an outcome is the one its task retries
    assert {by_key[key].id for key in report.retry_later} == {1, 2, 3, 4, 5, 6, 7} - {
        row_id for row_ids in settled.values() for row_id in row_ids
    }
