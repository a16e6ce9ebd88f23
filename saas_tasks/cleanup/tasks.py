"""The cleanup tasks: thin, with stable names; the work is in :mod:`.purges` and friends.

Every purge is a singleton (the overlap lock: a second run while one works is skipped and says
so), and hands over to a follow-up run when its time budget is spent: at most half the soft
time limit, so a run never meets its time limit however much there is to delete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from saas_tasks.cleanup import purges
from saas_tasks.cleanup.batches import Limits, PurgeReport
from saas_tasks.reliability.task import ReliableTask, task

#: Seconds before a follow-up run starts: enough for this run to release its overlap lock.
FOLLOW_UP_DELAY = 2.0


class PurgeOptions(BaseModel):
    """Optional overrides of the cleanup settings for one run (an operator's manual run)."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int | None = Field(None, ge=1, le=100_000)
    time_budget: float | None = Field(None, gt=0)
    batch_pause: float | None = Field(None, ge=0, le=60)


def _run(task: ReliableTask, options: PurgeOptions, purge: Callable[[Limits], PurgeReport]) -> Any:
    soft = task.soft_time_limit or task.app.conf.task_soft_time_limit or task.hard_time_limit
    limits = Limits.from_settings(**options.model_dump())
    limits = Limits(limits.batch_size, min(limits.time_budget, soft / 2), limits.batch_pause)
    result = purge(limits).as_dict()
    if not result["finished"]:
        follow_up = task.apply_async(
            kwargs=options.model_dump(exclude_none=True), countdown=FOLLOW_UP_DELAY
        )
        result["follow_up"] = follow_up.id
    return result


def _purge_task(name: str, purge: Callable[[Limits], PurgeReport]) -> Any:
    def run(task: ReliableTask, options: PurgeOptions) -> Any:
        return _run(task, options, purge)

    run.__name__ = run.__qualname__ = name.rsplit(".", 1)[1]
    run.__doc__ = purge.__doc__
    return task(name=name, payload=PurgeOptions, singleton=True, bind=True, retry="default")(run)


purge_expired_sessions = _purge_task(
    "saas_tasks.cleanup.purge_expired_sessions", purges.purge_expired_sessions
)
purge_audit_logs = _purge_task("saas_tasks.cleanup.purge_audit_logs", purges.purge_audit_logs)
purge_idempotency_records = _purge_task(
    "saas_tasks.cleanup.purge_idempotency_records", purges.purge_idempotency_records
)
purge_dead_letters = _purge_task("saas_tasks.cleanup.purge_dead_letters", purges.purge_dead_letters)


def _old_exports(limits: Limits) -> PurgeReport:
    from saas_tasks.cleanup.exports import purge_old_exports

    return purge_old_exports(limits)


def _task_results(limits: Limits) -> PurgeReport:
    from saas_tasks import app
    from saas_tasks.cleanup.results import purge_task_results

    return purge_task_results(app, limits)


purge_old_exports = _purge_task("saas_tasks.cleanup.purge_old_exports", _old_exports)
purge_task_results = _purge_task("saas_tasks.cleanup.purge_task_results", _task_results)
