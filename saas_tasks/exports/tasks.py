"""The exports family's Celery task: validate, call :func:`service.run_export`, return a small
JSON result. The name is a stable string; it routes to the ``exports`` queue.

    export_id = request_export("invoices", "csv", {"status": "paid"}, requested_by=user.id)

Idempotent per export id (the core's claim, and the row: a succeeded export with its file in
place returns the first result). Time limits come from ``SAAS_TASKS_EXPORT_TIME_LIMIT`` and
``SAAS_TASKS_EXPORT_SOFT_TIME_LIMIT``; the worker refuses to start if the hard one is not below
the Redis visibility timeout. A failure for good leaves status ``failed`` with a readable error
and reaches the dead-letter queue; a transient one puts the row back to ``queued`` for the retry.
"""

from __future__ import annotations

from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from saas_tasks.exports import service
from saas_tasks.exports.errors import ExportFailed
from saas_tasks.exports.service import ExportRequest
from saas_tasks.reliability.retry import RetryPolicy, register_policy
from saas_tasks.reliability.task import Idempotent, ReliableTask, task
from saas_tasks.settings import get_settings

#: Storage or database blips: a few tries over about ten minutes.
register_policy(RetryPolicy("exports", max_attempts=5, base=5.0, cap=300.0))

_settings = get_settings()


@task(
    name=service.TASK,
    payload=ExportRequest,
    retry="exports",
    idempotent=Idempotent(key=("export_id",)),
    bind=True,
    time_limit=_settings.export_time_limit,
    soft_time_limit=_settings.export_soft_time_limit,
)
def export(current: ReliableTask, payload: ExportRequest) -> dict[str, Any]:
    """Write one export file, store it, announce it; progress goes to the task state."""
    task_id = str(current.request.id or "local")

    def report(done: int, total: int | None) -> None:
        if current.request.id:
            current.update_state(state="PROGRESS", meta={"rows_done": done, "rows_total": total})

    try:
        return service.run_export(payload.export_id, task_id, report)
    except SoftTimeLimitExceeded:
        limit = current.soft_time_limit or _settings.export_soft_time_limit
        message = (
            f"the export ran past its soft time limit ({limit}s, "
            "SAAS_TASKS_EXPORT_SOFT_TIME_LIMIT): narrow the filters or raise the limit"
        )
        service.mark_failed(payload.export_id, message)
        raise ExportFailed(message) from None
    except Exception as exc:
        retrying = (
            current.spec.policy.is_transient(exc)
            and int(current.request.retries or 0) < current.spec.policy.max_retries
        )
        service.mark_failed(payload.export_id, f"{type(exc).__name__}: {exc}", final=not retrying)
        raise
