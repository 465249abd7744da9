"""Durations as people write them."""

import math
import re

import pytest
from pydantic import BaseModel, ValidationError

from hub.durations import Duration, parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (5, 5.0),
        (2.5, 2.5),
        (0, 0.0),
        ("5", 5.0),
        ("0.25", 0.25),
        ("500ms", 0.5),
        ("5s", 5.0),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("1h 30m 15s", 5415.0),
        ("1.5h", 5400.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("10 seconds", 10.0),
        ("3 Minutes", 180.0),
        ("01:30:00", 5400.0),
        ("00:00:01.5", 1.5),
        ("1:05", 3900.0),
        ("  5s  ", 5.0),
    ],
)
def test_parse_duration_accepts(value: int | float | str, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("abc", "expected a number of seconds or a duration like '5s', got 'abc'"),
        ("", "expected a number of seconds"),
        ("5 parsecs", "unknown duration unit 'parsecs'"),
        ("1h1h", "same unit twice"),
        ("-5s", "cannot be negative"),
        (-1, "cannot be negative"),
        ("01:75:00", "expected a number of seconds"),
        (math.inf, "must be finite"),
        (math.nan, "must be finite"),
        (True, "expected a number of seconds"),
        ("5s garbage", "expected a number of seconds"),
    ],
)
def test_parse_duration_rejects_with_a_clear_message(value: object, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        parse_duration(value)  # type: ignore[arg-type]


def test_duration_is_a_pydantic_field_type() -> None:
    class Settings(BaseModel):
        timeout: Duration = 1.0

    assert Settings.model_validate({"timeout": "1m30s"}).timeout == 90.0
    assert Settings().timeout == 1.0
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({"timeout": "soon"})
    error = caught.value.errors()[0]
    assert error["loc"] == ("timeout",)
    assert "got 'soon'" in error["msg"]
