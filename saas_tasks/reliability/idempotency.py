"""Perform a side effect once per key, and hand every duplicate the first result.

Two modes:

* **claim** (side effects outside the database, such as SMTP or HTTP): a run claims the key
  under a token of its own (:mod:`~saas_tasks.reliability.lease`): an INSERT of a new record,
  or, for a stale or released one, a compare-and-set UPDATE that names the token it saw, so
  of two contenders exactly one wins. While the run goes on, a heartbeat renews the claim's
  lease; then it records the result, or on failure marks the key ``released`` so the next
  delivery may claim it at once. Renewing, recording and releasing are all conditional on the
  token: a run whose claim was taken over records nothing and says so at ERROR level.

  A duplicate of a completed key returns that result without running. A duplicate that finds a
  live claim (whoever holds it, the same task id included: a message redelivered while its
  first run still goes on has the same id) never runs the body: it raises
  :class:`DuplicateInProgress` with ``retry_after``, the seconds until that lease could lapse,
  which the retry policy treats as transient, so it comes back later and returns the first
  result. A claim whose holder died stops being renewed and can be taken over one lease after
  its last beat (:data:`~saas_tasks.reliability.lease.LEASE_SECONDS`, or the hard time limit
  if shorter).
* **transactional** (side effects in the database): the record is inserted in the same
  transaction as the effect, so both commit or neither does. A concurrent duplicate waits on
  the key's unique index and then returns the committed result.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, Update, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from saas_tasks.db import get_engine, session_scope
from saas_tasks.exceptions import DuplicateInProgress, InvalidPayload
from saas_tasks.models import IdempotencyRecord, utcnow
from saas_tasks.redis_client import get_redis
from saas_tasks.reliability.lease import Lease

log = logging.getLogger(__name__)
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
    """The outcome of asking for a key: this run holds it (under ``token``), or here is the
    first result."""

    acquired: bool
    result: Any = None
    key: str = ""
    task_name: str = ""
    task_id: str = ""
    token: str | None = None


#: Status of a claim given back after a failure: the next delivery may claim it at once.
RELEASED = "released"
#: Contenders that lose a compare-and-set look again this many times before giving up.
_TAKEOVER_TRIES = 3


def _insert_ignore(values: dict[str, Any]) -> Any:
    dialect = get_engine().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return module.insert(IdempotencyRecord).values(**values).on_conflict_do_nothing()


def claim(key: str, task_name: str, task_id: str, lease: Lease) -> Claim:
    """Claim ``key`` under ``lease.token``, or learn its first result (see the module docstring).

    Raises :class:`DuplicateInProgress` (with ``retry_after``) while another run's claim is live.
    """
    for _ in range(_TAKEOVER_TRIES):
        now = utcnow()
        with session_scope() as session:
            token = session.execute(
                _insert_ignore(
                    {
                        "key": key,
                        "task_name": task_name,
                        "status": "running",
                        "owner_task_id": task_id,
                        "claim_token": lease.token,
                        "claimed_until": lease.until(now),
                        "created_at": now,
                    }
                ).returning(IdempotencyRecord.claim_token)
            ).scalar_one_or_none()
            if token == lease.token:
                return Claim(True, None, key, task_name, task_id, lease.token)
            record = session.get(IdempotencyRecord, key)
            if record is None:  # purged between the insert and the read: ask again
                continue
            if record.status == "succeeded":
                return Claim(False, record.result, key, task_name, task_id)
            held = record.claimed_until
            if record.status == "running" and held is not None and held > now:
                raise DuplicateInProgress(
                    f"idempotency key {key!r} is held by a run of task {record.owner_task_id} "
                    f"until {held.isoformat()}; this delivery will retry and return its result",
                    retry_after=(held - now).total_seconds() + 0.5,
                )
            # released, or a stale claim: take it over only if nobody else did since we looked
            seen = IdempotencyRecord.claim_token
            taken = session.execute(
                update(IdempotencyRecord)
                .where(
                    IdempotencyRecord.key == key,
                    IdempotencyRecord.status == record.status,
                    seen.is_(None) if record.claim_token is None else seen == record.claim_token,
                )
                .values(
                    status="running",
                    owner_task_id=task_id,
                    claim_token=lease.token,
                    claimed_until=lease.until(now),
                )
                .execution_options(synchronize_session=False)
            )
            if cast(CursorResult[Any], taken).rowcount == 1:
                if record.status == "running":
                    log.warning(
                        "%s[%s] took over the stale claim on %s (its holder stopped renewing)",
                        task_name,
                        task_id,
                        key,
                    )
                return Claim(True, None, key, task_name, task_id, lease.token)
    raise DuplicateInProgress(f"idempotency key {key!r} is contended; this delivery will retry")


def _held(held: Claim) -> Update:
    """An UPDATE of ``held``'s record, matching only while the claim is still this run's."""
    return (
        update(IdempotencyRecord)
        .where(
            IdempotencyRecord.key == held.key,
            IdempotencyRecord.claim_token == held.token,
            IdempotencyRecord.status == "running",
        )
        .execution_options(synchronize_session=False)
    )


def _write(held: Claim, **values: Any) -> bool:
    with session_scope() as session:
        result = session.execute(_held(held).values(**values))
    return cast(CursorResult[Any], result).rowcount == 1


def renew(held: Claim, lease: Lease) -> bool:
    """Extend ``held`` by one lease; False once the claim is no longer this run's."""
    return _write(held, claimed_until=lease.until(utcnow()))


def complete(held: Claim, result: Any) -> bool:
    """Record the first result, if the claim is still this run's; later duplicates return it.

    A run whose claim was taken over records nothing: the taker's outcome stands. Returns
    whether the result was recorded.
    """
    recorded = _write(
        held,
        status="succeeded",
        result=result,
        completed_at=utcnow(),
        owner_task_id=held.task_id,
        claimed_until=None,
    )
    if not recorded:
        _taken_over(held, "its result is not recorded")
    return recorded


def release(held: Claim) -> bool:
    """Give the key up after a failure (status ``released``) so a retry or a replay may run it
    again; nothing happens if the claim was taken over meanwhile."""
    released = _write(held, status=RELEASED, claimed_until=None)
    if not released:
        _taken_over(held, "nothing is released")
    return released


def _taken_over(held: Claim, outcome: str) -> None:
    log.error(
        "%s[%s] lost its claim on idempotency key %s: another run took it over "
        "(this run's heartbeat lapsed for a whole lease); %s",
        held.task_name,
        held.task_id,
        held.key,
        outcome,
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
