"""When a reminder is due, in UTC calendar days, and how its dates read to the customer.

A reminder at offset ``d`` is about a due moment ``T`` (renewal, lapse or trial end) whose UTC
date is ``d`` days or fewer away, and more than the next smaller offset away::

    offsets 7, 3, 1  →  7-day window: 3 < days_left <= 7
                        3-day window: 1 < days_left <= 3
                        1-day window: 0 < days_left <= 1      (days_left = T's date - today)

The windows of one ``T`` never overlap, so a run sends at most one reminder about it (after a
missed day the run sends the offset whose window it is in, never the 7- and the 3-day one on
the same morning), and each offset has a whole window of days to be caught up in. Windows are
whole UTC days computed with date arithmetic: daylight saving time and month lengths cannot
move them. A customer's time zone only changes how the date is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: Currencies without a minor unit (ISO 4217 exponent 0) among the common ones.
ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "pyg", "rwf", "vnd"})


@dataclass(frozen=True)
class Window:
    """Due moments ``start <= T < end`` get the reminder at ``offset`` days today."""

    offset: int
    start: datetime
    end: datetime


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def utc_today(now: datetime) -> date:
    if now.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware 'now'")
    return now.astimezone(UTC).date()


def reminder_windows(today: date, offsets: Iterable[int]) -> list[Window]:
    """The window of each offset on ``today``, largest offset first."""
    ascending = sorted(set(offsets))
    windows = []
    previous = 0
    for offset in ascending:
        windows.append(
            Window(
                offset,
                midnight(today + timedelta(days=previous + 1)),
                midnight(today + timedelta(days=offset + 1)),
            )
        )
        previous = offset
    return windows[::-1]


def zone(*names: str | None) -> ZoneInfo:
    """The first valid IANA zone among ``names`` (the subscription's, then the user's), else UTC."""
    for name in names:
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def local_date(moment: datetime, where: ZoneInfo) -> str:
    """``Monday 30 November 2026`` as the customer's calendar shows ``moment``."""
    local = moment.astimezone(where)
    return f"{local:%A} {local.day} {local:%B %Y}"


def money(amount: int, currency: str) -> str:
    """Integer minor units as ``12.50 USD`` (``1200 JPY`` for zero-decimal currencies)."""
    code = currency.upper()
    if currency.lower() in ZERO_DECIMAL:
        return f"{amount} {code}"
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{whole}.{cents:02d} {code}"
