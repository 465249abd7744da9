"""The router's own texts read in every language the command layer speaks."""

from __future__ import annotations

import re

import pytest

from hub.notify.texts import TEXTS, render

FIELD = re.compile(r"\{(\w+)\}")


@pytest.mark.parametrize("text_id", sorted(TEXTS))
def test_every_notification_text_has_a_german_translation_with_the_same_fields(
    text_id: str,
) -> None:
    params = {name: f"<{name}>" for part in TEXTS[text_id] for name in FIELD.findall(part)}
    english = render(text_id, "en", params)
    german = render(text_id, "de", params)
    if text_id != "custom_event":  # "{event}" / "{details}" carry no words of their own
        assert german != english, f"{text_id} is not translated"
    for en_part, de_part in zip(english, german, strict=True):
        for value in params.values():
            assert (value in en_part) == (value in de_part)


def test_a_german_offline_notice_reads_german() -> None:
    title, text = render("device_offline", "de", {"device": "Gartenpumpe", "since": "12:00"})
    assert title == "Gartenpumpe ist offline"
    assert text == "Gartenpumpe ist seit 12:00 offline."
