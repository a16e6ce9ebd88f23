"""The subscriptions family's Celery tasks (queue ``maintenance``): thin, over
:mod:`saas_tasks.subscriptions.service`.

    send_renewal_reminders   beat, daily 09:00 UTC: record today's reminders, enqueue chunks
    expire_lapsed            beat, daily 00:00 UTC: expire lapsed subscriptions, enqueue chunks
    send_notices             one chunk of notices, each re-checked against its subscription:
                             emails over one connection, expiry events; the withheld counted

Both beat jobs hold the overlap lock, so two runs never overlap. Each accepts an optional
``now`` (or ``today``) to run as of another moment: tests pin the clock this way, and an
operator can replay a missed day by hand.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from saas_tasks.reliability.task import ReliableTask, Singleton, task
from saas_tasks.settings import get_settings
from saas_tasks.subscriptions import service

REMINDERS = "saas_tasks.subscriptions.send_renewal_reminders"
EXPIRE = "saas_tasks.subscriptions.expire_lapsed"
NOTICES = "saas_tasks.subscriptions.send_notices"


class RunRequest(BaseModel):
    """A beat job's payload: empty on schedule; ``now`` or ``today`` to run as of then."""

    model_config = ConfigDict(extra="forbid")

    now: AwareDatetime | None = None
    today: date | None = None

    def moment(self, at: time) -> datetime:
        if self.now is not None:
            return self.now.astimezone(UTC)
        if self.today is not None:
            return datetime.combine(self.today, at, tzinfo=UTC)
        return datetime.now(UTC)


class NoticesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reminder_ids: list[int] = Field(min_length=1, max_length=1000)
    now: AwareDatetime | None = None


def _publisher(pinned: datetime | None) -> service.Publish:
    """Publish one chunk under a task id derived from its ids (a redelivered run republishes
    the same ids under the same task id); a pinned ``now`` travels with it."""

    def publish(ids: list[int]) -> Any:
        digest = hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]
        kwargs: dict[str, Any] = {"reminder_ids": ids}
        if pinned is not None:
            kwargs["now"] = pinned.isoformat()
        return send_notices.apply_async(kwargs=kwargs, task_id=f"{NOTICES}:{ids[0]}:{digest}")

    return publish


@task(name=REMINDERS, payload=RunRequest, singleton=Singleton())
def send_renewal_reminders(payload: RunRequest) -> dict[str, Any]:
    """Record today's renewal, lapse and trial-end reminders, then enqueue them in chunks."""
    settings = get_settings()
    now = payload.moment(time(9))
    created = service.record_reminders(now, settings.subscription_reminder_offsets)
    pinned = now if payload.now or payload.today else None
    sent = service.dispatch(now, settings.subscription_chunk_size, _publisher(pinned))
    return {"today": now.date().isoformat(), "created": created, **sent}


@task(name=EXPIRE, payload=RunRequest, singleton=Singleton())
def expire_lapsed(payload: RunRequest) -> dict[str, Any]:
    """Expire subscriptions past their period end plus the grace period, in bounded batches,
    then enqueue their "subscription expired" notices in chunks."""
    settings = get_settings()
    now = payload.moment(time(0))
    grace = timedelta(days=settings.subscription_grace_days)
    expired = service.expire_lapsed(now, grace, settings.subscription_expire_batch_size)
    pinned = now if payload.now or payload.today else None
    sent = service.dispatch(now, settings.subscription_chunk_size, _publisher(pinned))
    return {"expired": expired, **sent}


@task(name=NOTICES, payload=NoticesRequest, retry="email", bind=True)
def send_notices(current: ReliableTask, payload: NoticesRequest) -> dict[str, Any]:
    """One chunk of notices; a redelivered or retried chunk sends nothing twice, and none that
    its subscription no longer matches (returned as ``obsolete`` / ``obsolete_reasons``)."""
    return service.send_chunk(
        payload.reminder_ids,
        payload.now or datetime.now(UTC),
        task_id=str(current.request.id or "local"),
        ttl=current.hard_time_limit,
        final_attempt=int(current.request.retries or 0) >= current.spec.policy.max_retries,
    )
