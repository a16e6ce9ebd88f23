"""Cleanup: exactly the expired rows go, live ones stay, in bounded batches, one run at a time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import select

from saas_tasks.cleanup import purges
from saas_tasks.cleanup.batches import Limits
from saas_tasks.cleanup.results import purge_task_results
from saas_tasks.cleanup.tasks import purge_audit_logs, purge_dead_letters
from saas_tasks.db import session_scope
from saas_tasks.exceptions import InvalidPayload
from saas_tasks.models import (
    AuditLog,
    DeadLetter,
    IdempotencyRecord,
    SystemLog,
    TaskRun,
    UserSession,
)
from saas_tasks.settings import get_settings
from tests.conftest import wait_for
from tests.integration.cleanup_data import (
    NOW,
    add_audit_logs,
    add_dead_letters,
    add_idempotency_records,
    add_sessions,
    add_system_logs,
    cleanup_log_lines,
    count,
)

FAST = Limits(batch_size=7, time_budget=60)


@pytest.fixture()
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Change SAAS_TASKS_* variables for one test; the settings are read again around it."""
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


def test_expired_sessions_go_in_batches_and_live_ones_stay(clean_state: None) -> None:
    add_sessions(expired=20, live=5)

    report = purges.purge_expired_sessions(FAST, now=NOW)

    assert report.deleted == {"sessions": 20}
    assert report.batches == 3  # 7 + 7 + 6: the short batch says the table is done
    assert report.finished
    assert count(UserSession) == 5
    assert count(UserSession, UserSession.expires_at < NOW) == 0


def test_audit_and_system_logs_older_than_ninety_days_go(clean_state: None) -> None:
    add_audit_logs(expired=9, live=4)
    add_system_logs(expired=3, live=2)

    report = purges.purge_audit_logs(FAST, now=NOW)

    assert report.deleted == {"audit_logs": 9, "system_logs": 3}
    assert count(AuditLog) == 4
    assert count(AuditLog, AuditLog.action == "old") == 0
    assert count(SystemLog, SystemLog.message == "old") == 0
    assert count(SystemLog, SystemLog.message == "new") == 2


def test_more_expired_rows_at_one_age_than_a_batch_holds_still_go_a_batch_at_a_time(
    clean_state: None,
) -> None:
    # All 20 share one created_at, so no age separates one batch from the next.
    add_audit_logs(expired=20, live=3)

    report = purges.purge_audit_logs(FAST, now=NOW)

    assert report.deleted["audit_logs"] == 20
    assert report.batches >= 3  # never more than 7 rows at once
    assert count(AuditLog) == 3 and count(AuditLog, AuditLog.action == "old") == 0


def test_an_expired_session_the_app_holds_is_left_for_the_next_run_without_waiting_on_it(
    clean_state: None,
) -> None:
    from saas_tasks.db import get_engine

    engine = get_engine()
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks held by another transaction need PostgreSQL")
    add_sessions(expired=20, live=5)
    with session_scope() as session:
        held = session.execute(
            select(UserSession.id).where(UserSession.token_hash == "t3")
        ).scalar_one()

    with engine.connect() as app:  # the app, mid-request, holding one expired session
        app.execute(select(UserSession).where(UserSession.id == held).with_for_update())
        report = purges.purge_expired_sessions(FAST, now=NOW)
        app.rollback()

    assert report.finished and report.deleted == {"sessions": 19}
    assert count(UserSession, UserSession.id == held) == 1
    assert purges.purge_expired_sessions(FAST, now=NOW).deleted == {"sessions": 1}
    assert count(UserSession) == 5


def test_the_retention_is_a_setting(clean_state: None, settings_env: pytest.MonkeyPatch) -> None:
    add_audit_logs(expired=3, live=0, age_days=31)
    add_audit_logs(expired=2, live=0, age_days=29)
    settings_env.setenv("SAAS_TASKS_AUDIT_LOG_RETENTION_DAYS", "30")
    get_settings.cache_clear()

    report = purges.purge_audit_logs(FAST, now=NOW)

    assert report.deleted["audit_logs"] == 3
    assert count(AuditLog) == 2


def test_idempotency_records_go_only_when_old_and_no_longer_claimed(clean_state: None) -> None:
    add_idempotency_records()

    report = purges.purge_idempotency_records(FAST, now=NOW)

    assert report.deleted == {"idempotency_records": 2}
    with session_scope() as session:
        left = set(session.execute(select(IdempotencyRecord.key)).scalars())
    assert left == {"recent", "old-claimed"}


def test_dead_letters_past_their_retention_go(clean_state: None) -> None:
    add_dead_letters(expired=8, live=3)

    report = purges.purge_dead_letters(FAST, now=NOW)

    assert report.deleted == {"dead_letters": 8}
    assert count(DeadLetter) == 3


