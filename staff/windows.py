"""Time windows as staff write them: ISO 8601 times or plain dates, in the line's time zone
unless they carry an offset; stored times are naive UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo


class BadWindow(ValueError):
    """A `since`/`until` value that is not a date or an ISO 8601 time."""


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
        raise BadWindow(
            f"{name}={value!r} is not an ISO 8601 date or time (e.g. 2026-11-30 or 2026-11-30T14:00:00-05:00)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(zone))
    return parsed.astimezone(UTC).replace(tzinfo=None)


def parse_window(since: str | None, until: str | None, zone: str) -> tuple[datetime | None, datetime | None]:
    start, end = parse_instant(since, zone, "since"), parse_instant(until, zone, "until")
    if start is not None and end is not None and end < start:
        raise BadWindow("until is before since")
    return start, end
