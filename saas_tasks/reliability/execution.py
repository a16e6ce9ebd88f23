"""One run of a pack task, the layers composed in one visible order:

    payload validation → overlap lock → idempotency → the function → retry decision

:func:`execute` is what every ``@task`` runs in the worker. Failures that are not retried
reach the ``task_failure`` signal and so the dead-letter queue. (Schedule run records, which
this writes through :class:`RunTracker`, are :mod:`~saas_tasks.reliability.runs`.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from celery.exceptions import Retry
from pydantic import BaseModel

from saas_tasks.reliability import idempotency, metrics
from saas_tasks.reliability.arguments import bind_call, key_for
from saas_tasks.reliability.lease import Lease
from saas_tasks.reliability.runs import RunTracker, scheduled_task_names
from saas_tasks.reliability.singleton import OverlapLock
from saas_tasks.reliability.task_base import ReliableTask, TaskSpec

# Named before this module split off from task.py: lifecycle lines keep the logger name that
# log filters may select and tests/system/test_shutdown_and_logs.py asserts.
log = logging.getLogger("saas_tasks.task")


def execute(task: ReliableTask, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    spec = task.spec
    kwargs = dict(kwargs)
    caller_key = kwargs.pop("idempotency_key", None)
    call = bind_call(task, spec, args, kwargs)
    tracked = spec.track_runs or spec.name in scheduled_task_names(task.app)
    tracker = RunTracker(spec.name, task.request.id, task.request.hostname) if tracked else None
    if spec.singleton is None:
        return _guarded(task, spec, call, args, kwargs, caller_key, tracker)
    lock = OverlapLock(
        spec.singleton.name or spec.name,
        ttl=max(spec.singleton.ttl or 0.0, task.hard_time_limit),
    )
    if not lock.acquire():
        held = lock.held_for() or 0.0
        log.warning(
            "%s[%s] skipped: the previous run still holds the lock (%.0fs left)",
            spec.name,
            task.request.id,
            held,
        )
        if tracker:
            tracker.skipped(f"overlap: previous run holds the lock for {held:.0f}s more")
        metrics.increment("scheduled_runs_skipped", spec.name)
        return {"skipped": True, "reason": "overlap"}
    try:
        return _guarded(task, spec, call, args, kwargs, caller_key, tracker)
    finally:
        lock.release()


def _guarded(
    task: ReliableTask,
    spec: TaskSpec,
    call: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    caller_key: str | None,
    tracker: RunTracker | None,
) -> Any:
    started = time.monotonic()
    if tracker:
        tracker.start()
    try:
        result = _idempotent_call(task, spec, call, kwargs, caller_key)
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        try:
            _retry_or_raise(task, spec, exc)
        except Retry:
            if tracker:
                tracker.finish("retrying", started, error=error)
            raise
        if tracker:
            tracker.finish("failed", started, error=error)
        raise
    if tracker:
        tracker.finish("succeeded", started)
    return result


def _idempotent_call(
    task: ReliableTask,
    spec: TaskSpec,
    call: Callable[..., Any],
    kwargs: dict[str, Any],
    caller_key: str | None,
) -> Any:
    idem = spec.idempotent
    if idem is None:
        return _jsonable(call())
    key = key_for(spec, kwargs, caller_key)
    task_id = task.request.id or "local"
    if idem.transactional:
        ran, result = idempotency.run_transactional(
            key, spec.name, task_id, lambda session: _jsonable(call(session=session))
        )
        if not ran:
            log.info("%s[%s] duplicate of %s: returning the first result", spec.name, task_id, key)
        return result
    lease = Lease(task.hard_time_limit, idem.lease)
    claim = idempotency.claim(key, spec.name, task_id, lease)
    if not claim.acquired:
        log.info("%s[%s] duplicate of %s: returning the first result", spec.name, task_id, key)
        return claim.result
    try:
        with lease.heartbeat(lambda: idempotency.renew(claim, lease), spec.name):
            result = _jsonable(call())
    except BaseException:
        idempotency.release(claim)
        raise
    idempotency.complete(claim, result)
    return result


def _retry_or_raise(task: ReliableTask, spec: TaskSpec, exc: BaseException) -> None:
    policy = spec.policy
    if not policy.is_transient(exc):
        return
    retries = task.request.retries or 0
    if retries >= policy.max_retries:
        log.error(
            "%s[%s] gave up after %d attempts: %s: %s",
            spec.name,
            task.request.id,
            retries + 1,
            type(exc).__name__,
            exc,
        )
        metrics.increment("retries_exhausted", spec.name)
        return
    countdown = policy.countdown(retries, exc)
    log.warning(
        "%s[%s] retry %d/%d in %.1fs: %s: %s",
        spec.name,
        task.request.id,
        retries + 1,
        policy.max_retries,
        countdown,
        type(exc).__name__,
        exc,
    )
    raise task.retry(exc=exc, countdown=countdown, max_retries=policy.max_retries)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value
