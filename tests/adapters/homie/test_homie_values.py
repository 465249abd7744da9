"""Homie 5 payload rules: the convention's valid and invalid payloads, formats, /set text."""

from __future__ import annotations

import pytest
from homie_support import fixture

from adapters.homie.values import (
    PayloadError,
    PropertySpec,
    format_value,
    parse_format,
    parse_value,
)

PAYLOADS = fixture("payloads")
FORMATS = {"color": "rgb,hsv,xyz"}


def spec(datatype: str, fmt: str | None = None) -> PropertySpec:
    """A property of ``datatype`` with its format parsed, as a description would give it."""
    return PropertySpec("node", "prop", "Prop", datatype, fmt, **parse_format(datatype, fmt))


@pytest.mark.parametrize(
    ("datatype", "payload"),
    [(d, p) for d, cases in PAYLOADS.items() for p in cases["valid"]],
)
def test_valid_payloads_parse(datatype: str, payload: str) -> None:
    parse_value(spec(datatype, FORMATS.get(datatype)), payload.encode())


@pytest.mark.parametrize(
    ("datatype", "payload"),
    [(d, p) for d, cases in PAYLOADS.items() for p in cases["invalid"]],
)
def test_invalid_payloads_are_refused(datatype: str, payload: str) -> None:
    with pytest.raises(PayloadError):
        parse_value(spec(datatype, FORMATS.get(datatype)), payload.encode())


def test_values_and_their_types() -> None:
    assert parse_value(spec("integer", "0:100"), b"42") == 42
    assert parse_value(spec("float", "-20:120"), b"21.5") == 21.5
    assert parse_value(spec("boolean"), b"true") is True
    assert parse_value(spec("duration"), b"PT12H5M46S") == 43546
    assert parse_value(spec("color", "hsv"), b"hsv,300,50,75") == ("hsv", (300, 50, 75))
    assert parse_value(spec("string"), b"\x00") == ""  # Homie's empty string
    assert parse_value(spec("json"), b'{"a": [1]}') == {"a": [1]}
    with pytest.raises(PayloadError, match="array or object"):
        parse_value(spec("json"), b"5")
    with pytest.raises(PayloadError, match="byte order mark"):
        parse_value(spec("string"), b"\xef\xbb\xbfhello")


def test_ranges_and_steps_follow_the_convention() -> None:
    # "2:6:2 will allow values 2, 4, and 6"; values round to the nearest step first.
    stepped = spec("integer", "2:6:2")
    assert [parse_value(stepped, v) for v in (b"2", b"4", b"5", b"6")] == [2, 4, 6, 6]
    with pytest.raises(PayloadError, match="above the maximum"):
        parse_value(stepped, b"8")
    assert parse_value(spec("integer", "0:"), b"99999") == 99999  # open-ended
    with pytest.raises(PayloadError, match="below the minimum"):
        parse_value(spec("integer", "0:"), b"-1")
    with pytest.raises(PayloadError, match="above the maximum"):
        parse_value(spec("integer", ":10"), b"11")
    for datatype, bad in (
        ("integer", "1:2:0"),
        ("integer", "5:1"),
        ("float", "a:b"),
        ("enum", ""),
        ("enum", "a,,b"),
        ("color", "cmyk"),
        ("boolean", "on"),
    ):
        with pytest.raises(PayloadError):
            parse_format(datatype, bad)


def test_set_payloads_in_homie_formats() -> None:
    assert format_value(spec("boolean"), True) == b"true"
    assert format_value(spec("integer", "0:100"), 78.4) == b"78"
    assert format_value(spec("float"), 21.5) == b"21.5"
    assert format_value(spec("float"), 1e16) == b"1e16"  # no '+' in a Homie float
    assert format_value(spec("enum", "forward,reverse"), "reverse") == b"reverse"
    assert format_value(spec("string"), "") == b"\x00"
    with pytest.raises(PayloadError, match="above the maximum"):
        format_value(spec("integer", "0:100"), 101)
    with pytest.raises(PayloadError):
        format_value(spec("enum", "forward,reverse"), "up")
