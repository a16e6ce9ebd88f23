"""``saas-tasks schedules`` and ``saas-tasks queues`` on the real worker, Redis and database:
a job fired by hand runs on the worker and its run shows in the status; a run that meets the
overlap lock shows as skipped; the queue view counts what waits and what the worker holds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner, Result

from saas_tasks.cli import cli
from saas_tasks.db import session_scope
from saas_tasks.models import TaskRun
from saas_tasks.reliability.deadletter import DeadLetterEntry, store
from saas_tasks.reliability.singleton import OverlapLock
from saas_tasks.schedules.status import job_statuses
from tests import sample_tasks
from tests.conftest import wait_for

JOB, TASK = "cleanup-expired-sessions", "saas_tasks.cleanup.purge_expired_sessions"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def runs_of(task: str) -> list[str]:
    with session_scope() as session:
        rows = session.query(TaskRun.status).filter(TaskRun.task_name == task).all()
    return [status for (status,) in rows]


def job(statuses: list[dict[str, Any]], name: str = JOB) -> dict[str, Any]:
    return next(status for status in statuses if status["name"] == name)


def test_a_job_run_by_hand_runs_on_the_worker_and_its_status_shows_the_run(worker: Any) -> None:
    result = run("schedules", "run", JOB)

    assert result.exit_code == 0, result.output
    assert f"sent {JOB}: {TASK}[" in result.output
    wait_for(lambda: runs_of(TASK) == ["succeeded"], message="the run's record")
    status = job(json.loads(run("schedules", "--json").output))
    assert status["last_outcome"] == "succeeded"
    assert status["total_runs"] == 1 and status["success_rate"] == 1.0
    assert status["last_duration_ms"] is not None and status["last_error"] is None
    assert datetime.fromisoformat(status["next_run_at"]) > datetime.now(UTC)
    assert status["schedule"] == "cron 15 * * * *"
    table = run("schedules").output
    assert JOB in table and "succeeded" in table and "100%" in table


def test_a_run_that_meets_the_overlap_lock_shows_as_skipped(worker: Any) -> None:
    lock = OverlapLock(TASK, ttl=30)
    assert lock.acquire()
    try:
        run("schedules", "run", JOB)
        wait_for(lambda: runs_of(TASK) == ["skipped"], message="the skipped run's record")
    finally:
        lock.release()

    status = job(json.loads(run("schedules", "--json").output))
    assert status["last_outcome"] == "skipped" and status["skipped"] == 1
    assert "overlap" in status["last_error"]
    assert status["success_rate"] is None


def test_status_counts_outcomes_success_rate_and_average_duration(clean_state: None) -> None:
    start = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
    rows = [("succeeded", 100, None), ("failed", 300, "ValueError: boom"), ("skipped", 0, "x")]
    with session_scope() as session:
        for minutes, (status, took, error) in enumerate(rows):
            moment = start + timedelta(minutes=minutes)
            session.add(
                TaskRun(
                    task_name=TASK,
                    task_id=f"t{minutes}",
                    status=status,
                    error=error,
                    started_at=moment,
                    finished_at=moment,
                    duration_ms=took,
                )
            )
    schedule = {JOB: {"task": TASK, "schedule": 60.0}}

    (status,) = job_statuses(schedule, now=start)

    assert (status.total_runs, status.succeeded, status.failed, status.skipped) == (3, 1, 1, 1)
    assert status.success_rate == 0.5
    assert status.average_duration_ms == 200.0
    assert status.last_outcome == "skipped"
    assert status.next_run_at == start + timedelta(seconds=60)


def test_running_an_unknown_job_names_the_known_ones(clean_state: None) -> None:
    result = CliRunner().invoke(cli, ["schedules", "run", "no-such-job"])

    assert result.exit_code == 1
    assert "no scheduled job named 'no-such-job'" in result.output and JOB in result.output


def test_queues_show_waiting_active_and_scheduled_tasks_and_pending_dead_letters(
    worker: Any,
) -> None:
    app, hostname = worker.app, worker.hostname
    store(
        DeadLetterEntry(
            task_id="dead-1",
            task_name="tests.echo",
            exception_type="ValueError",
            exception_message="boom",
        )
    )
    sample_tasks.slow.apply_async(args=(2, "held"), queue="exports")
    later = sample_tasks.echo.apply_async(args=("later",), countdown=30, queue="exports")
    app.control.cancel_consumer("billing", destination=[hostname], reply=True)
    try:
        for n in range(3):
            sample_tasks.echo.apply_async(args=(n,), queue="billing")
        wait_for(
            lambda: sample_tasks.effects().lrange("test:slow-started", 0, -1),
            message="the slow task to start",
        )
        data = json.loads(run("queues", "--json", "--timeout", "1").output)
    finally:
        app.control.add_consumer("billing", destination=[hostname], reply=True)
        app.control.revoke(later.id)

    queues = {row["queue"]: row for row in data["queues"]}
    assert queues["billing"]["waiting"] == 3
    assert queues["exports"]["active"] == 1
    assert queues["exports"]["scheduled"] == 1
    assert data["workers_answering"] >= 1
    assert data["dead_letters_pending"] == 1
