"""Each scheduled job's status, read from the ``task_runs`` table and the beat schedule.

Runs are recorded per task name (``saas_tasks.reliability.runs``): every task named by a beat
entry is tracked, whether beat, ``saas-tasks schedules run`` or a ``.delay()`` started it.
Two entries that run the same task share its runs.

* outcome: the last run's status: succeeded, failed, skipped (the overlap lock was held),
  retrying (it failed transiently and was re-queued) or running;
* success rate: succeeded / (succeeded + failed): a skip is neither, and a retried attempt
  counts through its final outcome;
* average duration: over the succeeded and failed runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, func, select

from saas_tasks.db import session_scope
from saas_tasks.models import TaskRun
from saas_tasks.schedules.calendar import describe, next_run

FINISHED = ("succeeded", "failed")


@dataclass
class JobStatus:
    name: str
    task: str
    schedule: str
    next_run_at: datetime | None
    last_started_at: datetime | None = None
    last_finished_at: datetime | None = None
    last_duration_ms: int | None = None
    last_outcome: str | None = None
    last_error: str | None = None
    total_runs: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    success_rate: float | None = None
    average_duration_ms: float | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        return data


def job_statuses(beat_schedule: dict[str, Any], now: datetime | None = None) -> list[JobStatus]:
    """One status per beat entry, in the schedule's order."""
    now = now or datetime.now(UTC)
    tasks = sorted({str(entry["task"]) for entry in beat_schedule.values()})
    totals = _totals(tasks)
    last = _last_runs(tasks)
    statuses = []
    for name, entry in beat_schedule.items():
        task = str(entry["task"])
        status = JobStatus(
            name, task, describe(entry["schedule"]), next_run(entry["schedule"], now)
        )
        status.total_runs, status.succeeded, status.failed, status.skipped, average = totals.get(
            task, (0, 0, 0, 0, None)
        )
        status.average_duration_ms = round(average, 1) if average is not None else None
        finished = status.succeeded + status.failed
        status.success_rate = round(status.succeeded / finished, 4) if finished else None
        run = last.get(task)
        if run is not None:
            status.last_started_at = run.started_at
            status.last_finished_at = run.finished_at
            status.last_duration_ms = run.duration_ms
            status.last_outcome = run.status
            status.last_error = run.error
        statuses.append(status)
    return statuses


def _totals(tasks: list[str]) -> dict[str, tuple[int, int, int, int, float | None]]:
    def count(status: str) -> Any:
        return func.sum(case((TaskRun.status == status, 1), else_=0))

    finished_duration = case((TaskRun.status.in_(FINISHED), TaskRun.duration_ms), else_=None)
    query = (
        select(
            TaskRun.task_name,
            func.count(),
            count("succeeded"),
            count("failed"),
            count("skipped"),
            func.avg(finished_duration),
        )
        .where(TaskRun.task_name.in_(tasks))
        .group_by(TaskRun.task_name)
    )
    with session_scope() as session:
        rows = session.execute(query).all()
    return {
        name: (int(total), int(ok or 0), int(bad or 0), int(skip or 0), _float(avg))
        for name, total, ok, bad, skip, avg in rows
    }


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _last_runs(tasks: list[str]) -> dict[str, TaskRun]:
    last: dict[str, TaskRun] = {}
    with session_scope() as session:
        for task in tasks:
            run = session.execute(
                select(TaskRun)
                .where(TaskRun.task_name == task)
                .order_by(TaskRun.started_at.desc(), TaskRun.id.desc())
                .limit(1)
            ).scalar_one_or_none()
            if run is not None:
                session.expunge(run)
                last[task] = run
    return last
