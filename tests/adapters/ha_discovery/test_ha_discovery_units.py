"""The discovery adapter's pure parts: templates, abbreviations, component configs, commands."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.ha_discovery.abbreviations import ABBREVIATIONS, expand
from adapters.ha_discovery.components import (
    ConfigError,
    DeviceInfo,
    StateError,
    build_command,
    build_component,
    interpret,
    parse_device,
    sanitize_id,
)
from adapters.ha_discovery.template import UNDEFINED, Template, TemplateError
from hub.api import CommandError, EntityKind


def render(source: str, **variables: Any) -> Any:
    return Template(source).render(variables)


# Templates real firmwares publish (Tasmota, Zigbee2MQTT, ESPHome users, the HA docs).
@pytest.mark.parametrize(
    ("source", "variables", "expected"),
    [
        ("{{ value_json.temperature}}", {"value_json": {"temperature": 23.2}}, 23.2),
        ("{{value_json['ENERGY'].Today}}", {"value_json": {"ENERGY": {"Today": 0.984}}}, 0.984),
        ("{{value_json['ENERGY']['Yesterday']}}", {"value_json": {"ENERGY": {"Yesterday": 0}}}, 0),
        ("{{value_json.POWER1}}", {"value_json": {"POWER1": "ON"}}, "ON"),
        ("{{ value }}", {"value": "21.5"}, "21.5"),
        ("{{ value | float }}", {"value": " 21.5 "}, 21.5),
        ("{{ value | int }}", {"value": "21.7"}, 21),
        ("{{ value | float(0) }}", {"value": "n/a"}, 0),
        ("{{ value_json.x | float | round(1) }}", {"value_json": {"x": "21.46"}}, 21.5),
        (
            "{{ (value_json.brightness / 2.54) | round(0) }}",
            {"value_json": {"brightness": 254}},
            100,
        ),
        ("{{ value_json.missing | default('n/a') }}", {"value_json": {}}, "n/a"),
        ("{{ value_json.state | lower }}", {"value_json": {"state": "ON"}}, "on"),
        ("{{ value | upper }}", {"value": "open"}, "OPEN"),
        (
            "{{ 'ON' if value_json.occupancy else 'OFF' }}",
            {"value_json": {"occupancy": True}},
            "ON",
        ),
        ("{{ 'on' if value == '1.0' else 'off' }}", {"value": "0.0"}, "off"),
        (
            "{% if value_json.s == 'ON' %}on{% else %}off{% endif %}",
            {"value_json": {"s": "ON"}},
            "on",
        ),
        (
            '{% if "running" in value_json and value_json.running %} '
            "{% if value_json.position > 0 %} closing {% else %} opening {% endif %} "
            "{% else %} stopped {% endif %}",
            {"value_json": {"running": True, "position": 0}},
            "opening",
        ),
        (
            "{% set values = {None:None,'idle':'idle','heat':'heating','cool':'cooling',"
            "'fan_only':'fan'} %}{{ values[value_json.running_state] }}",
            {"value_json": {"running_state": "cool"}},
            "cooling",
        ),
        ('{ "position": {{ position }} }', {"position": 42}, '{ "position": 42 }'),
        (
            "{{ '%0.1f'|format(value_json.RainTotal) }}",
            {"value_json": {"RainTotal": 3.14159}},
            "3.1",
        ),
        ("{{ value_json.update['state'] }}", {"value_json": {"update": {"state": "idle"}}}, "idle"),
        ("{{ value.split(',')[1] | trim }}", {"value": "a, b"}, "b"),
        (
            "{{ value_json.a is defined and value_json.a is number }}",
            {"value_json": {"a": 1}},
            True,
        ),
        ("{{ value_json.list[-1] }}", {"value_json": {"list": [1, 2, 3]}}, 3),
        ("{{ value[1:3] }}", {"value": "abcd"}, "bc"),
        ("{{ iif(value_json.x, 'yes', 'no') }}", {"value_json": {"x": 0}}, "no"),
        ("{{ value_json | tojson }}", {"value_json": {"a": 1}}, '{"a":1}'),
        ("{{ 'S710=' ~ value }}", {"value": 19.5}, "S710=19.5"),
        ("{{ value_json.x }}", {"value_json": {}}, UNDEFINED),
        ("{{ value_json.x.y.z }}", {"value_json": {}}, UNDEFINED),
        ("  {%- if true -%}  yes  {%- endif -%}  ", {}, "yes"),
        ("{# comment #}{{ 1 + 2 * 3 ** 2 }}", {}, 19),
        ("{{ -2 | abs }}", {}, 2),
        ("{{ [1, 2] | join('-') }}", {}, "1-2"),
        ("{{ value_json.get('a', 5) }}", {"value_json": {}}, 5),
    ],
)
def test_template_subset(source: str, variables: dict[str, Any], expected: Any) -> None:
    assert render(source, **variables) == expected


@pytest.mark.parametrize(
    "source",
    [
        "{% for x in value %}{{ x }}{% endfor %}",  # no loops: evaluation stays bounded
        "{{ value | attr('__class__') }}",
        "{% import 'os' as os %}",
        "{{ value",
        "{% if x %}",
        "{% endif %}",
        "{{ 1 + }}",
        "{{ " + "(" * 100 + "1" + ")" * 100 + " }}",
        "x" * 5000,
    ],
)
def test_template_refused_when_parsed(source: str) -> None:
    with pytest.raises(TemplateError):
        Template(source)


@pytest.mark.parametrize(
    ("source", "variables"),
    [
        ("{{ value | float }}", {"value": "abc"}),  # Home Assistant: no default, an error
        ("{{ value | int }}", {"value": "x"}),
        ("{{ value_json.x + 1 }}", {"value_json": {}}),
        ("{{ 'a' * 100000 }}", {}),
        ("{{ 10 ** 10000 }}", {}),
        ("{{ 1 / 0 }}", {}),
        ("{{ '%999999999d' | format(1) }}", {}),
        ("{{ value.__class__() }}", {"value": "x"}),
        ("{{ range(10) }}", {}),
        ("{{ value.lower }}", {"value": "X"}),  # a method is not a value
    ],
)
def test_template_fails_safely_when_run(source: str, variables: dict[str, Any]) -> None:
    with pytest.raises(TemplateError):
        render(source, **variables)


def test_no_python_object_is_reachable() -> None:
    # Attribute access reaches only JSON keys and a few string/dict methods.
    assert render("{{ value.__class__ }}", value="x") is UNDEFINED
    assert render("{{ value_json.__init__ }}", value_json={}) is UNDEFINED
    assert render("{{ value_json['__class__'] }}", value_json={}) is UNDEFINED


def test_abbreviations_and_base_topic() -> None:
    expanded = expand(
        {
            "~": "homeassistant/switch/irrigation",
            "name": "garden",
            "cmd_t": "~/set",
            "stat_t": "~/state",
            "avty": [{"t": "~/avail", "pl_avail": "up"}],
            "json_attr_t": "tele/~",
            "dev": {"ids": ["x"], "cns": [["mac", "AA"]], "mf": "m", "mdl": "d", "sw": "1"},
            "o": {"name": "fw", "sw": "2", "url": "u"},
            "val_tpl": "{{ value }}",
            "uniq_id": "u1",
        }
    )
    assert expanded["command_topic"] == "homeassistant/switch/irrigation/set"
    assert expanded["state_topic"] == "homeassistant/switch/irrigation/state"
    assert expanded["json_attributes_topic"] == "tele/homeassistant/switch/irrigation"
    assert expanded["availability"] == [
        {"topic": "homeassistant/switch/irrigation/avail", "payload_available": "up"}
    ]
    assert expanded["device"] == {
        "identifiers": ["x"],
        "connections": [["mac", "AA"]],
        "manufacturer": "m",
        "model": "d",
        "sw_version": "1",
    }
    assert expanded["origin"] == {"name": "fw", "sw_version": "2", "support_url": "u"}
    assert (expanded["value_template"], expanded["unique_id"]) == ("{{ value }}", "u1")
    assert "~" not in expanded
    # Device discovery: each component inherits the root's "~" and is expanded too.
    device = expand({"~": "b", "cmps": {"a": {"p": "sensor", "stat_t": "~/s"}}})
    assert device["components"]["a"] == {"platform": "sensor", "state_topic": "b/s"}


def test_abbreviation_table_is_complete_for_common_keys() -> None:
    for short in (
        "stat_t",
        "cmd_t",
        "avty_t",
        "dev",
        "uniq_id",
        "val_tpl",
        "json_attr_t",
        "pl_on",
        "pl_off",
        "bri_cmd_t",
        "bri_scl",
        "pos_t",
        "set_pos_tpl",
        "temp_cmd_t",
        "mode_cmd_t",
        "curr_temp_t",
        "pl_lock",
        "pl_prs",
        "ops",
        "cmps",
    ):
        assert short in ABBREVIATIONS


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("zigbee2mqtt_0x00158d0003cb2b18", "zigbee2mqtt_0x00158d0003cb2b18"),
        ("84:0D:8E:52:28:51", "84_0d_8e_52_28_51"),
        ("D04DF5", "d04df5"),
        ("__Küche kaffee!", "k_che_kaffee"),
        ("x" * 100, "x" * 64),
        ("!!!", "device"),
    ],
)
def test_sanitize_id(raw: str, expected: str) -> None:
    assert sanitize_id(raw) == expected


def make(platform: str, config: dict[str, Any]) -> Any:
    data = expand(config)
    device = parse_device(data.get("device")) or DeviceInfo()
    return build_component(
        platform, data, discovery_id=f"{platform}/x", object_id="x", device_id="dev", device=device
    )


def test_sensor_units_map_to_energy_and_power() -> None:
    wh = make("sensor", {"stat_t": "a", "unit_of_meas": "Wh"})
    assert (wh.kind, wh.unit) == (EntityKind.ENERGY_METER, "kWh")
    assert interpret(wh, "state", "1500").value == 1.5  # type: ignore[union-attr]
    kw = make("sensor", {"stat_t": "a", "unit_of_meas": "kW"})
    assert (kw.kind, kw.unit) == (EntityKind.SENSOR, "W")
    assert interpret(kw, "state", 1.2).value == 1200  # type: ignore[union-attr]
    text = make("sensor", {"stat_t": "a"})
    assert interpret(text, "state", "charging").value == "charging"  # type: ignore[union-attr]
    with pytest.raises(StateError):
        interpret(wh, "state", "lots")


def test_interpret_skips_what_a_message_does_not_say() -> None:
    sensor = make("sensor", {"stat_t": "a", "unit_of_meas": "W"})
    assert interpret(sensor, "state", UNDEFINED) is None
    assert interpret(sensor, "state", "  ") is None


def test_number_and_select_are_settable_with_their_range_and_options() -> None:
    number = make("number", {"cmd_t": "a/set", "stat_t": "a", "min": 0, "max": 10})
    assert number.kind is EntityKind.NUMBER
    assert (number.options["min"], number.options["max"], number.options["step"]) == (0, 10, 1)
    assert interpret(number, "state", "7").value == 7  # type: ignore[union-attr]
    with pytest.raises(StateError):
        interpret(number, "state", "11")
    select = make("select", {"cmd_t": "a/set", "stat_t": "a", "ops": ["on", "off", "restore"]})
    assert interpret(select, "state", "restore").value == "restore"  # type: ignore[union-attr]
    with pytest.raises(StateError):
        interpret(select, "state", "maybe")
    with pytest.raises(ConfigError):
        make("select", {"cmd_t": "a/set", "stat_t": "a", "ops": []})
    assert select.kind is EntityKind.SELECT
    with pytest.raises(ConfigError, match="'step' must be above 0"):
        make("number", {"cmd_t": "a/set", "step": 0})


def test_set_value_renders_the_command_template_like_home_assistant() -> None:
    # A whole number goes without a decimal point, as Home Assistant sends it.
    number = make("number", {"cmd_t": "n/set", "min": -5, "max": 5, "step": 0.5})
    assert number.optimistic  # no state topic: the hub reports what it sent
    messages, update = build_command(number, "set_value", {"value": 2.0}, None)
    assert [(m.topic, m.payload) for m in messages] == [("n/set", "2")]
    assert update is not None
    assert update.value == 2
    templated = make(
        "number",
        {"cmd_t": "n/set", "stat_t": "n", "cmd_tpl": '{"level": {{ value }}}', "max": 255},
    )
    messages, _ = build_command(templated, "set_value", {"value": 1.5}, None)
    assert [m.payload for m in messages] == ['{"level": 1.5}']
    with pytest.raises(CommandError, match="accepts 1 to 255, not 300"):
        build_command(templated, "set_value", {"value": 300}, None)
    select = make(
        "select", {"cmd_t": "s/set", "ops": ["eco", "comfort"], "cmd_tpl": "M{{ value }}"}
    )
    messages, update = build_command(select, "set_value", {"value": "eco"}, None)
    assert [(m.topic, m.payload) for m in messages] == [("s/set", "Meco")]
    with pytest.raises(CommandError, match="no option 'boost'"):
        build_command(select, "set_value", {"value": "boost"}, None)


def test_cover_positions_follow_position_open_and_closed() -> None:
    # A firmware that counts 0 as open and 255 as closed.
    cover = make(
        "cover",
        {
            "cmd_t": "c/set",
            "pos_t": "c/pos",
            "set_pos_t": "c/pos/set",
            "pos_open": 0,
            "pos_clsd": 255,
        },
    )
    update = interpret(cover, "position", "255")
    assert update is not None
    assert (update.value, update.attributes) == ("closed", {"position": 0})
    messages, optimistic = build_command(cover, "set_position", {"position": 40}, "open")
    assert [(m.topic, m.payload) for m in messages] == [("c/pos/set", "153")]
    assert optimistic is not None
    assert optimistic.attributes == {"position": 40}


def test_commands_follow_the_config() -> None:
    switch = make(
        "switch",
        {
            "cmd_t": "s/set",
            "stat_t": "s",
            "pl_on": True,
            "pl_off": False,
            "cmd_tpl": '{"state": {{ value | lower }}}',
        },
    )
    messages, _ = build_command(switch, "turn_on", {}, "off")
    assert [(m.topic, m.payload) for m in messages] == [("s/set", '{"state": true}')]
    assert interpret(switch, "state", True).value == "on"  # type: ignore[union-attr]
    button = make("button", {"cmd_t": "b/press"})
    messages, optimistic = build_command(button, "press", {}, None)
    assert [(m.topic, m.payload) for m in messages] == [("b/press", "PRESS")]
    assert optimistic is None
    light = make(
        "light",
        {"cmd_t": "l/set", "bri_cmd_t": "l/bri", "bri_scl": 100, "on_cmd_type": "first"},
    )
    messages, optimistic = build_command(light, "turn_on", {"brightness": 255}, "off")
    assert [(m.topic, m.payload) for m in messages] == [("l/set", "ON"), ("l/bri", "100")]
    assert optimistic is not None
    assert (optimistic.value, optimistic.attributes) == ("on", {"brightness": 255})
    with pytest.raises(CommandError, match="color_temp"):
        build_command(light, "turn_on", {"color_temp": 300}, "off")
    climate = make("climate", {"mode_cmd_t": "c/mode", "modes": ["off", "heat"]})
    with pytest.raises(CommandError, match="no mode 'cool'"):
        build_command(climate, "set_mode", {"mode": "cool"}, "heat")
    with pytest.raises(CommandError, match="temperature_command_topic"):
        build_command(climate, "set_temperature", {"temperature": 20}, "heat")
    messages, _ = build_command(climate, "turn_on", {}, "off")
    assert [(m.topic, m.payload) for m in messages] == [("c/mode", "heat")]


def test_device_block_forms() -> None:
    esphome = parse_device({"identifiers": "6055f97b55e0", "connections": [["mac", "AA:BB"]]})
    assert esphome is not None
    assert esphome.identifiers == ("6055f97b55e0",)
    assert esphome.connections == (("mac", "AA:BB"),)
    with pytest.raises(ConfigError):
        parse_device({"identifiers": [{"a": 1}]})
    with pytest.raises(ConfigError):
        parse_device({"connections": ["mac"]})
