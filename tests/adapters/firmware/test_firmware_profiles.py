"""The profile language: a new firmware family with no Python; errors at their line and column."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import pytest
from firmwarehub import (
    HubFactory,
    eventually,
    plugin_status,
    publish,
    running,
    state,
    unique,
    until,
    wait_for,
    write_config,
)
from mqttprobe import MqttProbe
from pydantic import ValidationError

from adapters.firmware import ProfileError, load_profile
from adapters.firmware.profile import BUNDLED, BUNDLED_DIR
from adapters.firmware.settings import FirmwareSettings
from hub.commands import Command
from hub.model import Context, EntityKind, Origin

# A firmware family invented for this test: nothing of it exists in the adapter's code.
ACME = """\
format: 1
title: ACME relay (made up)
manufacturer: ACME
options:
  root: {default: acme, help: the first topic level}
vars:
  serial: {pattern: "[a-z0-9]+"}
device:
  key: serial
  id: "acme-{serial}"
  name: "ACME {serial}"
  model: "{model}"
  discover: true
messages:
  - name: hello
    topic: "{root}/{serial}/hello"
    announce: true
    device: {model: hw}
    availability: {path: status, online: up, offline: down}
  - name: state
    topic: "{root}/{serial}/state"
    decode:
      - path: relay
        entity: relay
        kind: switch
        transform: [{map: {"1": "on", "0": "off"}}]
        commands: relay
      - {path: watts, entity: power, kind: sensor, unit: W, device_class: power}
      - path: wh
        entity: energy
        kind: energy_meter
        unit: kWh
        transform: [wh_to_kwh]
commands:
  relay:
    turn_on: [{topic: "{root}/{serial}/set", json: {relay: 1, ref: "{command_id}"}}]
    turn_off: [{topic: "{root}/{serial}/set", json: {relay: 0, ref: "{command_id}"}}]
"""


async def test_a_new_firmware_family_is_only_a_profile(
    tmp_path: Path, mqtt_url: str, probe: MqttProbe, hub_factory: HubFactory
) -> None:
    """Write a YAML file, list it in profiles: devices appear, report and obey."""
    profile = tmp_path / "profiles" / "acme-relay.yaml"
    profile.parent.mkdir()
    profile.write_text(ACME)
    root = unique("acme")
    config = write_config(
        tmp_path,
        mqtt_url,
        f"    profiles: [profiles/acme-relay.yaml]\n    acme-relay:\n      root: {root}\n",
    )
    probe.subscribe(f"{root}/+/set")
    hub = await hub_factory(config)
    await running(hub)
    await until(
        probe,
        f"{root}/x1/hello",
        {"status": "up", "hw": "R2"},
        lambda: "acme-x1" in hub.registry.devices,
    )
    device = hub.registry.devices["acme-x1"]
    assert (device.name, device.model, device.manufacturer, device.available) == (
        "ACME x1",
        "R2",
        "ACME",
        True,
    )
    await publish(probe, f"{root}/x1/state", {"relay": 0, "watts": 0.5, "wh": 1234})
    await eventually(lambda: state(hub, "acme-x1.relay") == "off")
    assert state(hub, "acme-x1.power") == 0.5
    assert state(hub, "acme-x1.energy") == 1.234
    assert hub.registry.entities["acme-x1.energy"].kind is EntityKind.ENERGY_METER

    cmd = Command("acme-x1.relay", "turn_on", Context(Origin.CLI, "test"))
    task = asyncio.get_running_loop().create_task(hub.commands.execute(cmd, timeout=3))
    _topic, payload = await wait_for(probe, f"{root}/x1/set")
    assert json.loads(payload) == {"relay": 1, "ref": cmd.request_id}
    await publish(probe, f"{root}/x1/state", {"relay": 1})
    assert (await task)[0].ok
    await publish(probe, f"{root}/x1/hello", {"status": "down"})
    await eventually(lambda: not hub.registry.devices["acme-x1"].available)


def test_bundled_profiles_load() -> None:
    """The four bundled profiles are valid."""
    for name in BUNDLED:
        profile = load_profile(BUNDLED_DIR / f"{name}.yaml")
        assert profile.rules, name


BROKEN = """\
format: 1
title: Broken on purpose
vars:
  serial: {pattern: "[a-z"}
  n: {pattern: "[0-9]+", type: number}
devise: {}
device:
  key: serial
