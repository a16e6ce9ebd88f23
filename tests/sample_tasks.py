"""Tasks a host app might write, declared with the pack's decorators; the tests run them on
real workers. Their side effects land in the real Redis (``test:*`` keys) or database."""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from pydantic import BaseModel, Field
from sqlalchemy import Text
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator

from saas_tasks import (
    Idempotent,
    RetryPolicy,
    Singleton,
    TransientError,
    idempotent,
    register_policy,
    retry,
    task,
)
from saas_tasks.models import AuditLog

register_policy(RetryPolicy("test_fast", max_attempts=4, base=0.3, cap=5.0, jitter=False))


def effects() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


def note(kind: str, value: Any) -> None:
    effects().rpush(f"test:{kind}", str(value))


@task(name="tests.flaky", retry="test_fast")
def flaky(key: str, failures: int) -> dict[str, Any]:
    """Fails with a transient error ``failures`` times, then succeeds."""
    client = effects()
    attempt = int(client.incr(f"test:attempts:{key}"))
    client.rpush(f"test:attempt-times:{key}", repr(time.time()))
    if attempt <= failures:
        raise TransientError(f"flaky {key}: attempt {attempt} fails on purpose")
    return {"key": key, "attempts": attempt}


@task(name="tests.broken", retry="test_fast")
def broken(reason: str) -> None:
    """A programming error: never retried."""
    effects().incr("test:attempts:broken")
    raise ValueError(f"broken on purpose: {reason}")


class ChargePayload(BaseModel):
    invoice_id: int
    amount: int = Field(gt=0)
    currency: str = Field(min_length=3, max_length=3)
    api_token: str | None = None


@task(name="tests.charge", payload=ChargePayload)
@retry("test_fast")
@idempotent("invoice_id")
def charge(payload: ChargePayload) -> dict[str, Any]:
    """A side effect outside the database (think: a payment API), once per invoice."""
    note("charges", payload.invoice_id)
    return {"invoice_id": payload.invoice_id, "charged": payload.amount, "at": time.time()}


@task(name="tests.audit", idempotent=Idempotent(key=("ref",), transactional=True))
def audit(ref: str, session: Session) -> dict[str, Any]:
    """A side effect in the database: committed with its idempotency record."""
    row = AuditLog(action="test.audit", target=ref)
    session.add(row)
    session.flush()
    return {"ref": ref, "audit_id": row.id}


@task(name="tests.by_caller_key", idempotent=True)
def by_caller_key(value: str) -> dict[str, Any]:
    note("caller-key", value)
    return {"value": value}


@task(name="tests.exclusive", singleton=Singleton(ttl=3))
def exclusive(seconds: float, marker: str) -> dict[str, Any]:
    """A scheduled job that must never overlap itself."""
    note("exclusive-started", marker)
    time.sleep(seconds)
    note("exclusive-finished", marker)
    return {"marker": marker}


@task(name="tests.slow", time_limit=20, soft_time_limit=15)
def slow(seconds: float, marker: str) -> dict[str, Any]:
    """Runs long enough for a test to kill the worker under it."""
    note("slow-started", f"{marker}:{os.getpid()}")
    time.sleep(seconds)
    note("slow-finished", marker)
    return {"marker": marker}


@task(name="tests.echo")
def echo(value: Any) -> Any:
    return value


@task(name="tests.slow_once", retry="test_fast")
@idempotent("ref")
def slow_once(ref: str, seconds: float) -> dict[str, Any]:
    """An idempotent side effect that takes a while, so that duplicates can overlap it."""
    note("slow-once", ref)
    time.sleep(seconds)
    return {"ref": ref, "finished": time.time()}


register_policy(RetryPolicy("test_patient", max_attempts=12, base=0.3, cap=5.0, jitter=False))


@task(name="tests.slow_leased", retry="test_patient")
@idempotent("ref", lease=1.0)
def slow_leased(ref: str, seconds: float) -> dict[str, Any]:
    """An idempotent effect that outlasts its one-second lease several times over: only its
    heartbeat keeps the claim, and duplicates retry (``test_patient``) until it is done."""
    note("slow-leased", ref)
    time.sleep(seconds)
    return {"ref": ref, "finished": time.time()}


@task(name="tests.flaky_once", retry="test_fast")
@idempotent("ref")
def flaky_once(ref: str) -> dict[str, Any]:
    """An idempotent effect whose first attempt fails with a transient error after the claim
    is taken: the claim must be released for the retry to claim the key again."""
    attempt = int(effects().incr(f"test:attempts:{ref}"))
    if attempt == 1:
        raise TransientError(f"flaky_once {ref}: the first attempt fails on purpose")
    note("flaky-once", ref)
    return {"ref": ref, "attempts": attempt}


@task(name="tests.mark")
def mark(kind: str, value: Any = "") -> int:
    """Appends ``value`` to the Redis list ``test:<kind>``: a visible trace that the task ran
    (beat ticks, poison messages that must never run)."""
    return int(effects().rpush(f"test:{kind}", str(value)))


@task(name="tests.size")
def size(blob: str) -> int:
    """Takes a large payload and returns its length (the result stays small)."""
    return len(blob)


@task(name="tests.fixable")
def fixable(key: str, password: str | None = None) -> dict[str, Any]:
    """Fails for good (a non-transient error, no retry) until the cause is fixed: the Redis
    flag ``test:fixed:<key>``. A replay after the fix must then succeed."""
    client = effects()
    client.incr(f"test:attempts:fixable:{key}")
    if not client.exists(f"test:fixed:{key}"):
        raise ValueError(f"fixable {key}: not fixed yet")
    note("fixable-ran", key)
    return {"key": key, "fixed": True}


# --- exports: a host app's own dataset, slowed down so a worker can be killed mid-export ---


class _SlowText(TypeDecorator[str]):
    """Reads like Text, but takes ``SAAS_TASKS_TEST_SLOW_ROW_MS`` per value (default 0)."""

    impl = Text
    cache_ok = True

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        time.sleep(float(os.environ.get("SAAS_TASKS_TEST_SLOW_ROW_MS", "0")) / 1000)
        return value


def _slow_audit_logs() -> Any:
    from sqlalchemy import select, type_coerce

    return select(
        AuditLog.id, type_coerce(AuditLog.action, _SlowText).label("action"), AuditLog.created_at
    ).order_by(AuditLog.id)


def _register_export_datasets() -> None:
    from saas_tasks.exports import Filter, register_dataset

    register_dataset("test_slow_audit", _slow_audit_logs, {"action": Filter(AuditLog.action, str)})


_register_export_datasets()
