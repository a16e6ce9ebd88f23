"""When a beat entry fires next, computed from its schedule and a clock: no beat, no Redis.

Used by ``saas-tasks schedules`` (the next run) and by the test kit's schedule checker (the
next N runs from a fixed clock), so both read the schedule the way beat does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from celery.schedules import crontab, schedule


def next_run(entry_schedule: Any, after: datetime) -> datetime | None:
    """The first run strictly after ``after`` (UTC), or None for schedules we cannot compute
    (solar ones): a crontab's next slot, an interval's ``after + every``."""
    after = after if after.tzinfo else after.replace(tzinfo=UTC)
    if isinstance(entry_schedule, int | float):
        return after + timedelta(seconds=float(entry_schedule))
    if isinstance(entry_schedule, timedelta):
        return after + entry_schedule
    if isinstance(entry_schedule, crontab):
        last, delta, _ = entry_schedule.remaining_delta(after.astimezone(UTC))
        moment: datetime = last + delta
        return moment.astimezone(UTC)
    if isinstance(entry_schedule, schedule):
        every: timedelta = entry_schedule.run_every
        return after + every
    return None


def next_runs(entry_schedule: Any, start: datetime, count: int) -> list[datetime]:
    """The next ``count`` runs after ``start``, in order."""
    runs: list[datetime] = []
    moment: datetime | None = start
    while moment is not None and len(runs) < count:
        moment = next_run(entry_schedule, moment)
        if moment is not None:
            runs.append(moment)
    return runs


def describe(entry_schedule: Any) -> str:
    """A short human form: ``cron 0 2 * * *`` or ``every 60s``."""
    if isinstance(entry_schedule, crontab):
        parts = (
            entry_schedule._orig_minute,
            entry_schedule._orig_hour,
            entry_schedule._orig_day_of_month,
            entry_schedule._orig_month_of_year,
            entry_schedule._orig_day_of_week,
        )
        return "cron " + " ".join(str(part) for part in parts)
    if isinstance(entry_schedule, schedule):
        return f"every {entry_schedule.run_every.total_seconds():g}s"
    if isinstance(entry_schedule, int | float | timedelta):
        seconds = (
            entry_schedule.total_seconds()
            if isinstance(entry_schedule, timedelta)
            else float(entry_schedule)
        )
        return f"every {seconds:g}s"
    return str(entry_schedule)
