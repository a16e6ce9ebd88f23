"""The reminder windows as plain functions: whole UTC days, disjoint, untouched by DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from saas_tasks.subscriptions.windows import local_date, money, reminder_windows, utc_today, zone

OFFSETS = (7, 3, 1)


def offset_due(today: date, due: datetime) -> int | None:
    hits = [w.offset for w in reminder_windows(today, OFFSETS) if w.start <= due < w.end]
    assert len(hits) <= 1, f"windows overlap on {today}: {hits}"
    return hits[0] if hits else None


def reminders_over(due: datetime, first: date, days: int) -> dict[date, int]:
    """Which offset each daily run (none missed) would send, by day."""
    sent: dict[date, int] = {}
    seen: set[int] = set()
    for n in range(days):
        today = first + timedelta(days=n)
        offset = offset_due(today, due)
        if offset is not None and offset not in seen:
            seen.add(offset)
            sent[today] = offset
    return sent


def test_each_offset_is_due_on_the_utc_day_that_many_days_before() -> None:
    due = datetime(2026, 6, 20, 15, 30, tzinfo=UTC)
    assert reminders_over(due, date(2026, 6, 1), 25) == {
        date(2026, 6, 13): 7,
        date(2026, 6, 17): 3,
        date(2026, 6, 19): 1,
    }


def test_a_due_moment_in_the_last_minute_of_a_day_belongs_to_that_day() -> None:
    due = datetime(2026, 6, 20, 23, 59, 59, tzinfo=UTC)
    assert offset_due(date(2026, 6, 19), due) == 1
    assert offset_due(date(2026, 6, 20), due) is None  # the day itself: too late for any


def test_month_ends_and_february_do_not_shift_the_windows() -> None:
    assert reminders_over(datetime(2026, 3, 1, 0, 0, tzinfo=UTC), date(2026, 2, 15), 20) == {
        date(2026, 2, 22): 7,
        date(2026, 2, 26): 3,
        date(2026, 2, 28): 1,
    }
    assert reminders_over(datetime(2028, 3, 2, 8, 0, tzinfo=UTC), date(2028, 2, 20), 15) == {
        date(2028, 2, 24): 7,  # 2028 is a leap year: 29 February exists
        date(2028, 2, 28): 3,
        date(2028, 3, 1): 1,
    }


def test_daylight_saving_changes_do_not_shift_the_windows() -> None:
    # Europe switches to summer time on 29 March 2026, the US on 8 March
    due = datetime(2026, 3, 31, 0, 30, tzinfo=UTC)
    assert reminders_over(due, date(2026, 3, 20), 12) == {
        date(2026, 3, 24): 7,
        date(2026, 3, 28): 3,
        date(2026, 3, 30): 1,
    }
    paris = zone("Europe/Paris")
    assert local_date(due, paris) == "Tuesday 31 March 2026"  # 02:30 CEST


def test_after_missed_days_only_the_offset_whose_window_it_is_in_is_due() -> None:
    due = datetime(2026, 6, 20, 12, 0, tzinfo=UTC)
    assert offset_due(date(2026, 6, 15), due) == 7  # 5 days left: the 7-day one, still
    assert offset_due(date(2026, 6, 17), due) == 3  # 3 days left: only the 3-day one
    assert offset_due(date(2026, 6, 10), due) is None  # 10 days left: too early


def test_the_customer_time_zone_changes_the_wording_only() -> None:
    due = datetime(2026, 6, 20, 13, 0, tzinfo=UTC)
    assert local_date(due, zone("Pacific/Auckland")) == "Sunday 21 June 2026"
    assert local_date(due, zone("Not/AZone", "America/Los_Angeles")) == "Saturday 20 June 2026"
    assert local_date(due, zone(None, None)) == "Saturday 20 June 2026"


def test_today_is_the_utc_date_of_now_whatever_zone_now_is_written_in() -> None:
    late_in_la = datetime(2026, 6, 20, 20, 0, tzinfo=zone("America/Los_Angeles"))
    assert utc_today(late_in_la) == date(2026, 6, 21)


def test_money_is_formatted_from_integer_minor_units() -> None:
    assert money(1250, "usd") == "12.50 USD"
    assert money(5, "eur") == "0.05 EUR"
    assert money(1200, "jpy") == "1200 JPY"
