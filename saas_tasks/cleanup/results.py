"""Celery's task results, when they live in a database (``RESULT_BACKEND=db+postgresql://…``).

Celery's own ``backend.cleanup()`` is one unbounded DELETE; this trims the same rows
(``date_done`` older than ``result_expires``) in bounded batches. With the default Redis result
backend results expire by themselves (Redis TTLs), so the purge is a no-op that says so.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from saas_tasks.cleanup import queries
from saas_tasks.cleanup.batches import Limits, PurgeReport, purge_target, recorded
from saas_tasks.models import utcnow


def _result_tables(backend: Any) -> list[queries.Target]:
    targets = []
    for cls in (backend.task_cls, backend.taskset_cls):
        table = cls.__table__
        targets.append(
            queries.Target(
                table.name, table, "id", "date_done", lambda t, cutoff: t.c.date_done < cutoff
            )
        )
    return targets


def purge_task_results(
    app: Any, limits: Limits | None = None, now: datetime | None = None
) -> PurgeReport:
    """Results of ``app``'s database backend older than its ``result_expires``."""
    from celery.backends.database import DatabaseBackend

    backend = app.backend
    with recorded("purge_task_results", limits or Limits.from_settings()) as report:
        if not isinstance(backend, DatabaseBackend):
            # Celery's name for the backend (the pack's RedisResults is Celery's RedisBackend).
            celery_class = next(
                (c for c in type(backend).__mro__ if c.__module__.startswith("celery.")),
                type(backend),
            )
            report.note = (
                f"no-op: results live in {celery_class.__name__}, which expires them itself "
                "(SAAS_TASKS_RESULT_EXPIRES)"
            )
            return report
        expires = backend.expires
        if not expires:
            report.note = "no-op: result_expires is not set, results are kept"
            return report
        if not isinstance(expires, timedelta):
            expires = timedelta(seconds=float(expires))
        # Celery stores naive UTC in date_done.
        cutoff = ((now or utcnow()) - expires).replace(tzinfo=None)
        engine: Engine = backend.ResultSession().get_bind()
        for target in _result_tables(backend):
            if not purge_target(report, target, cutoff, engine):
                break
    return report
