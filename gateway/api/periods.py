"""Date-range query parameters for usage endpoints: [start, end) in UTC days."""

from __future__ import annotations

import datetime as dt

from gateway.errors import InvalidRequestError

MAX_RANGE_DAYS = 366


# Ranges end the day (or month) after their last one: the last usable year is 9998.
MAX_YEAR = 9998


def parse_day(value: str | None, name: str) -> dt.date | None:
    if value is None or value == "":
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidRequestError(f"{name} must be a date YYYY-MM-DD, got {value!r}", param=name) from None
    if day.year > MAX_YEAR:
        raise InvalidRequestError(f"{name} must be in a year up to {MAX_YEAR}", param=name)
    return day


def day_range(
    start: str | None, end: str | None, *, today: dt.date | None = None
) -> tuple[dt.datetime, dt.datetime]:
    """Default: the current calendar month up to and including today."""
    today = today or dt.datetime.now(dt.UTC).date()
    first = parse_day(start, "start") or today.replace(day=1)
    last = parse_day(end, "end") or today
    if last < first:
        raise InvalidRequestError("end must not be before start", param="end")
    if (last - first).days >= MAX_RANGE_DAYS:
        raise InvalidRequestError(f"a range covers at most {MAX_RANGE_DAYS} days", param="end")
    as_dt = lambda d: dt.datetime.combine(d, dt.time(0), tzinfo=dt.UTC)  # noqa: E731
    return as_dt(first), as_dt(last + dt.timedelta(days=1))


def parse_month(value: str) -> dt.date:
    try:
        month = dt.date.fromisoformat(f"{value}-01")
    except ValueError:
        raise InvalidRequestError(f"month must be YYYY-MM, got {value!r}", param="month") from None
    if month.year > MAX_YEAR:
        raise InvalidRequestError(f"month must be in a year up to {MAX_YEAR}", param="month")
    return month