def test_a_run_out_of_time_budget_stops_and_the_next_run_finishes(clean_state: None) -> None:
    add_dead_letters(expired=30, live=2)
    slow = Limits(batch_size=5, time_budget=0.15, batch_pause=0.1)

    first = purges.purge_dead_letters(slow, now=NOW)
    assert not first.finished
    assert 0 < first.total < 30
    second = purges.purge_dead_letters(Limits(batch_size=5, time_budget=60), now=NOW)

    assert second.finished
    assert first.total + second.total == 30
    assert count(DeadLetter) == 2


def test_every_run_writes_one_line_to_the_system_logs(clean_state: None) -> None:
    add_sessions(expired=3, live=1)

    purges.purge_expired_sessions(FAST, now=NOW)
    purges.purge_dead_letters(FAST, now=NOW)

    lines = cleanup_log_lines()
    assert [line[1].split(":")[0] for line in lines] == [
        "purge_expired_sessions",
        "purge_dead_letters",
    ]
    assert lines[0][0] == "INFO"
    assert "deleted sessions 3 in 1 batches" in lines[0][1]
    assert lines[0][2]["deleted"] == {"sessions": 3}


def test_task_results_in_redis_make_the_purge_a_no_op_that_says_so(clean_state: None) -> None:
    from saas_tasks import app

    report = purge_task_results(app, FAST)

    assert report.total == 0
    assert report.note is not None and "RedisBackend" in report.note


def test_task_results_in_a_database_older_than_result_expires_go(
    clean_state: None, tmp_path: Path
) -> None:
    from datetime import timedelta

    results_app = Celery(
        "results",
        set_as_current=False,
        result_backend=f"db+sqlite:///{tmp_path / 'results.db'}",
        result_expires=3600,
    )
    backend: Any = results_app.backend
    for i in range(10):
        backend.store_result(f"task-{i}", {"n": i}, "SUCCESS")
    session = backend.ResultSession()
    table = backend.task_cls.__table__
    old = (NOW - timedelta(hours=2)).replace(tzinfo=None)
    session.execute(
        table.update()
        .where(table.c.task_id.in_(["task-0", "task-1", "task-2"]))
        .values(date_done=old)
    )
    session.commit()

    report = purge_task_results(results_app, Limits(batch_size=2, time_budget=60), now=NOW)

    assert report.deleted["celery_taskmeta"] == 3
    left = {row[0] for row in session.execute(select(table.c.task_id))}
    assert left == {f"task-{i}" for i in range(3, 10)}
    session.close()


def test_the_purge_task_returns_its_counts_and_records_its_run(worker: Any) -> None:
    add_audit_logs(expired=12, live=3)

    result = purge_audit_logs.delay(batch_size=5).get(timeout=30)

    assert result["deleted"] == {"audit_logs": 12, "system_logs": 0}
    assert result["batches"] == 4  # 5 + 5 + 2 audit logs, then one empty system-logs batch
    assert result["finished"] is True
    with session_scope() as session:
        runs = list(
            session.execute(
                select(TaskRun.status).where(TaskRun.task_name == purge_audit_logs.name)
            ).scalars()
        )
    assert runs == ["succeeded"]


def test_two_concurrent_runs_never_both_work(worker: Any) -> None:
    add_dead_letters(expired=40, live=1)

    first = purge_dead_letters.delay(batch_size=5, batch_pause=0.15)
    wait_for(lambda: count(DeadLetter) < 41, message="the first run's first batch")
    second = purge_dead_letters.delay(batch_size=5)

    assert second.get(timeout=30) == {"skipped": True, "reason": "overlap"}
    assert first.get(timeout=30)["deleted"] == {"dead_letters": 40}
    assert count(DeadLetter) == 1


def test_a_run_out_of_budget_hands_over_to_a_follow_up_run(worker: Any) -> None:
    add_dead_letters(expired=30, live=2)

    result = purge_dead_letters.delay(batch_size=5, time_budget=0.2, batch_pause=0.1).get(
        timeout=30
    )

    assert result["finished"] is False
    assert result["follow_up"]
    wait_for(
        lambda: any(line[2]["finished"] for line in cleanup_log_lines()),
        timeout=30,
        message="a follow-up run that finishes",
    )
    assert count(DeadLetter) == 2
    assert sum(line[2]["total"] for line in cleanup_log_lines()) == 30


def test_a_bad_option_fails_at_once_naming_the_field_and_is_dead_lettered(worker: Any) -> None:
    sent = purge_dead_letters.delay(batch_size=0)

    with pytest.raises(InvalidPayload, match="batch_size"):
        sent.get(timeout=30)
    wait_for(lambda: count(DeadLetter, DeadLetter.task_id == sent.id), message="the dead letter")


def test_the_old_dead_letter_purge_name_forwards_to_the_cleanup_task(worker: Any) -> None:
    from saas_tasks.reliability.tasks import purge_expired_dead_letters

    add_dead_letters(expired=4, live=1)

    result = purge_expired_dead_letters.delay().get(timeout=30)

    assert result["forwarded_to"] == "saas_tasks.cleanup.purge_dead_letters"
    wait_for(lambda: count(DeadLetter, DeadLetter.task_name == "t") == 1, message="the purge")
