"""Perform a side effect once per key, and hand every duplicate the first result.

Two modes:

* **claim** (side effects outside the database, such as SMTP or HTTP): a run claims the key
  until its hard time limit, performs the effect, then records the result. A duplicate of a
  completed key returns that result without running. A concurrent duplicate (another task id
  holding a live claim) never runs the body: it raises :class:`DuplicateInProgress`, which the
  retry policy treats as transient, so it comes back later and returns the first result. A
  redelivery of the *same* task id means its previous run died (a killed worker), so it takes
  the claim over; a claim whose holder vanished otherwise expires with the time limit.
* **transactional** (side effects in the database): the record is inserted in the same
  transaction as the effect, so both commit or neither does. A concurrent duplicate waits on
  the key's unique index and then returns the committed result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from saas_tasks.db import get_engine, session_scope
from saas_tasks.exceptions import DuplicateInProgress, InvalidPayload
from saas_tasks.models import IdempotencyRecord, utcnow
from saas_tasks.redis_client import get_redis

T = TypeVar("T")
MAX_KEY_LENGTH = 255


def derive_key(task_name: str, fields: Iterable[str], values: Mapping[str, Any]) -> str:
    """``task_name:field=value|…`` from the declared business-identity fields."""
    parts = []
    for name in fields:
        if name not in values or values[name] is None:
            raise InvalidPayload(f"idempotency key field {name!r} is missing from the payload")
        parts.append(f"{name}={json.dumps(values[name], sort_keys=True, default=str)}")
    return normalise_key(task_name, "|".join(parts))


def normalise_key(task_name: str, key: str) -> str:
    full = f"{task_name}:{key}"
    if len(full) <= MAX_KEY_LENGTH:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()
    return f"{task_name[: MAX_KEY_LENGTH - 66]}:{digest}"


@dataclass(frozen=True)
class Claim:
    """The outcome of asking for a key: run now, or here is the first result."""

    acquired: bool
    result: Any = None


def _insert_ignore(values: dict[str, Any]) -> Any:
    dialect = get_engine().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return module.insert(IdempotencyRecord).values(**values).on_conflict_do_nothing()


def claim(key: str, task_name: str, task_id: str, ttl_seconds: float) -> Claim:
    """Claim ``key`` for ``task_id`` or learn its first result (see the module docstring)."""
    now = utcnow()
    until = now + timedelta(seconds=ttl_seconds)
    with session_scope() as session:
        inserted = session.execute(
            _insert_ignore(
                {
                    "key": key,
                    "task_name": task_name,
                    "status": "running",
                    "owner_task_id": task_id,
                    "claimed_until": until,
                    "created_at": now,
                }
            )
        )
        if inserted.rowcount == 1:  # type: ignore[attr-defined]
            return Claim(acquired=True)
        record = session.execute(
            select(IdempotencyRecord).where(IdempotencyRecord.key == key).with_for_update()
        ).scalar_one()
        if record.status == "succeeded":
            return Claim(acquired=False, result=record.result)
        expired = record.claimed_until is None or record.claimed_until <= now
        if record.owner_task_id == task_id or expired:
            record.owner_task_id = task_id
            record.claimed_until = until
            return Claim(acquired=True)
        raise DuplicateInProgress(
            f"idempotency key {key!r} is held by task {record.owner_task_id} until "
            f"{_iso(record.claimed_until)}; this delivery will retry and return its result"
        )


def complete(key: str, task_id: str, result: Any) -> None:
    """Record the first result; later duplicates return it."""
    with session_scope() as session:
        session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key == key)
            .values(
                status="succeeded",
                result=result,
                completed_at=utcnow(),
                owner_task_id=task_id,
                claimed_until=None,
            )
        )


def release(key: str, task_id: str) -> None:
    """Give the key up after a failure so a retry or a replay may run it again."""
    with session_scope() as session:
        session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.key == key,
                IdempotencyRecord.owner_task_id == task_id,
                IdempotencyRecord.status == "running",
            )
        )


def run_transactional(
    key: str, task_name: str, task_id: str, body: Callable[[Session], T]
) -> tuple[bool, Any]:
    """Run ``body(session)`` and record ``key`` in one transaction.

    Returns ``(ran, result)``: ``ran`` is False when the key was already done, and ``result``
    is then the first run's result.
    """
    try:
        with session_scope() as session:
            session.add(
                IdempotencyRecord(
                    key=key,
                    task_name=task_name,
                    status="running",
                    owner_task_id=task_id,
                    created_at=utcnow(),
                )
            )
            session.flush()  # takes the key's unique-index slot now, or waits for its holder
            result = body(session)
            session.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.key == key)
                .values(status="succeeded", result=result, completed_at=utcnow())
            )
            return True, result
    except IntegrityError:
        with session_scope() as session:
            record = session.get(IdempotencyRecord, key)
            if record is None or record.status != "succeeded":
                raise DuplicateInProgress(f"idempotency key {key!r} is being written") from None
            return False, record.result


def lookup(key: str) -> IdempotencyRecord | None:
    """The record for ``key`` (for host apps and tests that want to see it)."""
    with session_scope() as session:
        return session.get(IdempotencyRecord, key)


def enqueue_once(key: str, ttl_seconds: int, send: Callable[[], T]) -> T | None:
    """Call ``send()`` (which enqueues) at most once per ``key`` within ``ttl_seconds``.

    For a web app that may submit the same work twice (a double click, a retried request):
    the first call enqueues and returns ``send()``'s value; the others return None. If
    ``send()`` raises, the key is freed so that the caller can try again.
    """
    client = get_redis()
    redis_key = f"saas_tasks:enqueue-once:{key}"
    if not client.set(redis_key, "1", nx=True, ex=ttl_seconds):
        return None
    try:
        return send()
    except BaseException:
        client.delete(redis_key)
        raise


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else "?"
