"""Deliver messages over one connection, once per key, recording each outcome in the email log.

The email log row is the per-recipient idempotency record:

1. **claim**: rows already ``sent``, ``failed`` or ``skipped`` are done and never sent again;
   a ``pending`` row held by another live delivery is left to it (this run retries later);
   the others are claimed for this task id until the task's hard time limit.
2. **send** over one transport connection, one token from the shared rate limit a message.
   Outcomes are written every :data:`FLUSH_EVERY` messages and whenever the run stops, so a
   connection dropped mid-chunk leaves an exact record: the retry sends only the rest.
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
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from saas_tasks.db import get_engine, session_scope
from saas_tasks.email.errors import EmailTemporaryFailure, RecipientRefused
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


def claim(
    items: Sequence[Outgoing], task_id: str, ttl_seconds: float, report: Report
) -> list[Outgoing]:
    """The items this run must send now (see the module docstring); records the skipped."""
    now = utcnow()
    until = now + timedelta(seconds=ttl_seconds)
    by_key = {item.key: item for item in items}
    mine: list[str] = []
    with session_scope() as session:
        existing = {
            row.key: row
            for row in session.scalars(
                select(EmailLog).where(EmailLog.key.in_(by_key)).with_for_update()
            )
        }
        for key, row in existing.items():
            retryable = row.status == "failed" and (row.error or "").startswith(GAVE_UP)
            if row.status in DONE and not retryable:
                report.done_before[key] = row.status
            elif row.status == "pending" and row.task_id != task_id and _live(row, now):
                report.retry_later[key] = f"being sent by task {row.task_id}"
            else:
                row.status, row.task_id, row.claimed_until = "pending", task_id, until
                row.attempts += 1
                row.updated_at = now
                mine.append(key)
        fresh = [by_key[key] for key in by_key if key not in existing]
        if fresh:
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
                        "claimed_until": until,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for item in fresh
                ],
            )
            won = set(
                session.scalars(
                    select(EmailLog.key).where(
                        EmailLog.key.in_([item.key for item in fresh]),
                        EmailLog.task_id == task_id,
                    )
                )
            )
            for item in fresh:
                if item.key not in won:
                    report.retry_later[item.key] = "claimed by a concurrent delivery"
                elif item.message is None:
                    report.skipped[item.key] = item.error or "not sendable"
                else:
                    mine.append(item.key)
    # a pre-existing pending row may now hold an item that turned out unsendable
    claimed = []
    for key in mine:
        item = by_key[key]
        if item.message is None:
            report.skipped[key] = item.error or "not sendable"
            _record([(key, "skipped", item.error)])
        else:
            claimed.append(item)
    return claimed


def _live(row: EmailLog, now: Any) -> bool:
    return row.claimed_until is not None and row.claimed_until > now


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
    *,
    final_attempt: bool,
) -> None:
    """Send ``items`` over one connection of ``transport``; record every outcome."""
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
        raise
    finally:
        _record(pending)
    if deferred and final_attempt:
        give_up(deferred, "; ".join(sorted({report.retry_later[key] for key in deferred})))


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
        raise DuplicateInProgress(message)
    raise EmailTemporaryFailure(450, message)


def lookup(keys: Sequence[str]) -> dict[str, EmailLog]:
    """The email log rows of ``keys``."""
    with session_scope() as session:
        rows = session.scalars(select(EmailLog).where(EmailLog.key.in_(keys)))
        return {row.key: row for row in rows}
