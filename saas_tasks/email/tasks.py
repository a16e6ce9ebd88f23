"""The email family's Celery tasks: validate, call :mod:`saas_tasks.email.service`, return a
small JSON result. Names are stable strings; they route to the ``email`` queue.

    send_email.delay(to="ana@example.com", template="welcome", context={"name": "Ana"})
    send_batch.delay(template="trial_ending", recipients=[{"to": ..., "context": {...}}, ...])

Idempotency lives in the email log (one row a recipient), not in the core's idempotency
records: the batch needs it per recipient, and one record per message is enough. So the tasks
read the caller's ``idempotency_key`` from the request rather than declaring ``idempotent=``.
"""

from __future__ import annotations

from typing import Any

from saas_tasks.email import service
from saas_tasks.email.service import BatchRequest, ChunkRequest, SendRequest
from saas_tasks.reliability.retry import RetryPolicy, register_policy
from saas_tasks.reliability.task import ReliableTask, task

#: SMTP servers recover within seconds to minutes; a 4xx greylisting lasts up to ~15 minutes.
register_policy(RetryPolicy("email", max_attempts=8, base=1.0, cap=900.0))


def _caller_key(current: ReliableTask) -> str | None:
    key = (current.request.kwargs or {}).get("idempotency_key")
    return None if key is None else str(key)


def _final_attempt(current: ReliableTask) -> bool:
    return int(current.request.retries or 0) >= current.spec.policy.max_retries


@task(name="saas_tasks.email.send", payload=SendRequest, retry="email", bind=True)
def send_email(current: ReliableTask, payload: SendRequest) -> dict[str, Any]:
    """One templated message, once per ``idempotency_key`` (default: this task's id)."""
    task_id = str(current.request.id or "local")
    return service.send_one(
        payload,
        key=service.send_key(_caller_key(current), task_id),
        task_id=task_id,
        ttl=current.hard_time_limit,
        final_attempt=_final_attempt(current),
    )


@task(name="saas_tasks.email.send_batch", payload=BatchRequest, retry="email", bind=True)
def send_batch(current: ReliableTask, payload: BatchRequest) -> dict[str, Any]:
    """Check the whole batch, then fan it out into ``send_chunk`` tasks of ``chunk_size``.

    Chunk task ids derive from the batch key, so a redelivered batch republishes the same
    chunks, and the email log sends each recipient once whatever runs twice.
    """
    batch_key = _caller_key(current) or str(current.request.id or "local")
    chunks = service.plan_batch(payload, batch_key)
    ids = []
    for number, chunk in enumerate(chunks):
        result = send_chunk.apply_async(
            kwargs=chunk.model_dump(mode="json"), task_id=f"{batch_key}:chunk:{number}"
        )
        ids.append(result.id)
    return {
        "batch_key": batch_key,
        "recipients": sum(len(chunk.recipients) for chunk in chunks),
        "chunks": ids,
    }


@task(name="saas_tasks.email.send_chunk", payload=ChunkRequest, retry="email", bind=True)
def send_chunk(current: ReliableTask, payload: ChunkRequest) -> dict[str, Any]:
    """One chunk of a batch over one SMTP connection; sends nothing twice when retried."""
    return service.send_chunk(
        payload,
        task_id=str(current.request.id or "local"),
        ttl=current.hard_time_limit,
        final_attempt=_final_attempt(current),
    )
