"""Records of tracked runs (scheduled and singleton jobs): what schedule status reads.

A failure to write a run record is logged and never fails the job itself: bookkeeping must not
turn a good run into a dead letter.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import update

from saas_tasks.db import session_scope
from saas_tasks.models import TaskRun, utcnow

log = logging.getLogger(__name__)


def scheduled_task_names(app: Any) -> frozenset[str]:
    """Task names of the app's beat entries: their runs are recorded whatever the task
    declares, so that every scheduled job has a status (``saas-tasks schedules``)."""
    cached: frozenset[str] | None = getattr(app, "_saas_tasks_scheduled", None)
    if cached is None:
        entries = (app.conf.beat_schedule or {}).values()
        cached = frozenset(str(e["task"]) for e in entries if isinstance(e, dict) and "task" in e)
        app._saas_tasks_scheduled = cached
    return cached


class RunTracker:
    def __init__(self, task_name: str, task_id: str | None, worker: str | None) -> None:
        self.task_name = task_name
        self.task_id = task_id
        self.worker = worker
        self.run_id: int | None = None

    def start(self) -> None:
        try:
            with session_scope() as session:
                run = TaskRun(
                    task_id=self.task_id,
                    task_name=self.task_name,
                    status="running",
                    worker=self.worker,
                )
                session.add(run)
                session.flush()
                self.run_id = run.id
        except Exception:
            log.exception("%s[%s]: could not record the run's start", self.task_name, self.task_id)

    def finish(self, status: str, started: float, error: str | None = None) -> None:
        if self.run_id is None:
            return
        try:
            with session_scope() as session:
                session.execute(
                    update(TaskRun)
                    .where(TaskRun.id == self.run_id)
                    .values(
                        status=status,
                        finished_at=utcnow(),
                        error=error,
                        duration_ms=int((time.monotonic() - started) * 1000),
                    )
                )
        except Exception:
            log.exception("%s[%s]: could not record the run's end", self.task_name, self.task_id)

    def skipped(self, reason: str) -> None:
        try:
            with session_scope() as session:
                now = utcnow()
                session.add(
                    TaskRun(
                        task_id=self.task_id,
                        task_name=self.task_name,
                        status="skipped",
                        started_at=now,
                        finished_at=now,
                        duration_ms=0,
                        error=reason,
                        worker=self.worker,
                    )
                )
        except Exception:
            log.exception("%s[%s]: could not record the skip", self.task_name, self.task_id)
