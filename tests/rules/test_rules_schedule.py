"""Schedule arithmetic: times of day, cron, the sun, windows, weekdays, intervals."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import astral.sun
import pytest

from hub.rules.schedule import (
    WEEKDAYS,
    Location,
    in_time_window,
    next_cron,
    next_interval,
    next_sun,
    next_time_of_day,
    on_weekday,
    parse_time_of_day,
    sun_condition,
    sun_times,
    validate_cron,
)

AMS = ZoneInfo("Europe/Amsterdam")
AMSTERDAM = Location(52.37, 4.90, time_zone="Europe/Amsterdam")
SYDNEY = Location(-33.87, 151.21, time_zone="Australia/Sydney")
TROMSO = Location(69.65, 18.96, time_zone="Europe/Oslo")
OSLO = ZoneInfo("Europe/Oslo")


def ams(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, fold: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=AMS, fold=fold)


def iso(value: datetime) -> str:
    return value.isoformat()


def near(value: datetime | None, hour: int, minute: int, slack_minutes: float = 2.0) -> bool:
    assert value is not None
    wanted = value.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return abs((value - wanted).total_seconds()) <= slack_minutes * 60


# --- time of day -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("07:30", time(7, 30)),
        ("7:05", time(7, 5)),
        ("23:59:59", time(23, 59, 59)),
        ("00:00", time()),
    ],
)
def test_parse_time_of_day(text: str, expected: time) -> None:
    assert parse_time_of_day(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("24:00", "hours go to 23"),
        ("07:60", "minutes and seconds to 59"),
        ("07:00:60", "minutes and seconds to 59"),
        ("7", 'expected "HH:MM" or "HH:MM:SS"'),
        ("seven", 'expected "HH:MM" or "HH:MM:SS"'),
        ("07:00 pm", 'expected "HH:MM" or "HH:MM:SS"'),
        (700, "as text"),
    ],
)
def test_parse_time_of_day_rejects_with_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_time_of_day(text)
    assert repr(text) in str(caught.value)


def test_next_time_of_day_later_today_and_strictly_after() -> None:
    assert next_time_of_day(ams(2026, 1, 5, 6, 0), time(7)) == ams(2026, 1, 5, 7, 0)
    # Exactly at the time: the next one is tomorrow.
    assert next_time_of_day(ams(2026, 1, 5, 7, 0), time(7)) == ams(2026, 1, 6, 7, 0)


def test_next_time_of_day_across_midnight_and_year_end() -> None:
    assert next_time_of_day(ams(2026, 12, 31, 23, 30), time(0, 15)) == ams(2027, 1, 1, 0, 15)
    assert next_time_of_day(ams(2026, 1, 5, 23, 59, 59), time(23, 59, 59)) == ams(
        2026, 1, 6, 23, 59, 59
    )


def test_next_time_of_day_spring_forward_gap_fires_when_the_clocks_jump() -> None:
    # 2026-03-29 in Amsterdam: 02:00 CET becomes 03:00 CEST; 02:30 does not exist.
    fired = next_time_of_day(ams(2026, 3, 29, 0, 0), time(2, 30))
    assert iso(fired) == "2026-03-29T03:00:00+02:00"
    assert fired.astimezone(UTC) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert iso(next_time_of_day(fired, time(2, 30))) == "2026-03-30T02:30:00+02:00"
    # A time after the gap on that day is unaffected, 23 real hours after the day before.
    seven = next_time_of_day(ams(2026, 3, 29, 0, 0), time(7))
    assert iso(seven) == "2026-03-29T07:00:00+02:00"
    day_before = next_time_of_day(ams(2026, 3, 28, 0, 0), time(7))
    assert seven.timestamp() - day_before.timestamp() == 23 * 3600


def test_next_time_of_day_fall_back_overlap_fires_once() -> None:
    # 2026-10-25 in Amsterdam: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    first = next_time_of_day(ams(2026, 10, 25, 0, 0), time(2, 30))
    assert iso(first) == "2026-10-25T02:30:00+02:00"
    assert iso(next_time_of_day(first, time(2, 30))) == "2026-10-26T02:30:00+01:00"
    # From inside the second pass (02:10 CET), today's 02:30 has already been.
    second_pass = ams(2026, 10, 25, 2, 10, fold=1)
    assert second_pass.utcoffset() == timedelta(hours=1)
    assert iso(next_time_of_day(second_pass, time(2, 30))) == "2026-10-26T02:30:00+01:00"


@pytest.mark.parametrize("start", [ams(2026, 3, 25), ams(2026, 10, 21)])
@pytest.mark.parametrize("at", [time(2, 0), time(2, 30), time(2, 59, 59), time(3, 0), time(12)])
def test_next_time_of_day_fires_exactly_once_every_day_through_dst(
    start: datetime, at: time
) -> None:
    moment = start
    days = []
    for _ in range(10):
        following = next_time_of_day(moment, at)
        assert following.timestamp() > moment.timestamp()
        days.append(following.date())
        moment = following
    assert days == [start.date() + timedelta(days=n) for n in range(10)]


def test_next_time_of_day_needs_an_aware_datetime() -> None:
    with pytest.raises(ValueError, match="time-zone-aware"):
        next_time_of_day(datetime(2026, 1, 5, 7), time(8))


# --- cron ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression", ["*/5 * * * *", "0 7 * * mon-fri", "30 6 1,15 * *", "0 0 29 2 *", "0 22 * * 0"]
)
def test_validate_cron_accepts(expression: str) -> None:
    assert validate_cron(expression) is None


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 */5 * * * *", "has 6 fields; only the 5-field form"),
        ("0 0 12 * * ? 2026", "has 7 fields; only the 5-field form"),
        ("* * * *", "has 4 fields, expected 5 (minute hour day-of-month month day-of-week)"),
        ("", "has 0 fields, expected 5"),
        ("@daily", "'@daily' is not supported; write '0 0 * * *'"),
        ("61 * * * *", "invalid cron expression '61 * * * *'"),
        ("a b c d e", "invalid cron expression"),
        ("*/0 * * * *", "invalid cron expression"),
        ("0 0 30 2 *", "never matches a real date"),
        (5, "expected a cron expression as text"),
    ],
)
def test_validate_cron_explains(expression: str, message: str) -> None:
    problem = validate_cron(expression)
    assert problem is not None
    assert message in problem


def cron_run(start: datetime, expression: str, count: int) -> list[str]:
    moments = []
    moment = start
    for _ in range(count):
        moment = next_cron(moment, expression)
        moments.append(iso(moment))
    return moments


def test_next_cron_in_local_time_strictly_after() -> None:
    assert cron_run(ams(2026, 1, 5, 12, 0), "*/20 * * * *", 3) == [
        "2026-01-05T12:20:00+01:00",
        "2026-01-05T12:40:00+01:00",
        "2026-01-05T13:00:00+01:00",
    ]
    # Friday evening to Monday morning, weekdays only.
    assert cron_run(ams(2026, 1, 9, 7, 0), "0 7 * * mon-fri", 1) == ["2026-01-12T07:00:00+01:00"]
    # Seconds past a match still count as after it.
    assert cron_run(ams(2026, 1, 5, 7, 0, 30), "0 7 * * *", 1) == ["2026-01-06T07:00:00+01:00"]


def test_next_cron_spring_forward() -> None:
    start = ams(2026, 3, 29, 0, 30)
    # A fixed daily time in the gap fires when the clocks jump, once.
    assert cron_run(start, "30 2 * * *", 2) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    # Periodic expressions keep following the clock: the skipped hour has no matches.
    assert cron_run(start, "*/30 * * * *", 4) == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T01:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:30:00+02:00",
    ]


def test_next_cron_fall_back() -> None:
    start = ams(2026, 10, 25, 0, 30)
    # A fixed daily time in the repeated hour fires once, the first time.
    assert cron_run(start, "30 2 * * *", 2) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]
    # Hourly keeps firing every real hour, through both passes of 02:00.
    assert cron_run(start, "0 * * * *", 4) == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]
    # Starting inside the first pass, the second pass is not skipped.
    assert cron_run(ams(2026, 10, 25, 2, 50), "*/5 * * * *", 3) == [
        "2026-10-25T02:55:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:05:00+01:00",
    ]


def test_next_cron_rejects_what_validate_rejects() -> None:
    with pytest.raises(ValueError, match="has 6 fields"):
        next_cron(ams(2026, 1, 5), "0 0 * * * *")
    with pytest.raises(ValueError, match="time-zone-aware"):
        next_cron(datetime(2026, 1, 5), "* * * * *")


# --- the sun ---------------------------------------------------------------------------


def test_sun_times_amsterdam_against_published_values() -> None:
    # Published (timeanddate.com): 21 June sunrise 05:18, sunset 22:06; 21 December
    # sunrise 08:48, sunset 16:29 (Amsterdam local time).
    sunrise, sunset = sun_times(date(2026, 6, 21), AMSTERDAM)
    assert sunrise is not None
    assert sunset is not None
    assert sunrise.tzinfo == AMS
    assert near(sunrise, 5, 18)
    assert near(sunset, 22, 6)
    sunrise, sunset = sun_times(date(2026, 12, 21), AMSTERDAM)
    assert near(sunrise, 8, 48)
    assert near(sunset, 16, 29)


def test_sun_times_southern_hemisphere_ahead_of_utc() -> None:
    # Sydney, 21 June: sunrise 07:00, sunset 16:54; sunrise is the previous day in UTC.
    sunrise, sunset = sun_times(date(2026, 6, 21), SYDNEY)
    assert sunrise is not None
    assert sunrise.date() == date(2026, 6, 21)
    assert near(sunrise, 7, 0)
    assert near(sunset, 16, 54)


def test_sun_times_polar_night_and_midnight_sun() -> None:
    assert sun_times(date(2026, 12, 21), TROMSO) == (None, None)
    assert sun_times(date(2026, 6, 21), TROMSO) == (None, None)
    # The day the midnight sun begins: the sun rises and does not set.
    sunrise, sunset = sun_times(date(2026, 5, 17), TROMSO)
    assert sunrise is not None
    assert sunset is None


def test_next_sun_today_then_tomorrow() -> None:
    sunrise = next_sun(ams(2026, 6, 21, 3, 0), "sunrise", 0, AMSTERDAM)
    assert sunrise.date() == date(2026, 6, 21)
    assert near(sunrise, 5, 18)
    tomorrow = next_sun(sunrise, "sunrise", 0, AMSTERDAM)
    assert tomorrow.date() == date(2026, 6, 22)
    sunset = next_sun(sunrise, "sunset", 0, AMSTERDAM)
    assert sunset.date() == date(2026, 6, 21)
    assert near(sunset, 22, 6)


def test_next_sun_with_offsets() -> None:
    before = next_sun(ams(2026, 6, 21, 3, 0), "sunrise", -1800, AMSTERDAM)
    assert near(before, 4, 48)
    # At 05:00 today's sunrise - 30 min has passed, so tomorrow's comes next.
    passed = next_sun(ams(2026, 6, 21, 5, 0), "sunrise", -1800, AMSTERDAM)
    assert passed.date() == date(2026, 6, 22)
    assert near(passed, 4, 48)
    # Sunset + 2 h crosses midnight into the next local day.
    late = next_sun(ams(2026, 6, 21, 23, 0), "sunset", 7200, AMSTERDAM)
    assert late.date() == date(2026, 6, 22)
    assert near(late, 0, 6)
    exact = sun_times(date(2026, 6, 21), AMSTERDAM)[1]
    assert exact is not None
    assert late.timestamp() == pytest.approx(exact.timestamp() + 7200, abs=1)


def test_next_sun_skips_the_polar_night() -> None:
    after = datetime(2026, 12, 1, tzinfo=OSLO)
    sunrise = next_sun(after, "sunrise", 0, TROMSO)
    # The sun comes back to Tromsø in mid-January.
    assert date(2027, 1, 10) <= sunrise.date() <= date(2027, 1, 20)
    assert sunrise.tzinfo == OSLO
    # In the zone of `after`, whatever the location's zone.
    in_utc = next_sun(after.astimezone(UTC), "sunrise", 0, TROMSO)
    assert in_utc.tzinfo == UTC
    assert in_utc == sunrise


def test_next_sun_gives_up_after_400_days(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*_args: object) -> datetime:
        raise ValueError("Sun is always below the horizon on this day, at this location.")

    monkeypatch.setattr(astral.sun, "sunrise", never)
    with pytest.raises(ValueError, match="no sunrise within 400 days after 2026-12-01"):
        next_sun(datetime(2026, 12, 1, tzinfo=OSLO), "sunrise", 0, TROMSO)


def test_next_sun_rejects_unknown_event() -> None:
    with pytest.raises(ValueError, match="event must be 'sunrise' or 'sunset', got 'noon'"):
        next_sun(ams(2026, 6, 21), "noon", 0, AMSTERDAM)


def test_location_validates_itself() -> None:
    with pytest.raises(ValueError, match="latitude must be between -90 and 90, got 91"):
        Location(91, 0)
    with pytest.raises(ValueError, match="longitude must be between -180 and 180"):
        Location(0, 200)
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Atlantis'"):
        Location(0, 0, time_zone="Europe/Atlantis")


@pytest.mark.parametrize(
    ("moment", "night", "day"),
    [
        (ams(2026, 6, 21, 1, 0), True, False),
        (ams(2026, 6, 21, 5, 0), True, False),
        (ams(2026, 6, 21, 5, 30), False, True),
        (ams(2026, 6, 21, 12, 0), False, True),
        (ams(2026, 6, 21, 22, 0), False, True),
        (ams(2026, 6, 21, 22, 15), True, False),
        (ams(2026, 6, 21, 23, 59), True, False),
    ],
)
def test_sun_condition_night_wraps_and_day_does_not(
    moment: datetime, night: bool, day: bool
) -> None:
    assert sun_condition(moment, AMSTERDAM, "sunset", 0, "sunrise", 0) is night
    assert sun_condition(moment, AMSTERDAM, "sunrise", 0, "sunset", 0) is day


def test_sun_condition_offsets_and_single_sides() -> None:
    evening = ams(2026, 6, 21, 21, 45)  # sunset is 22:06
    assert not sun_condition(evening, AMSTERDAM, "sunset", 0, None, 0)
    assert sun_condition(evening, AMSTERDAM, "sunset", -1800, None, 0)
    assert sun_condition(evening, AMSTERDAM, None, 0, "sunset", 0)
    assert not sun_condition(evening, AMSTERDAM, None, 0, "sunset", -1800)
    # Night from 30 min before sunset to 1 h after sunrise.
    assert sun_condition(evening, AMSTERDAM, "sunset", -1800, "sunrise", 3600)
    assert sun_condition(ams(2026, 6, 21, 6, 0), AMSTERDAM, "sunset", -1800, "sunrise", 3600)
    assert not sun_condition(ams(2026, 6, 21, 6, 30), AMSTERDAM, "sunset", -1800, "sunrise", 3600)
    # No sides: always.
    assert sun_condition(evening, AMSTERDAM, None, 0, None, 0)
    # Time zone of `now` does not matter, only the instant.
    assert sun_condition(evening.astimezone(UTC), AMSTERDAM, "sunset", -1800, None, 0)


def test_sun_condition_polar_night_and_midnight_sun() -> None:
    polar_noon = datetime(2026, 12, 21, 12, 0, tzinfo=OSLO)
    assert sun_condition(polar_noon, TROMSO, "sunset", 0, "sunrise", 0)
    assert not sun_condition(polar_noon, TROMSO, "sunrise", 0, "sunset", 0)
    assert sun_condition(polar_noon, TROMSO, "sunset", 0, None, 0)
    midnight_sun = datetime(2026, 6, 21, 0, 30, tzinfo=OSLO)
    assert not sun_condition(midnight_sun, TROMSO, "sunset", 0, "sunrise", 0)
    assert sun_condition(midnight_sun, TROMSO, "sunrise", 0, "sunset", 0)
    # Sunrise at 01:20 but no sunset: before sunrise it is night, at noon day.
    first_day = datetime(2026, 5, 17, 0, 30, tzinfo=OSLO)
    assert sun_condition(first_day, TROMSO, "sunset", 0, "sunrise", 0)
    assert sun_condition(first_day.replace(hour=12), TROMSO, "sunrise", 0, "sunset", 0)
    assert not sun_condition(first_day.replace(hour=12), TROMSO, "sunset", 0, "sunrise", 0)


def test_sun_condition_rejects_unknown_event() -> None:
    with pytest.raises(ValueError, match="before must be 'sunrise' or 'sunset', got 'dusk'"):
        sun_condition(ams(2026, 6, 21, 12), AMSTERDAM, None, 0, "dusk", 0)


# --- windows, weekdays, intervals ------------------------------------------------------


@pytest.mark.parametrize(
    ("clock", "expected"),
    [
        ("16:59:59", False),
        ("17:00", True),
        ("23:59", True),
        ("00:00", True),
        ("06:59:59", True),
        ("07:00", False),
        ("12:00", False),
    ],
)
def test_time_window_wrapping_midnight(clock: str, expected: bool) -> None:
    now = datetime.combine(date(2026, 1, 5), parse_time_of_day(clock), tzinfo=AMS)
    assert in_time_window(now, time(17), time(7)) is expected


@pytest.mark.parametrize(
    ("clock", "expected"),
    [("08:59", False), ("09:00", True), ("16:59:59", True), ("17:00", False), ("23:00", False)],
)
def test_time_window_within_a_day(clock: str, expected: bool) -> None:
    now = datetime.combine(date(2026, 1, 5), parse_time_of_day(clock), tzinfo=AMS)
    assert in_time_window(now, time(9), time(17)) is expected


def test_time_window_one_sided_open_and_empty() -> None:
    now = ams(2026, 1, 5, 12, 0)
    assert in_time_window(now, time(12), None)
    assert not in_time_window(now, time(12, 0, 1), None)
    assert in_time_window(now, None, time(12, 0, 1))
    assert not in_time_window(now, None, time(12))
    assert in_time_window(now, None, None)
    assert not in_time_window(now, time(12), time(12))


def test_time_window_uses_local_wall_time() -> None:
    # 21:30 UTC is 22:30 in Amsterdam: inside 22:00-23:00 only when read locally.
    now = datetime(2026, 1, 5, 21, 30, tzinfo=UTC)
    assert not in_time_window(now, time(22), time(23))
    assert in_time_window(now.astimezone(AMS), time(22), time(23))


def test_on_weekday() -> None:
    monday = ams(2026, 1, 5, 12)
    assert [on_weekday(monday + timedelta(days=n), ["mon"]) for n in range(7)] == [
        True,
        False,
        False,
        False,
        False,
        False,
        False,
    ]
    for index, name in enumerate(WEEKDAYS):
        assert on_weekday(monday + timedelta(days=index), {name})
    assert on_weekday(monday, ("sat", "Mon"))
    assert not on_weekday(monday, ())
    # Sunday 23:30 UTC is already Monday in Amsterdam.
    late_sunday = datetime(2026, 1, 4, 23, 30, tzinfo=UTC)
    assert on_weekday(late_sunday, ["sun"])
    assert on_weekday(late_sunday.astimezone(AMS), ["mon"])


def test_on_weekday_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown weekday 'monday': expected one of mon, tue"):
        on_weekday(ams(2026, 1, 5), ["monday"])


def test_next_interval() -> None:
    assert next_interval(1000.0, 60.0, 1000.0) == 1060.0
    assert next_interval(1000.0, 60.0, 1059.9) == 1060.0
    assert next_interval(1000.0, 60.0, 1060.0) == 1120.0
    assert next_interval(1000.0, 60.0, 990.0) == 1000.0
    assert next_interval(1000.0, 60.0, 880.0) == 940.0
    # Fractions and large counts stay on the grid and strictly after.
    start, every = 1_767_614_400.1, 0.1
    moment = start
    for _ in range(1000):
        following = next_interval(start, every, moment)
        assert moment < following <= moment + every + 1e-6
        moment = following
    assert moment == pytest.approx(start + 100.0)


@pytest.mark.parametrize("every", [0.0, -5.0, float("nan"), float("inf")])
def test_next_interval_rejects_non_positive_periods(every: float) -> None:
    with pytest.raises(ValueError, match="positive number of seconds"):
        next_interval(0.0, every, 10.0)
