"""Calendar arithmetic: months are calendar months, days are days (spec §2)."""

from __future__ import annotations

import calendar
import functools
import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo

_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME_RE = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?)?"
)


_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

# Every date a case may carry: wide enough for any living patient and any planned follow-up,
# narrow enough that follow-up arithmetic (at most MAX_OFFSET_YEARS ahead) never leaves year 9999.
EARLIEST_DATE = date(1900, 1, 1)
LATEST_DATE = date(2200, 12, 31)
DATE_RANGE = f"{EARLIEST_DATE.isoformat()} to {LATEST_DATE.isoformat()}"
MAX_OFFSET_YEARS = 100


def days_in_month(year: int, month: int) -> int:
    if month == 2 and calendar.isleap(year):
        return 29
    return _DAYS_IN_MONTH[month - 1]


def add_months(start: date, months: int) -> date:
    """start + n calendar months, clamped to the month's last day (31 Jan + 1 = 28/29 Feb)."""
    year, month_index = divmod(start.month - 1 + months, 12)
    year += start.year
    day = start.day
    if day > 28:
        day = min(day, days_in_month(year, month_index + 1))
    return date(year, month_index + 1, day)


def whole_months_between(start: date, end: date) -> int:
    """The largest n with start + n months <= end (negative when end is before start)."""
    months = (end.year - start.year) * 12 + end.month - start.month
    # Each candidate is computed from start, never chained, so month-end clamping cannot drift.
    while add_months(start, months) > end:
        months -= 1
    while add_months(start, months + 1) <= end:
        months += 1
    return months


def age_in_years(birth_date: date, on: date) -> int:
    """Whole years of age: whole calendar months // 12, so a 29 Feb birthday counts on 28 Feb."""
    years = on.year - birth_date.year
    birthday = min(birth_date.day, days_in_month(on.year, birth_date.month))
    if (on.month, on.day) < (birth_date.month, birthday):
        years -= 1
    return years


def parse_iso_date(text: str) -> date | None:
    """Strict YYYY-MM-DD within DATE_RANGE; None when the text is not such a calendar date."""
    if not _DATE_RE.fullmatch(text):
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return day if EARLIEST_DATE <= day <= LATEST_DATE else None


def outside_date_range(text: str) -> bool:
    """True for a real calendar date (or datetime) that parse_iso_date refuses for its range."""
    if not _DATE_RE.fullmatch(text[:10]):
        return False
    try:
        day = date.fromisoformat(text[:10])
    except ValueError:
        return False
    return not EARLIEST_DATE <= day <= LATEST_DATE


def parse_iso_datetime(text: str) -> tuple[date, time | None] | None:
    """YYYY-MM-DD (time unknown) or YYYY-MM-DDTHH:MM[:SS] without a timezone."""
    match = _DATETIME_RE.fullmatch(text)
    if match is None:
        return None
    day = parse_iso_date(match.group(1))
    if day is None:
        return None
    if match.group(2) is None:
        return day, None
    hour, minute = int(match.group(2)), int(match.group(3))
    second = int(match.group(4)) if match.group(4) is not None else 0
    if hour > 23 or minute > 59 or second > 59:
        return None
    return day, time(hour, minute, second)


def format_datetime(day: date, at: time | None) -> str:
    """Inverse of parse_iso_datetime: seconds only when they are not zero."""
    if at is None:
        return day.isoformat()
    if at.second:
        return f"{day.isoformat()}T{at.hour:02d}:{at.minute:02d}:{at.second:02d}"
    return f"{day.isoformat()}T{at.hour:02d}:{at.minute:02d}"


def skipped_by_the_clocks(day: date, at: time, zone: tzinfo) -> bool:
    """True for a local time that did not occur in ``zone``: in the hour skipped when the clocks
    go forward (01:30 on 29 March 2026 in London). Exported, it would come back an hour later."""
    if not _offset_changes(day, zone):  # most days: the live preview asks for every result
        return False
    local = datetime.combine(day, at, tzinfo=zone)
    try:
        occurred = local.astimezone(UTC).astimezone(zone)
    except OverflowError:  # year 1 or 9999 pushed off the calendar: refused for its range
        return False
    return occurred.replace(tzinfo=None) != local.replace(tzinfo=None)


@functools.lru_cache(maxsize=512)
def _offset_changes(day: date, zone: tzinfo) -> bool:
    """Whether ``zone``'s UTC offset at the end of ``day`` differs from its offset at the start:
    only on such a day can a local time be skipped."""
    start = datetime.combine(day, time(), tzinfo=zone)
    try:
        end = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone)
    except OverflowError:  # the calendar's last day
        return False
    return start.utcoffset() != end.utcoffset()


def iso_date(day: date | None) -> str | None:
    """YYYY-MM-DD, or None for an unknown date (a fact or a document field left empty)."""
    return None if day is None else day.isoformat()
