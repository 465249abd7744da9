"""Calendar arithmetic for time, cron, sun and interval triggers and conditions; no I/O.

Every function takes aware datetimes and works in local wall time of their zone, with
daylight-saving changes handled the same way throughout:

* a local time that does not exist (skipped by spring-forward) happens at the first valid
  moment after it, the instant the clocks jump;
* a local time that occurs twice (repeated by fall-back) happens once, the first time.

Cron expressions whose minute or hour field is a wildcard (``*/5 * * * *``, ``0 * * * *``)
are periodic instead, as in Vixie cron: they follow the clock through both passes of a
repeated hour and simply have no matches inside a skipped one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from astral import Observer
from astral import sun as astral_sun
from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

from hub.rules.clock import load_zone

__all__ = [
    "WEEKDAYS",
    "Location",
    "in_time_window",
    "next_cron",
    "next_interval",
    "next_sun",
    "next_time_of_day",
    "on_weekday",
    "parse_time_of_day",
    "sun_condition",
    "sun_times",
    "validate_cron",
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SUN_EVENTS = ("sunrise", "sunset")

# How far ahead next_sun looks for a day with the event before giving up.
_SUN_SEARCH_DAYS = 400
# Geometric sun elevation at sunrise/sunset: the upper limb on the horizon once
# refraction lifts it (the usual 34' of refraction plus 16' of solar radius).
_HORIZON = -0.833


@dataclass(frozen=True, slots=True)
class Location:
    """Where the hub is: for sunrise and sunset."""

    latitude: float
    longitude: float
    elevation: float = 0.0
    time_zone: str = "UTC"

    def __post_init__(self) -> None:
        if not -90.0 <= self.latitude <= 90.0:
            raise ValueError(f"latitude must be between -90 and 90, got {self.latitude}")
        if not -180.0 <= self.longitude <= 180.0:
            raise ValueError(f"longitude must be between -180 and 180, got {self.longitude}")
        load_zone(self.time_zone)

    @property
    def observer(self) -> Observer:
        """The astral observer for this place."""
        return Observer(self.latitude, self.longitude, self.elevation)


# --- time of day -----------------------------------------------------------------------

_TIME_OF_DAY = re.compile(r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?")


def parse_time_of_day(text: str) -> time:
    """Parse ``"HH:MM"`` or ``"HH:MM:SS"`` (24-hour clock) into a time."""
    if not isinstance(text, str):
        raise ValueError(f'expected a time of day as text like "07:30", got {text!r}')
    match = _TIME_OF_DAY.fullmatch(text.strip())
    if match is None:
        raise ValueError(f'invalid time of day {text!r}: expected "HH:MM" or "HH:MM:SS"')
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"invalid time of day {text!r}: hours go to 23, minutes and seconds to 59")
    return time(hour, minute, second)


def _require_aware(value: datetime, name: str) -> tzinfo:
    zone = value.tzinfo
    if zone is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a time-zone-aware datetime, got naive {value!r}")
    return zone


def _exists(local: datetime) -> bool:
    """Whether this aware wall time really occurs (is not inside a spring-forward gap)."""
    naive = local.replace(tzinfo=None)
    return local.astimezone(UTC).astimezone(local.tzinfo).replace(tzinfo=None) == naive


def _is_ambiguous(local: datetime) -> bool:
    """Whether this wall time occurs twice (inside a fall-back overlap)."""
    return local.replace(fold=0).utcoffset() != local.replace(fold=1).utcoffset()


def _gap_end(local: datetime) -> datetime:
    """The first valid instant after a nonexistent wall time: the moment the clocks jump."""
    zone = local.tzinfo
    naive = local.replace(tzinfo=None)
    # Read with the offset after the jump the instant is before it; with the offset before
    # the jump, after it. The jump lies between; find it to the second.
    low = local.replace(fold=1).timestamp()
    high = local.replace(fold=0).timestamp()
    if low > high:
        low, high = high, low
    while high - low > 1.0:
        middle = math.floor((low + high) / 2)
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= naive:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(math.ceil(high), zone)


def _resolve(naive: datetime, zone: tzinfo) -> datetime:
    """The one instant a local wall time happens: first pass if repeated, jump if skipped."""
    local = naive.replace(tzinfo=zone, fold=0)
    return local if _exists(local) else _gap_end(local)


def _after_instant(candidate: datetime, after: datetime) -> bool:
    # Aware datetimes sharing a tzinfo compare by wall time, ignoring fold: compare
    # instants instead.
    return candidate.timestamp() > after.timestamp()


def next_time_of_day(after: datetime, at: time) -> datetime:
    """The next moment strictly after ``after`` when the local clock shows ``at``."""
    zone = _require_aware(after, "after")
    wall = at.replace(tzinfo=None)
    day = after.date()
    for _ in range(3):
        candidate = _resolve(datetime.combine(day, wall), zone)
        if _after_instant(candidate, after):
            return candidate
        day += timedelta(days=1)
    raise AssertionError("unreachable: every day has a next time of day")  # pragma: no cover


# --- cron ------------------------------------------------------------------------------

_CRON_FIELDS = "minute hour day-of-month month day-of-week"
_CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# A fixed reference start to prove an expression ever matches (e.g. "0 0 30 2 *" never
# does); leap years are within croniter's search window from here.
_CRON_PROBE = datetime(2026, 1, 1)


def validate_cron(expression: str) -> str | None:
    """Return what is wrong with a 5-field cron expression, or None when it is fine."""
    given: object = expression  # YAML can hand over a number here despite the type
    if not isinstance(given, str):
        return f"expected a cron expression as text, got {given!r}"
    fields = expression.split()
    if len(fields) == 1 and fields[0].lower() in _CRON_ALIASES:
        alias = fields[0].lower()
        return f"{alias!r} is not supported; write {_CRON_ALIASES[alias]!r} ({_CRON_FIELDS})"
    if len(fields) in {6, 7}:
        return (
            f"cron expression {expression!r} has {len(fields)} fields; only the 5-field form "
            f"({_CRON_FIELDS}) is supported, without seconds or year"
        )
    if len(fields) != 5:
        return (
            f"cron expression {expression!r} has {len(fields)} fields, expected 5 ({_CRON_FIELDS})"
        )
    try:
        croniter(expression, _CRON_PROBE).get_next(datetime)
    except CroniterBadDateError:
        return f"cron expression {expression!r} never matches a real date"
    except (CroniterError, ValueError, KeyError) as exc:
        return f"invalid cron expression {expression!r}: {exc}"
    return None


def _is_periodic(expression: str) -> bool:
    minute, hour = expression.split()[:2]
    return minute.startswith("*") or hour.startswith("*")


def _cron_instants(naive: datetime, zone: tzinfo, periodic: bool) -> Iterator[datetime]:
    """The instants at which the local wall time ``naive`` counts as a cron match."""
    local = naive.replace(tzinfo=zone, fold=0)
    if not _exists(local):
        if not periodic:
            yield _gap_end(local)
        return
    yield local
    if periodic and _is_ambiguous(local):
        yield local.replace(fold=1)


def next_cron(after: datetime, expression: str) -> datetime:
    """The next match of a 5-field cron expression in local time, strictly after ``after``."""
    zone = _require_aware(after, "after")
    problem = validate_cron(expression)
    if problem is not None:
        raise ValueError(problem)
    periodic = _is_periodic(expression)
    offset = after.utcoffset() or timedelta(0)
    later = (after + timedelta(days=1)).astimezone(zone).utcoffset() or timedelta(0)
    # If the clocks go back soon, matches in the repeated hour have wall times before
    # after's: start the wall-time walk that much earlier.
    margin = max(offset - later, timedelta(0))
    wall = after.replace(tzinfo=None)
    matches = croniter(expression, wall - margin)
    best: datetime | None = None
    while True:
        try:
            naive: datetime = matches.get_next(datetime)
        except (CroniterBadDateError, CroniterBadCronError) as exc:
            raise ValueError(f"cron expression {expression!r} has no next match") from exc
        # Wall times only run out of instant order by at most `margin`.
        if best is not None and naive > best.replace(tzinfo=None) + margin:
            return best
        for instant in _cron_instants(naive, zone, periodic):
            if _after_instant(instant, after) and (
                best is None or instant.timestamp() < best.timestamp()
            ):
                best = instant


# --- the sun ---------------------------------------------------------------------------


def _check_event(event: str, name: str) -> str:
    if event not in SUN_EVENTS:
        raise ValueError(f"{name} must be 'sunrise' or 'sunset', got {event!r}")
    return str(event)


def _sun_event(day: date, event: str, location: Location) -> datetime | None:
    zone = load_zone(location.time_zone)
    compute = astral_sun.sunrise if event == "sunrise" else astral_sun.sunset
    try:
        return compute(location.observer, day, zone)
    except ValueError:
        # astral raises when the sun stays above or below the horizon all day, or when
        # the event falls on a neighbouring local date: either way, none on this day.
        return None


def sun_times(day: date, location: Location) -> tuple[datetime | None, datetime | None]:
    """Sunrise and sunset on ``day`` at ``location``, local; None where there is none."""
    return _sun_event(day, "sunrise", location), _sun_event(day, "sunset", location)


def next_sun(after: datetime, event: str, offset: float, location: Location) -> datetime:
    """The next sunrise or sunset plus ``offset`` seconds strictly after ``after``."""
    zone = _require_aware(after, "after")
    event = _check_event(event, "event")
    shift = timedelta(seconds=offset)
    local_zone = load_zone(location.time_zone)
    # Start a day early: an offset or a zone difference can move an event across midnight.
    day = (after - shift).astimezone(local_zone).date() - timedelta(days=1)
    for _ in range(_SUN_SEARCH_DAYS + 2):
        moment = _sun_event(day, event, location)
        if moment is not None and _after_instant(moment + shift, after):
            return (moment + shift).astimezone(zone)
        day += timedelta(days=1)
    raise ValueError(
        f"no {event} within {_SUN_SEARCH_DAYS} days after {after.isoformat()} at latitude "
        f"{location.latitude}, longitude {location.longitude}"
    )


def _sun_is_up(now: datetime, location: Location) -> bool:
    return astral_sun.elevation(location.observer, now, with_refraction=False) > _HORIZON


def sun_condition(
    now: datetime,
    location: Location,
    after: str | None,
    after_offset: float,
    before: str | None,
    before_offset: float,
) -> bool:
    """Whether ``now`` is after one of today's sun events and/or before the other.

    When ``after`` is later in the day than ``before`` (after sunset, before sunrise) the
    window wraps the night: after today's sunset or before today's sunrise. On a day
    without the event (polar day or night) that side holds when the sun is where the
    event would leave it: "after sunset" and "before sunrise" hold while it is down.
    """
    _require_aware(now, "now")
    if after is None and before is None:
        return True
    today = now.astimezone(load_zone(location.time_zone)).date()
    start = end = None
    if after is not None:
        event = _check_event(after, "after")
        moment = _sun_event(today, event, location)
        start = None if moment is None else moment + timedelta(seconds=after_offset)
    if before is not None:
        event = _check_event(before, "before")
        moment = _sun_event(today, event, location)
        end = None if moment is None else moment + timedelta(seconds=before_offset)
    instant = now.timestamp()

    def sun_side(event: str, is_after: bool) -> bool:
        # "after sunrise" / "before sunset" are the day side, the others the night side.
        day_side = (event == "sunrise") == is_after
        return _sun_is_up(now, location) == day_side

    if after is not None and before is not None and start is not None and end is not None:
        if start.timestamp() < end.timestamp():
            return start.timestamp() <= instant < end.timestamp()
        return instant >= start.timestamp() or instant < end.timestamp()
    holds = True
    if after is not None:
        holds = sun_side(after, True) if start is None else instant >= start.timestamp()
    if before is not None and holds:
        holds = sun_side(before, False) if end is None else instant < end.timestamp()
    return holds


# --- windows, weekdays, intervals ------------------------------------------------------


def in_time_window(now: datetime, after: time | None, before: time | None) -> bool:
    """Whether the local time of ``now`` is in [after, before), wrapping past midnight.

    With only one bound the other is the day's end or start; equal bounds make an empty
    window.
    """
    clock = now.time()
    start = None if after is None else after.replace(tzinfo=None)
    end = None if before is None else before.replace(tzinfo=None)
    if start is None:
        return end is None or clock < end
    if end is None:
        return clock >= start
    if start <= end:
        return start <= clock < end
    return clock >= start or clock < end


def on_weekday(now: datetime, days: Collection[str]) -> bool:
    """Whether the local date of ``now`` falls on one of ``days`` ("mon" ... "sun")."""
    wanted = set()
    for day in days:
        name = day.lower() if isinstance(day, str) else day
        if name not in WEEKDAYS:
            raise ValueError(f"unknown weekday {day!r}: expected one of {', '.join(WEEKDAYS)}")
        wanted.add(name)
    return WEEKDAYS[now.weekday()] in wanted


def next_interval(start: float, every: float, after: float) -> float:
    """The next ``start + k * every`` (k a whole number) strictly after ``after``."""
    if not every > 0 or math.isinf(every):
        raise ValueError(f"an interval must be a positive number of seconds, got {every}")
    k = math.floor((after - start) / every) + 1
    # Floating-point rounding can land one step off either way; settle on the smallest.
    while start + k * every <= after:
        k += 1
    while start + (k - 1) * every > after:
        k -= 1
    return start + k * every
