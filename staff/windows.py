"""Time windows as staff write them; stored times are naive UTC.

- The API and `flask counts show` take instants (`since`, `until`): ISO 8601 times or plain
  dates, in the line's time zone unless they carry an offset; `parse_window`.
- The console takes local days (`from`, `to`, both included); `parse_days`.

Every instant and day must lie within `EARLIEST`..`LATEST` (the calendar Python and the
databases share, less a day at each end, so that converting between zones, rounding to the
hour and taking the next day never leave it); anything else is a `BadWindow`, never an
overflow."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from .params import BadParameter, shortened

EARLIEST = datetime(1, 1, 2)
LATEST = datetime(9999, 12, 30)
TIME_EXAMPLE = "2026-11-30 or 2026-11-30T14:00:00-05:00"
DAY_EXAMPLE = "2026-11-30"
DAY_FORM = re.compile(r"\d{4}-\d{2}-\d{2}")


class BadWindow(BadParameter):
    """A window bound that is not a date or a time, lies outside the calendar, or ends before
    the window starts."""


def _as_typed(name: str, value: str) -> str:
    """`name='value'` for a message about what was typed, the value `shortened`."""
    return f"{name}={shortened(value)!r}"


def _outside(name: str, value: str) -> BadWindow:
    first, last = EARLIEST.date().isoformat(), LATEST.date().isoformat()
    return BadWindow(name, f"{_as_typed(name, value)} is outside the calendar the line counts in ({first} to {last}).")


def parse_instant(value: str | None, zone: str, name: str) -> datetime | None:
    """`value` as naive UTC, or None when it is empty. Raises BadWindow saying what is wrong."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            parsed = datetime.combine(date.fromisoformat(text), time())
        else:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        problem = f"{_as_typed(name, value)} is not an ISO 8601 date or time (e.g. {TIME_EXAMPLE})"
        raise BadWindow(name, problem) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(zone))
    try:
        moment = parsed.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:  # before year 1 or after 9999 once in UTC
        raise _outside(name, value) from None
    if not EARLIEST <= moment <= LATEST:
        raise _outside(name, value)
    return moment


def parse_window(since: str | None, until: str | None, zone: str) -> tuple[datetime | None, datetime | None]:
    """[since, until) as naive UTC (None for an open end); raises BadWindow when a bound is
    bad or `until` is before `since`."""
    start, end = parse_instant(since, zone, "since"), parse_instant(until, zone, "until")
    if start is not None and end is not None and end < start:
        raise BadWindow("until", "until is before since")
    return start, end


def parse_day(value: str | None, name: str) -> date | None:
    """A local day written YYYY-MM-DD (not another ISO 8601 form, such as a week date), or
    None when empty; raises BadWindow."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text) if DAY_FORM.fullmatch(text) else None
    except ValueError:
        day = None
    if day is None:
        raise BadWindow(name, f"{_as_typed(name, value)} is not a date. Dates are written like {DAY_EXAMPLE}.")
    if not EARLIEST.date() <= day <= LATEST.date():
        raise _outside(name, value)
    return day


def local_midnight(day: date, zone: str) -> datetime:
    """The start of `day` in `zone`, as naive UTC (within the calendar for any day
    `parse_day` gives, or the day after one)."""
    return datetime.combine(day, time(), tzinfo=ZoneInfo(zone)).astimezone(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Days:
    """Local days `first`..`last`, both included (None for an open end), and the naive-UTC
    window [since, until) they cover."""

    first: date | None
    last: date | None
    since: datetime | None
    until: datetime | None


def parse_days(first: str | None, last: str | None, zone: str) -> Days:
    """`from` and `to` as the console takes them; raises BadWindow when one is not a date, lies
    outside the calendar, or `to` is before `from`."""
    start, end = parse_day(first, "from"), parse_day(last, "to")
    if start is not None and end is not None and end < start:
        raise BadWindow("to", "The end date is before the start date.")
    return Days(
        start,
        end,
        local_midnight(start, zone) if start is not None else None,
        local_midnight(end + timedelta(days=1), zone) if end is not None else None,
    )
