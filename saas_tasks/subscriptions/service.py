"""The subscriptions family's work as plain functions: the tasks call these, and so do tests.

* :func:`record_reminders`: one set-based insert a reminder offset (the reminder rows commit
  before any email is enqueued; their unique key makes each reminder once per period).
* :func:`expire_lapsed`: expire lapsed subscriptions in bounded batches, each batch recording
  its ``expired`` notices in the same transaction.
* :func:`dispatch`: after commit, enqueue the pending notices in chunks (one task a chunk).
* :func:`send_chunk`: re-check a chunk's notices against their subscriptions, then send the
  ones that still apply over one connection, once per reminder key; then the
  ``subscription.expired`` events.

Why nothing is sent twice or lost: a notice is a committed row before anything is enqueued; a
crash before its chunk is enqueued leaves it ``pending`` and the next run (or the redelivered
beat task) enqueues it; a chunk that runs twice finds its emails done in the email log under
the reminder's key. ``now`` is always passed in, so tests pin the clock without freezing it.

Why nothing stale is sent: a chunk may run minutes or hours after the query that recorded its
notices (a queue backlog, retries, a worker down overnight). So the chunk reads each notice's
subscription again, in the statement that loads the chunk (:func:`queries.obsolete_reason`),
and withholds a notice whose subscription was canceled, renewed, converted from its trial,
switched auto-renew, or reactivated meanwhile: status ``obsolete`` with the reason, the email
log ``skipped`` with the same reason, no expiry event. The window left is the chunk's own
sending time: a change committed after that statement and before a given message leaves the
SMTP connection is not seen (at most ``chunk size / rate limit`` seconds). Closing it would
mean holding the subscription rows locked through an SMTP conversation, which would stall the
web app's own cancel or renewal; we do not.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from saas_tasks.db import session_scope
from saas_tasks.email import delivery
from saas_tasks.email.service import deliver
from saas_tasks.subscriptions import notices, queries
from saas_tasks.subscriptions.queries import NoticeRow
from saas_tasks.subscriptions.windows import reminder_windows, utc_today

log = logging.getLogger("saas_tasks.subscriptions")

#: A pending notice enqueued longer ago than this is enqueued again (its chunk was lost).
REDISPATCH_AFTER = timedelta(hours=1)
#: At most this many notices are enqueued by one run; the next run takes the rest.
DISPATCH_LIMIT = 200_000
#: A bound on the batches of one expiry run (the next night goes on).
MAX_EXPIRE_BATCHES = 1_000

Publish = Callable[[list[int]], Any]
#: (status, reason) of the notices one statement settles.
Outcome = tuple[str, str | None]


def record_reminders(now: datetime, offsets: Sequence[int]) -> dict[str, int]:
    """Record today's reminders, one statement an offset, in one transaction."""
    today = utc_today(now)
    created: dict[str, int] = {}
    with session_scope() as session:
        for window in reminder_windows(today, offsets):
            created[str(window.offset)] = queries.record_due_reminders(
                session, window.offset, window.start, window.end, now
            )
    log.info("subscriptions: reminders for %s recorded: %s", today.isoformat(), created)
    return created


def expire_lapsed(now: datetime, grace: timedelta, batch_size: int) -> int:
    """Expire subscriptions whose period ended before ``now - grace``; return how many."""
    cutoff = now - grace
    total = 0
    for _ in range(MAX_EXPIRE_BATCHES):
        with session_scope() as session:
            ids = queries.lapsed_ids(session, cutoff, batch_size)
            if ids:
                total += queries.expire(session, ids, now)
        if len(ids) < batch_size:
            break
    log.info("subscriptions: %d expired (period ended before %s)", total, cutoff.isoformat())
    return total


def dispatch(now: datetime, chunk_size: int, publish: Publish) -> dict[str, int]:
    """Enqueue every pending notice, ``chunk_size`` a task, and note when each was enqueued.

    Runs after the notices committed. A crash between publishing and noting leaves the notice
    to be enqueued again later: harmless, the email log sends each key once.
    """
    with session_scope() as session:
        ids = queries.pending_ids(session, now - REDISPATCH_AFTER, DISPATCH_LIMIT)
    chunks = [ids[i : i + chunk_size] for i in range(0, len(ids), chunk_size)]
    for chunk in chunks:
        publish(chunk)
        with session_scope() as session:
            queries.mark_enqueued(session, chunk, now)
    return {"enqueued": len(ids), "chunks": len(chunks)}


def send_chunk(
    ids: Sequence[int], now: datetime, task_id: str, ttl: float, final_attempt: bool = False
) -> dict[str, Any]:
    """Send a chunk's notices that still apply, each once per reminder key, and record what
    became of every one of them (see the module docstring for the re-check and its window)."""
    with session_scope() as session:
        late = queries.skip_passed(session, ids, now)
        rows = queries.chunk_rows(session, ids)
    pending = [row for row in rows if row.status == "pending"]
    items = [notices.email_for(r) if r.obsolete is None else notices.withheld(r) for r in pending]
    report = deliver(items, task_id, ttl, final_attempt) if items else delivery.Report()
    by_key = {item.key: row for item, row in zip(items, pending, strict=True)}
    settled = settle(by_key, report)
    with session_scope() as session:
        for (status, reason), row_ids in settled.items():
            queries.set_status(session, row_ids, status, now, reason)
    final = {row_id: status for (status, _), row_ids in settled.items() for row_id in row_ids}
    expired = [
        row
        for row in rows
        if row.kind == "expired"
        and row.webhook_published_at is None
        and (row.obsolete is None or final.get(row.id, row.status) == "sent")
    ]
    published = notices.publish_expired(expired, lambda done: _mark_published(done, now))
    withheld = [by_key[key].obsolete for key in report.skipped if by_key[key].obsolete]
    summary = {
        **report.summary(),
        "skipped": len(report.skipped) - len(withheld),
        "obsolete": len(withheld),
        "obsolete_reasons": dict(Counter(withheld)),
        "late_skipped": late,
        "events": published,
    }
    log.info("subscriptions: chunk of %d notices: %s", len(ids), summary)
    delivery.raise_for_retry_later(report)
    return summary


def settle(by_key: Mapping[str, NoticeRow], report: delivery.Report) -> dict[Outcome, list[int]]:
    """The pending notices' ids by the (status, reason) the delivery ``report`` gives them.

    A notice the re-check found obsolete and the email log skipped is ``obsolete`` with the
    re-check's reason. One the log says an earlier run already sent stays ``sent`` even if it
    is obsolete now: the customer has it, and the record must say so. Keys left to retry stay
    ``pending``.
    """
    settled: dict[Outcome, list[int]] = defaultdict(list)

    def put(key: str, status: str, reason: str | None) -> None:
        row = by_key[key]
        if row.obsolete is not None and status == "skipped":
            status, reason = "obsolete", row.obsolete
        settled[(status, reason)].append(row.id)

    for key in report.sent:
        put(key, "sent", None)
    for key, error in report.failed.items():
        put(key, "failed", error)
    for key, error in report.skipped.items():
        put(key, "skipped", error)
    for key, status in report.done_before.items():
        put(key, status, None if status == "sent" else f"{status} by an earlier run (email log)")
    return dict(settled)


def _mark_published(ids: list[int], now: datetime) -> None:
    with session_scope() as session:
        queries.mark_published(session, ids, now)
