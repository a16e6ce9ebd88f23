"""The reliability core's own tasks: storing dead letters, and their retention."""

from __future__ import annotations

from typing import Any

from celery import current_app
from pydantic import BaseModel

from saas_tasks.reliability import metrics
from saas_tasks.reliability.alerts import raise_alert
from saas_tasks.reliability.deadletter import DeadLetterEntry, store
from saas_tasks.reliability.task import task


class RecordPayload(BaseModel):
    entry: DeadLetterEntry


@task(name="saas_tasks.deadletter.record", payload=RecordPayload, retry="dead_letter_store")
def record_dead_letter(payload: RecordPayload) -> dict[str, Any]:
    """Store one dead letter (idempotent by task id) and alert on the first time it is seen."""
    entry_id, created = store(payload.entry)
    if created:
        metrics.increment("dead_letters_recorded", payload.entry.task_name)
        raise_alert(payload.entry, entry_id)
    return {"id": entry_id, "created": created}


#: Dead-letter retention runs in the cleanup family, with every other retention job.
CLEANUP_TASK = "saas_tasks.cleanup.purge_dead_letters"


@task(name="saas_tasks.deadletter.purge_expired", retry="default")
def purge_expired_dead_letters() -> dict[str, str]:
    """The old name, kept working for callers and queued messages: dead letters older than
    SAAS_TASKS_DEAD_LETTER_RETENTION_DAYS are purged by ``saas_tasks.cleanup.purge_dead_letters``
    (bounded batches, overlap lock, beat at 04:30 UTC); this forwards to it by name, so the
    core does not import the cleanup family."""
    sent = current_app.send_task(CLEANUP_TASK)
    return {"forwarded_to": CLEANUP_TASK, "task_id": str(sent.id)}
