"""The pieces of the profile language: templates, topic patterns, JSON paths, transforms."""

from __future__ import annotations

import pytest

from adapters.firmware.paths import parse_path
from adapters.firmware.profile import BUNDLED_DIR, load_profile
from adapters.firmware.templates import (
    Template,
    TemplateError,
    compile_topic,
    filter_covers,
)
from adapters.firmware.transforms import SKIP, TransformError, compile_transform


@pytest.mark.parametrize(
    ("full_topic", "lwt_filter", "power_topic"),
    [
        # The FullTopic examples of Tasmota's MQTT documentation.
        ("%prefix%/%topic%/", "tele/+/LWT", "cmnd/plug/POWER"),
        ("tasmota/%topic%/%prefix%/", "tasmota/+/tele/LWT", "tasmota/plug/cmnd/POWER"),
        (
            "tasmota/bedroom/%topic%/%prefix%/",
            "tasmota/bedroom/+/tele/LWT",
            "tasmota/bedroom/plug/cmnd/POWER",
        ),
        ("%prefix%/home/cellar/%topic%/", "tele/home/cellar/+/LWT", "cmnd/home/cellar/plug/POWER"),
    ],
)
def test_tasmota_full_topic_tokens(full_topic: str, lwt_filter: str, power_topic: str) -> None:
    """FullTopic tokens become placeholders; filters and command topics follow them."""
    profile = load_profile(BUNDLED_DIR / "tasmota.yaml")
    expander = profile.expander({"full_topic": full_topic})
    lwt = next(rule for rule in profile.rules if rule.name == "lwt")
    expanded = expander.expand(lwt.topic, rule_vars=lwt.vars)
    pattern = compile_topic(expanded, profile.var_patterns)
    assert pattern.filter == lwt_filter
    assert pattern.match(lwt_filter.replace("+", "plug")) == {"topic": "plug"}
    turn_on = profile.commands["power"].actions["turn_on"][0]
    command = expander.expand(
        turn_on.topic, rule_vars=turn_on.vars, values={"n": ""}, device={"topic": "plug"}
    )
    assert command.constant
    assert command.text() == power_topic


def test_topic_patterns() -> None:
    """A level holding a placeholder is '+'; patterns decide what it captures."""
    patterns = {"prefix": "[a-z0-9-]+", "channel": "[0-9]+", "n": "[1-8]?"}
    status = compile_topic(Template.parse("{prefix}/status/switch:{channel}"), patterns)
    assert status.filter == "+/status/+"
    assert status.match("shelly-1/status/switch:2") == {"prefix": "shelly-1", "channel": "2"}
    assert status.match("shelly-1/status/input:2") is None
    power = compile_topic(Template.parse("stat/{prefix}/POWER{n}"), patterns)
    assert power.match("stat/plug/POWER") == {"prefix": "plug", "n": ""}
    assert power.match("stat/plug/POWER9") is None
    with pytest.raises(TemplateError, match="wildcard"):
        compile_topic(Template.parse("a/#/{prefix}"), patterns)
    with pytest.raises(TemplateError, match="stray"):
        Template.parse("a/{b")
    assert filter_covers("tele/+/LWT", "tele/plug/LWT")
    assert filter_covers("+/status/+", "dev/status/+")
    assert not filter_covers("home/tele/+/LWT", "tele/plug/LWT")
    assert not filter_covers("tele/plug/LWT", "tele/+/LWT")


def test_json_paths() -> None:
    """Keys, list indexes, key patterns that bind, and '*'."""
    patterns = {"n": "[1-8]?", "channel": "[0-9]+", "sensor": "[A-Za-z0-9]+"}
    ints = frozenset({"channel"})
    data = {
        "POWER1": "ON",
        "POWER2": "OFF",
        "tp": ["cmnd", "stat", "tele"],
        "params": {"switch:0": {"output": True}, "switch:1": {"output": False}, "ts": 1.5},
        "AM2301": {"Temperature": 24.6},
        "events": [{"event": "single_push"}, {"event": "long_push"}],
    }
    found = parse_path("POWER{n}", patterns, ints).find(data, {})
    assert sorted((v, b["n"]) for v, b in found) == [("OFF", "2"), ("ON", "1")]
    assert parse_path("tp.1", patterns, ints).get(data) == "stat"
    outputs = parse_path("params.switch:{channel}.output", patterns, ints).find(data, {})
    assert sorted((b["channel"], v) for v, b in outputs) == [(0, True), (1, False)]
    # A variable already bound (by the topic) must agree.
    assert parse_path("params.switch:{channel}.output", patterns, ints).find(
        data, {"channel": 1}
    ) == [(False, {"channel": 1})]
    assert parse_path("{sensor}.Temperature", patterns, ints).find(data, {}) == [
        (24.6, {"sensor": "AM2301"})
    ]
    events = parse_path("events.*.event", patterns, ints).find(data, {})
    assert events == [("single_push", {"index": 0}), ("long_push", {"index": 1})]
    assert parse_path("missing.x", patterns, ints).find(data, {}) == []


def test_transforms() -> None:
    """The fixed set, each refusing what does not fit."""
    assert compile_transform({"scale": 2.55})(50) == pytest.approx(127.5)
    assert compile_transform({"round": 0})(50 * 2.55) == 128  # half away from zero
    # Readings with no more decimals than asked for keep their value (the quick path)...
    assert compile_transform({"round": 6})(1234.567 / 1000) == 1.234567
    assert compile_transform({"round": 2})(-0.0) == 0.0
    assert compile_transform({"round": 1})(41) == 41
    # ...the others round half away from zero on the decimal they stand for.
    assert compile_transform({"round": 2})(2.675) == 2.68  # 2.67499999... in binary
    assert compile_transform({"round": 2})(-1.005) == -1.01
    assert compile_transform({"round": 6})(0.1 + 0.2) == 0.3
    # A huge reading is whole already (it used to fail inside the decimal arithmetic).
    assert compile_transform({"round": 9})(1e20) == 1e20
    assert compile_transform("wh_to_kwh")(11679) == 11.679
    assert compile_transform("number")("23.5") == 23.5
    assert compile_transform("number")("21") == 21
    assert compile_transform("number")("nan") is SKIP
    on_off = compile_transform({"on_off": ["ON", "OFF"]})
    assert (on_off("ON"), on_off("off"), on_off(True)) == ("on", "off", "on")
    mapping = compile_transform({"map": {"1": "on", "0": "off"}})
    assert (mapping(1), mapping("0")) == ("on", "off")
    for transform, value in [
        ("number", "warm"),
        ({"scale": 2}, "5"),
        ({"scale": 2}, True),
        ({"on_off": ["ON", "OFF"]}, 1),
        ({"map": {"1": "on"}}, 2),
    ]:
        with pytest.raises(TransformError):
            compile_transform(transform)(value)
    for bad in [
        "scale",
        {"scale": "x"},
        {"round": 12},
        {"on_off": ["ON"]},
        "square",
        {"a": 1, "b": 2},
    ]:
        with pytest.raises(ValueError):  # noqa: PT011 - each says why in its own words
            compile_transform(bad)