messages:
  - topic: "acme/{serail}/state"
    decode:
      - {path: relay, entity: relay, kind: swich}
      - {path: watts, entity: power, kind: sensor, transform: [{scale: many}, wh2kwh]}
      - {path: x, entity: "{nothing}", kind: sensor, unit: W, commands: nope}
  - topic: "acme/#/{serial}"
    formt: json
commands:
  relay:
    turn_of: [{topic: "acme/{serial}/set", payload: "1"}]
"""


def test_profile_errors_all_at_once_at_their_lines(tmp_path: Path) -> None:
    """Every problem of a profile, as file:line:col: path: message, with suggestions."""
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    lines = str(caught.value).splitlines()
    assert all(line.startswith(f"{path}:") for line in lines), lines
    text = str(caught.value)
    # Structure first (the whole file is checked before anything is compiled).
    assert f"{path}:5:32: vars.n.type: expected one of 'text', 'int', got 'number'" in text
    assert f"{path}:6:1: <root>: unknown key 'devise' (did you mean 'device'?)" in text
    assert f"{path}:16:5: messages[1]: unknown key 'formt' (did you mean 'format'?)" in text
    assert "unknown key 'turn_of' (did you mean 'turn_off'?)" in text

    fixed = BROKEN.replace("type: number", "type: int").replace("devise: {}\n", "")
    fixed = fixed.replace("    formt: json\n", "").replace("turn_of", "turn_off")
    path.write_text(fixed)
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    text = str(caught.value)
    assert "vars.serial.pattern: invalid regular expression" in text
    assert "messages[0].topic: unknown placeholder {serail} (did you mean 'serial'?)" in text
    assert (
        "messages[0].decode[0].kind: unknown entity kind 'swich' (did you mean 'switch'?)" in text
    )
    assert "scale takes a number, got 'many'" in text
    assert "unknown transform 'wh2kwh'" in text
    assert "unknown placeholder {nothing}" in text
    assert "unknown command set 'nope'" in text
    assert "wildcard" in text  # acme/#/... can never be a topic level
    for line in text.splitlines():
        file, line_no, col, _rest = line.split(":", 3)
        assert file == str(path), line
        assert int(line_no) > 1, line
        assert int(col) >= 1, line


def test_settings_are_checked_against_the_profiles() -> None:
    """Unknown sections are refused with a suggestion; per-profile sections are typed."""
    FirmwareSettings.model_validate({"tasmota": {"devices": ["a", {"topic": "b", "id": "x"}]}})
    with pytest.raises(ValidationError, match=r"unknown key 'tasmot' \(did you mean 'tasmota'\?\)"):
        FirmwareSettings.model_validate({"tasmot": {"devices": ["a"]}})
    with pytest.raises(ValidationError, match="listed twice"):
        FirmwareSettings.model_validate({"profiles": ["tasmota", "tasmota"]})
    with pytest.raises(ValidationError):
        FirmwareSettings.model_validate({"tasmota": {"devices": [{"topic": "a", "entities": 3}]}})


async def test_bad_profile_or_option_fails_the_start_clearly(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory
) -> None:
    """A broken profile or an unknown option stops the adapter with the reason; not the hub."""
    (tmp_path / "broken.yaml").write_text(BROKEN)
    config = write_config(tmp_path, mqtt_url, "    profiles: [./broken.yaml]\n")
    hub = await hub_factory(config)
    await eventually(lambda: plugin_status(hub).get("last_error"))
    error = plugin_status(hub)["last_error"]
    assert "broken.yaml:6:1: <root>: unknown key 'devise'" in error
    assert hub.started

    config = write_config(
        tmp_path,
        mqtt_url,
        textwrap.indent("profiles: [tasmota]\ntasmota:\n  full_topik: x/%topic%/\n", "    "),
        name="hub2.yaml",
    )
    hub = await hub_factory(config)
    await eventually(lambda: plugin_status(hub).get("last_error"))
    assert "no option 'full_topik' (did you mean 'full_topic'?)" in plugin_status(hub)["last_error"]


async def test_an_option_value_with_a_wildcard_is_refused(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory
) -> None:
    """Options become topics: a '#' in one is a configuration error, not a subscription."""
    config = write_config(
        tmp_path,
        mqtt_url,
        '    profiles: [tasmota]\n    tasmota:\n      full_topic: "#/%topic%/"\n',
    )
    hub = await hub_factory(config)
    await eventually(lambda: plugin_status(hub).get("last_error"))
    assert "wildcard" in plugin_status(hub)["last_error"]
    _ = running  # the adapter never reaches running here
