"""Deliver messages over one connection, once per key, recording each outcome in the email log.

The email log row is the per-recipient idempotency record:

1. **claim**: rows already ``sent``, ``failed`` or ``skipped`` are done and never sent again;
   a ``pending`` row held by another live run is left to it (this run retries once that
   claim would have lapsed); the others are claimed for this run, under its own token and a
   short lease that a heartbeat keeps alive while the run lives (:mod:`.lease` says why:
   two runs of one chunk message share a task id, and a dead run must not hold its rows
   for long). The claim is one conditional UPDATE, so two runs never both take a row, on
   PostgreSQL or SQLite alike.
2. **send** over one transport connection, one token from the shared rate limit a message.
   Outcomes are written every :data:`FLUSH_EVERY` messages and whenever the run stops, so a
   connection dropped mid-chunk leaves an exact record; the rows it did not send are released
   at once, and the retry sends only those.
3. a 5xx for one recipient marks that row ``failed`` and the chunk goes on; a 4xx leaves it
   ``pending`` and the chunk retries it after the others; a dropped or refused connection ends
   the run (transient: the task retries).

The window that remains is the at-least-once one: a worker killed between the server's 250 and
the next flush resends those few messages on redelivery, with the same Message-ID.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from saas_tasks.db import get_engine, session_scope
from saas_tasks.email.errors import EmailTemporaryFailure, RecipientRefused
from saas_tasks.email.lease import Lease
from saas_tasks.email.ratelimit import TokenBucket
from saas_tasks.email.transports import Envelope, Transport
from saas_tasks.exceptions import DuplicateInProgress
from saas_tasks.models import EmailLog, utcnow

log = logging.getLogger("saas_tasks.email")

FLUSH_EVERY = 50
DONE = frozenset({"sent", "failed", "skipped"})
#: Prefix of the error of a row whose retries ran out: a later replay may send it again.
GAVE_UP = "gave up: "


@dataclass(frozen=True)
class Outgoing:
    """One built message for one recipient, under its idempotency key."""

    key: str
    to: str
    template: str
    message_id: str
    message: bytes | None  # None: not sendable, ``error`` says why (recorded as skipped)
    error: str | None = None
    batch_key: str | None = None


@dataclass
class Report:
    """What a delivery run did, by key."""

    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    done_before: dict[str, str] = field(default_factory=dict)  # key -> status of the first run
    retry_later: dict[str, str] = field(default_factory=dict)  # key -> transient reason
    errors: dict[str, Exception] = field(default_factory=dict)  # key -> the refusal itself
    held_until: datetime | None = None  # when the last claim of another run would lapse

    def summary(self) -> dict[str, Any]:
        return {
            "sent": len(self.sent),
            "failed": len(self.failed),
            "skipped": len(self.skipped),
            "already_done": len(self.done_before),
            "retry_later": len(self.retry_later),
        }


def _insert_ignore() -> Any:
    """INSERT … ON CONFLICT (key) DO NOTHING, executed with many rows (one compiled form)."""
    dialect: Any = postgresql if get_engine().dialect.name == "postgresql" else sqlite
    return dialect.insert(EmailLog).on_conflict_do_nothing(index_elements=["key"])


def claim(items: Sequence[Outgoing], task_id: str, lease: Lease, report: Report) -> list[Outgoing]:
    """The items this run must send now (see the module docstring); records the skipped."""
    now = utcnow()
    until = lease.until(now)
    by_key = {item.key: item for item in items}
    keys = list(by_key)
    with session_scope() as session:
        # new keys: created claimed by this run (a concurrent insert of a key wins or loses whole)
        session.execute(
            _insert_ignore(),
            [
                {
                    "key": item.key,
                    "message_id": item.message_id,
                    "recipient": item.to,
                    "template": item.template,
                    "batch_key": item.batch_key,
                    "status": "pending" if item.message is not None else "skipped",
                    "error": item.error,
                    "attempts": 1 if item.message is not None else 0,
                    "task_id": task_id,
                    "claim_token": lease.token,
                    "claimed_until": until,
                    "created_at": now,
                    "updated_at": now,
                }
                for item in items
            ],
        )
        # known keys: taken only if unfinished and unheld, or given up by an earlier task
        session.execute(
            update(EmailLog)
            .where(
                EmailLog.key.in_(keys),
                or_(
                    (EmailLog.status == "pending")
                    & or_(EmailLog.claimed_until.is_(None), EmailLog.claimed_until <= now),
                    (EmailLog.status == "failed") & EmailLog.error.startswith(GAVE_UP),
                ),
            )
            .values(
                status="pending",
                task_id=task_id,
                claim_token=lease.token,
                claimed_until=until,
                attempts=EmailLog.attempts + 1,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        rows = session.execute(
            select(
                EmailLog.key,
                EmailLog.status,
                EmailLog.claim_token,
                EmailLog.task_id,
                EmailLog.claimed_until,
            ).where(EmailLog.key.in_(keys))
        ).all()
    held = set()
    for key, status, token, holder, held_until in rows:
        if token == lease.token and status == "pending":
            held.add(key)
        elif token == lease.token:  # created just now, as not sendable
            report.skipped[key] = by_key[key].error or "not sendable"
        elif status in DONE:
            report.done_before[key] = status
        else:
            report.retry_later[key] = f"being sent by task {holder}"
            if held_until is not None:
                report.held_until = max(held_until, report.held_until or held_until)
    mine = [by_key[key] for key in keys if key in held]
    # a pre-existing pending row may now hold an item that turned out unsendable
    unsendable = [item for item in mine if item.message is None]
    for item in unsendable:
        report.skipped[item.key] = item.error or "not sendable"
    _record((item.key, "skipped", item.error) for item in unsendable)
    return [item for item in mine if item.message is not None]


def _record(outcomes: Iterable[tuple[str, str, str | None]]) -> None:
    """Write ``(key, status, error)`` outcomes in one statement."""
    now = utcnow()
    rows = [
        {
            "b_key": key,
            "b_status": status,
            "b_error": error,
            "b_sent": now if status == "sent" else None,
            "b_now": now,
        }
        for key, status, error in outcomes
    ]
    if not rows:
        return
    table = cast(Table, EmailLog.__table__)
    statement = (
        update(table)
        .where(table.c.key == bindparam("b_key"))
        .values(
            status=bindparam("b_status"),
            error=bindparam("b_error"),
            sent_at=bindparam("b_sent"),
            updated_at=bindparam("b_now"),
            claimed_until=None,
        )
    )
    with session_scope() as session:
        session.connection().execute(statement, rows)


def send_claimed(
    items: Sequence[Outgoing],
    transport: Transport,
    bucket: TokenBucket,
    sender: str,
    report: Report,
    lease: Lease,
    *,
    final_attempt: bool,
) -> None:
    """Send ``items`` over one connection of ``transport``; record every outcome, and give
    back what was not sent (or give it up, on the last attempt)."""
    pending: list[tuple[str, str, str | None]] = []
    deferred: list[str] = []  # 4xx in this run (not the keys other deliveries hold)
    last_flush = time.monotonic()
    done = 0
    try:
        with transport:
            for item in items:
                assert item.message is not None  # claim() keeps only sendable items
                bucket.take()
                try:
                    transport.send(Envelope(sender, item.to, item.message_id), item.message)
                except RecipientRefused as exc:
                    log.warning("email %s to %s failed for good: %s", item.key, item.to, exc)
                    report.failed[item.key] = str(exc)
                    report.errors[item.key] = exc
                    pending.append((item.key, "failed", str(exc)))
                except EmailTemporaryFailure as exc:
                    log.warning("email %s to %s deferred: %s", item.key, item.to, exc)
                    report.retry_later[item.key] = str(exc)
                    deferred.append(item.key)
                else:
                    report.sent.append(item.key)
                    pending.append((item.key, "sent", None))
                done += 1
                if len(pending) >= FLUSH_EVERY or time.monotonic() - last_flush > 1.0:
                    _record(pending)
                    pending, last_flush = [], time.monotonic()
    except BaseException as exc:
        _record(pending)
        pending = []
        unsent = [item.key for item in items[done:]] + deferred
        log.warning(
            "email delivery stopped after %d of %d messages (%s: %s); %d left for the retry",
            done,
            len(items),
            type(exc).__name__,
            exc,
            len(unsent),
        )
        if final_attempt:
            give_up(unsent, f"{type(exc).__name__}: {exc}")
        else:
            _release(lease, unsent)
        raise
    finally:
        _record(pending)
    if deferred and final_attempt:
        give_up(deferred, "; ".join(sorted({report.retry_later[key] for key in deferred})))
    elif deferred:
        _release(lease, deferred)


def _release(lease: Lease, keys: Sequence[str]) -> None:
    """Give back ``keys`` for the retry; if that fails too, their lease lapses soon anyway."""
    try:
        lease.release(keys)
    except Exception as exc:
        log.warning(
            "email claims not released (%s: %s); they lapse with the lease", type(exc).__name__, exc
        )


def give_up(keys: Sequence[str], reason: str) -> None:
    """Mark ``keys`` failed after the last attempt (a replay of the task may still send them)."""
    _record((key, "failed", GAVE_UP + reason) for key in keys)


def raise_for_retry_later(report: Report) -> None:
    """After a run, make the task retry the recipients that were deferred."""
    if not report.retry_later:
        return
    reasons = sorted(set(report.retry_later.values()))
    message = f"{len(report.retry_later)} recipients to retry: {'; '.join(reasons)[:500]}"
    if all(reason.startswith(("being sent", "claimed by")) for reason in reasons):
        # come back when the other run's claim would lapse: sooner cannot change anything
        held = report.held_until
        after = (held - utcnow()).total_seconds() + 0.5 if held is not None else None
        raise DuplicateInProgress(message, retry_after=after)
    raise EmailTemporaryFailure(450, message)


def lookup(keys: Sequence[str]) -> dict[str, EmailLog]:
    """The email log rows of ``keys``."""
    with session_scope() as session:
        rows = session.scalars(select(EmailLog).where(EmailLog.key.in_(keys)))
        return {row.key: row for row in rows}
