"""The cleanup jobs' place in the beat schedule, and the routing of their names."""

from __future__ import annotations

from typing import Any

from saas_tasks.celery_config import route_by_name
from saas_tasks.settings import Settings

CLEANUP_TASKS = {
    "saas_tasks.cleanup.purge_expired_sessions",
    "saas_tasks.cleanup.purge_audit_logs",
    "saas_tasks.cleanup.purge_old_exports",
    "saas_tasks.cleanup.purge_idempotency_records",
    "saas_tasks.cleanup.purge_dead_letters",
    "saas_tasks.cleanup.purge_task_results",
}


def schedule_by_task() -> dict[str, dict[str, object]]:
    from config.beat_schedule import build_schedule

    return {e["task"]: e for e in build_schedule(Settings(disable_schedules=False)).values()}


def test_every_cleanup_task_has_a_beat_entry_on_the_maintenance_queue() -> None:
    schedule = schedule_by_task()

    assert set(schedule) >= CLEANUP_TASKS
    for name in CLEANUP_TASKS:
        assert route_by_name(name, (), {}, {}) == {"queue": "maintenance"}


def test_sessions_are_purged_hourly_and_audit_logs_daily_at_three_utc() -> None:
    schedule = schedule_by_task()
    sessions: Any = schedule["saas_tasks.cleanup.purge_expired_sessions"]["schedule"]
    audit: Any = schedule["saas_tasks.cleanup.purge_audit_logs"]["schedule"]

    assert len(sessions.hour) == 24 and len(sessions.minute) == 1
    assert audit.hour == {3} and audit.minute == {0}


def test_dead_letters_are_purged_only_by_the_cleanup_task() -> None:
    schedule = schedule_by_task()

    assert "saas_tasks.deadletter.purge_expired" not in schedule
    dead_letters: Any = schedule["saas_tasks.cleanup.purge_dead_letters"]["schedule"]
    assert dead_letters.hour == {4} and dead_letters.minute == {30}
