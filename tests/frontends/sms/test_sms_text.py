"""SMS lengths and cuts, and the front-end's settings as `hub check` reports them."""

from __future__ import annotations

from pathlib import Path

import pytest

from frontends.sms.segments import fit, is_gsm, segments, units
from hub.config import load_config
from hub.plugins import check_plugins


def test_gsm_and_ucs2_segments() -> None:
    assert segments("") == 0
    assert segments("a" * 160) == 1
    assert segments("a" * 161) == 2  # concatenated parts carry 153 characters each
    assert segments("a" * 306) == 2
    assert segments("a" * 307) == 3
    assert units("€[]") == 6  # the extension table costs two septets each
    assert is_gsm("Grüße, ça va? ñ") is False  # ç is not in the GSM alphabet
    assert is_gsm("Küche: 21 °C") is False
    assert segments("ü" * 160) == 1  # ü is GSM
    assert segments("ç" * 70) == 1
    assert segments("ç" * 71) == 2  # UCS-2: 70 alone, 67 per part
    assert segments("💡" * 35) == 1  # a surrogate pair is two UTF-16 units
    assert segments("💡" * 36) == 2


@pytest.mark.parametrize("max_segments", [1, 2, 3])
def test_fit_cuts_visibly_and_keeps_the_choices(max_segments: int) -> None:
    head = "Devices: " + ", ".join(f"light number {n}" for n in range(100))
    tail = "1. Kitchen light\n2. Bedroom light"
    text = fit(head, tail, max_segments)
    assert segments(text) <= max_segments
    assert text.endswith(tail)
    assert "...\n1. Kitchen light" in text
    # As long as possible: one more character of the head would not fit.
    cut = text.index("...")
    longer = head[: cut + 1] + "...\n" + tail
    assert segments(longer) > max_segments
    # A UCS-2 text is cut with a one-character ellipsis, not three dots.
    unicode_text = fit("Küchenlicht an, ça va? " * 40, "", max_segments)
    assert unicode_text.endswith("…")
    assert segments(unicode_text) <= max_segments


def test_short_texts_are_left_alone() -> None:
    assert (
        fit("The kitchen light is on.", "1. Yes\n2. No")
        == "The kitchen light is on.\n1. Yes\n2. No"
    )
    assert fit("", "") == ""


def test_settings_errors_name_the_setting_and_the_reason(tmp_path: Path) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text(
        "frontends:\n"
        "  sms:\n"
        "    account_sid: AC123\n"
        "    auth_token: ''\n"
        "    number: 555-1234\n"
        "    public_url: http://hub.example.com/?token=1\n"
        "    listen: localhost\n"
        "    allow: ['+15550000001', '0044 20 7946 0000']\n"
        "    max_segments: 20\n"
        "    flood_window: soon\n"
        "    surprise: 1\n"
    )
    loaded = load_config(config)
    issues = check_plugins(loaded.config, loaded.source)
    by_path = {issue.path: issue for issue in issues}
    expected = {
        "frontends.sms.account_sid": "'AC' and 32 hexadecimal digits",
        "frontends.sms.auth_token": "must not be empty",
        "frontends.sms.number": "E.164",
        "frontends.sms.public_url": "query",
        "frontends.sms.listen": "host:port",
        "frontends.sms.allow[1]": "E.164",
        "frontends.sms.max_segments": "10",
        "frontends.sms.flood_window": "duration",
        "frontends.sms": "unknown key 'surprise'",
    }
    for path, words in expected.items():
        assert path in by_path, (path, [str(i) for i in issues])
        assert words in by_path[path].message, str(by_path[path])
        assert by_path[path].line > 1
