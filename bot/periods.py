"""Calendar arithmetic in a tenant's or channel's time zone: periods, local dates, daily instants.

Everything is computed from an aware UTC instant and an IANA zone, so daylight-saving changes fall
out of zoneinfo: a post set for 09:00 Europe/Berlin is at 09:00 local on both sides of a switch.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PERIODS = ("week", "month", "all")
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$")


def zone(name: str) -> ZoneInfo | None:
    """The IANA zone called `name`, or None (never an OS error for a folder or an overlong name)."""
    if not name or len(name) > 64 or not _ZONE_NAME.match(name):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def period_key(kind: str, instant: datetime, tz: ZoneInfo) -> str:
    local = instant.astimezone(tz)
    if kind == "week":
        iso = local.isocalendar()
        return f"w{iso.year}-{iso.week:02d}"
    if kind == "month":
        return f"m{local.year}-{local.month:02d}"
    return "all"


def period_keys(instant: datetime, tz: ZoneInfo) -> list[str]:
    return [period_key(kind, instant, tz) for kind in PERIODS]


def period_keys_window(instant: datetime, tz: ZoneInfo) -> tuple[list[str], float, float]:
    """period_keys(instant, tz) and a span of UTC seconds around `instant` in which they hold: the
    local day, less an hour at each end, so that no daylight-saving change at midnight can matter."""
    day = instant.astimezone(tz).date()
    start = datetime.combine(day, time(0), tzinfo=tz).timestamp() + 3600
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).timestamp() - 3600
    return period_keys(instant, tz), start, end


def period_label(kind: str, instant: datetime, tz: ZoneInfo) -> str:
    local = instant.astimezone(tz)
    if kind == "week":
        monday = local.date() - timedelta(days=local.weekday())
        return f"week of {monday.isoformat()}"
    if kind == "month":
        return local.strftime("%B %Y")
    return "all time"


def local_date(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


def parse_hhmm(text: str) -> time | None:
    m = _HHMM.match(text.strip())
    return time(int(m.group(1)), int(m.group(2))) if m else None


def daily_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of `at` local time on `day` (a wall time skipped by DST moves forward)."""
    local = datetime.combine(day, at, tzinfo=tz)
    # round-trip to normalise wall times that do not exist (spring forward)
    return local.astimezone(UTC)


def latest_slot(now: datetime, at: time, tz: ZoneInfo) -> date:
    """The local date of the most recent scheduled post at or before `now`."""
    today = local_date(now, tz)
    return today if daily_instant(today, at, tz) <= now else today - timedelta(days=1)


def next_slot(now: datetime, at: time, tz: ZoneInfo) -> datetime:
    """The first scheduled instant strictly after `now`."""
    today = local_date(now, tz)
    for offset in (0, 1, 2):
        instant = daily_instant(today + timedelta(days=offset), at, tz)
        if instant > now:
            return instant
    raise AssertionError("unreachable: a daily slot exists within two days")


def streak(dates_desc: list[str], today: date) -> int:
    """Consecutive active local days ending today (or yesterday, if today has no activity yet)."""
    days = {date.fromisoformat(d) for d in dates_desc}
    cursor = today if today in days else today - timedelta(days=1)
    count = 0
    while cursor in days:
        count += 1
        cursor -= timedelta(days=1)
    return count
