"""Scenes across restarts and from another folder: a real hub, Mosquitto, simulated devices."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hubtest import HubFactory, eventually, write_config
from mqttprobe import MqttProbe

from hub.commands import Command
from hub.core import Hub
from hub.model import Context, Origin
from hub.scenes import SceneError
from hub.simulator import Light, Plug, SimDevice, Simulator, Thermostat, build_home

REPO = Path(__file__).resolve().parents[2]

SCENES = """
- id: cosy
  name: Cosy
  entities:
    living_room_light.light: {state: "on", brightness: 150, color_temp: 454}
    kitchen_light.light: "off"
    living_room_tv_plug.switch: "on"
    living_room_thermostat.thermostat: {mode: cool, temperature: 24}
"""

DEVICES = ("living_room_light", "kitchen_light", "living_room_tv_plug", "living_room_thermostat")
ENTITIES = (
    "living_room_light.light",
    "kitchen_light.light",
    "living_room_tv_plug.switch",
    "living_room_thermostat.thermostat",
)
TEST = Context(Origin.CLI, "test")


def hub_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


class Home:
    """hub.yaml with the cosy scene, and a simulated home that outlives the hubs started on it."""

    def __init__(self, config: Path, mqtt_url: str, hub_factory: HubFactory) -> None:
        self.config = config
        self.devices = {device.id: device for device in build_home(36, seed=1)}
        self._mqtt_url = mqtt_url
        self._hub_factory = hub_factory
        self.sim: Simulator | None = None

    async def start_hub(self) -> Hub:
        """Start a hub on the config; the devices' first states need the first hub listening
        (they are not retained), later hubs have them from the database."""
        hub = await self._hub_factory(self.config, start_plugins=False, start_rules=False)
        if self.sim is None:
            sim = Simulator(
                self._mqtt_url,
                list(self.devices.values()),
                rate=0,
                prefix=hub.config.hub.device_topic,
            )
            await asyncio.to_thread(sim.start)
            self.sim = sim
        await wait_for_devices(hub)
        return hub


@pytest.fixture
async def home(mqtt_url: str, tmp_path: Path, hub_factory: HubFactory) -> AsyncIterator[Home]:
    config = write_config(tmp_path, mqtt_url)
    (tmp_path / "scenes").mkdir()
    (tmp_path / "scenes" / "cosy.yaml").write_text(textwrap.dedent(SCENES))
    home = Home(config, mqtt_url, hub_factory)
    try:
        yield home
    finally:
        if home.sim is not None:
            await asyncio.to_thread(home.sim.stop)


async def wait_for_devices(hub: Hub) -> None:
    await eventually(
        lambda: (
            all(
                device_id in hub.registry.devices and hub.registry.devices[device_id].available
                for device_id in DEVICES
            )
            and all(entity_id in hub.registry.states for entity_id in ENTITIES)
        ),
        10,
        "the simulated devices did not show up",
    )


async def set_known_states(hub: Hub) -> None:
    """Put the scene's entities into states that differ from the scene in every respect."""
    commands = [
        ("living_room_light.light", "turn_on", {"brightness": 100, "color_temp": 250}),
        ("kitchen_light.light", "turn_on", {}),
        ("living_room_tv_plug.switch", "turn_off", {}),
        ("living_room_thermostat.thermostat", "set_mode", {"mode": "heat"}),
        ("living_room_thermostat.thermostat", "set_temperature", {"temperature": 20.0}),
    ]
    for entity_id, action, params in commands:
        [done] = await hub.commands.execute(Command(entity_id, action, TEST, params))
        assert done.ok, done


def device_states(devices: Mapping[str, SimDevice]) -> dict[str, Any]:
    """What the simulated devices themselves are at (not what the hub believes)."""
    light, kitchen = devices["living_room_light"], devices["kitchen_light"]
    plug, thermostat = devices["living_room_tv_plug"], devices["living_room_thermostat"]
    assert isinstance(light, Light)
    assert isinstance(kitchen, Light)
    assert isinstance(plug, Plug)
    assert isinstance(thermostat, Thermostat)
    return {
        "light": (light.on, light.brightness, light.color_temp),
        "kitchen": kitchen.on,
        "plug": plug.on,
        "thermostat": (thermostat.mode, thermostat.target),
    }


BEFORE = {
    "light": (True, 100, 250),
    "kitchen": True,
    "plug": False,
    "thermostat": ("heat", 20.0),
}
COSY = {
    "light": (True, 150, 454),
    "kitchen": False,
    "plug": True,
    "thermostat": ("cool", 24.0),
}


async def test_a_scene_applied_before_a_restart_is_reverted_after_it(
    home: Home, mqtt_url: str
) -> None:
    config, devices = home.config, home.devices
    first = await home.start_hub()
    await set_known_states(first)
    assert device_states(devices) == BEFORE

    # Applied the way a user does: over MQTT (what `hub scene apply` sends).
    with MqttProbe(mqtt_url) as probe:
        await asyncio.to_thread(probe.publish, f"{first.base_topic}/scenes/cosy/apply", "", 1)
    await eventually(lambda: device_states(devices) == COSY, 10, "the scene was not applied")
    await first.stop()

    second = await home.start_hub()
    assert second.scenes is not None
    assert second.scenes.snapshot("cosy") is not None
    assert device_states(devices) == COSY  # a restart alone changes nothing

    reverted = await asyncio.to_thread(hub_cli, "scene", "revert", "cosy", "--config", str(config))
    assert reverted.returncode == 0, reverted.stderr
    await eventually(lambda: device_states(devices) == BEFORE, 10, "the scene was not reverted")
    light = second.registry.states["living_room_light.light"]
    assert (light.value, light.attributes["brightness"]) == ("on", 100)
    assert ("scene", "cosy") in [(c.origin.value, c.source) for c in light.context.chain()]
    await eventually(lambda: second.scenes is not None and second.scenes.snapshot("cosy") is None)
    await second.stop()

    # Reverting removed the stored snapshot: a third start has nothing to revert to.
    third = await home.start_hub()
    assert third.scenes is not None
    assert third.scenes.snapshot("cosy") is None
    with pytest.raises(SceneError, match="nothing to revert to"):
        await third.scenes.revert("cosy", context=TEST)


async def test_reapplying_an_active_scene_after_a_restart_keeps_the_first_snapshot(
    home: Home,
) -> None:
    devices = home.devices
    first = await home.start_hub()
    await set_known_states(first)
    assert first.scenes is not None
    assert (await first.scenes.apply("cosy", context=TEST))["ok"]
    await first.stop()

    second = await home.start_hub()
    assert second.scenes is not None
    assert (await second.scenes.apply("cosy", context=TEST))["ok"]  # still active: no new one
    result = await second.scenes.revert("cosy", context=TEST)
    assert result["ok"], result
    await eventually(lambda: device_states(devices) == BEFORE, 10)


async def test_entities_gone_since_are_skipped_and_named_the_rest_is_reverted(
    home: Home,
    hub_factory: HubFactory,
    mqtt_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config, devices = home.config, home.devices
    first = await home.start_hub()
    await set_known_states(first)
    assert first.scenes is not None
    assert (await first.scenes.apply("cosy", context=TEST))["ok"]
    prefix = first.config.hub.device_topic
    await first.stop()

    # While the hub is down the TV plug removes itself (an empty retained config).
    with MqttProbe(mqtt_url) as probe:
        await asyncio.to_thread(probe.publish, f"{prefix}/living_room_tv_plug/config", b"", 1, True)
    second = await hub_factory(config, start_plugins=False, start_rules=False)
    gone = "living_room_tv_plug.switch"
    await eventually(lambda: gone not in second.registry.entities, 10, "the plug was not removed")
    await eventually(
        lambda: all(
            second.registry.devices[d].available for d in DEVICES if d != "living_room_tv_plug"
        ),
        10,
    )
    assert second.scenes is not None
    with caplog.at_level(logging.WARNING, logger="hub.scenes"):
        result = await second.scenes.revert("cosy", context=TEST)
    assert result["ok"], result
    assert result["missing"] == [gone]
    assert gone not in result["entities"]
    assert f"1 entity no longer exists and cannot be restored: {gone}" in caplog.text
    states = device_states(devices)
    assert states["plug"] is True  # not touched
    assert {k: v for k, v in states.items() if k != "plug"} == {
        k: v for k, v in BEFORE.items() if k != "plug"
    }
    assert second.scenes.snapshot("cosy") is None


# ----- the scene folder setting ----------------------------------------------------------------


def issue_at(config: Path, key: str, value: str) -> str:
    """``file:line:col`` of ``value`` on the line of ``key:`` in hub.yaml."""
    for number, line in enumerate(config.read_text().splitlines(), 1):
        if line.strip().startswith(f"{key}:"):
            return f"{config}:{number}:{line.index(value) + 1}"
    raise AssertionError(f"{key} not in {config}")


async def test_scenes_come_from_the_folder_hub_yaml_names(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory
) -> None:
    config = write_config(tmp_path, mqtt_url, "scenes:\n  folder: house/scenes\n")
    folder = tmp_path / "house" / "scenes"
    folder.mkdir(parents=True)
    (folder / "cosy.yaml").write_text(textwrap.dedent(SCENES))
    # The default folder is not read once another is named.
    (tmp_path / "scenes").mkdir()
    (tmp_path / "scenes" / "old.yaml").write_text("- id: old\n  entities: {a.b: 'on'}\n")

    hub = await hub_factory(config, start_plugins=False, start_rules=False)
    assert hub.scenes is not None
    assert hub.scenes.folder == folder
    assert list(hub.scenes.scenes) == ["cosy"]
    await hub.stop()

    listed = await asyncio.to_thread(hub_cli, "scene", "list", "--json", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    assert [scene["id"] for scene in json.loads(listed.stdout)] == ["cosy"]

    checked = await asyncio.to_thread(hub_cli, "check", "--config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    (folder / "bad.yaml").write_text(
        "- id: typo\n  entities:\n    a.b: {state: 'on', brigthness: 3}\n"
    )
    checked = await asyncio.to_thread(hub_cli, "check", "--config", str(config))
    assert checked.returncode == 1
    assert f"{folder / 'bad.yaml'}:3:24: [0].entities['a.b'].brigthness: unknown key" in (
        checked.stdout
    )


async def test_capture_writes_into_the_named_folder(
    home: Home,
) -> None:
    config = home.config
    with config.open("a") as file:
        file.write("scenes:\n  folder: mine\n")
    (config.parent / "mine").mkdir()
    hub = await home.start_hub()
    await set_known_states(hub)
    await hub.stop()  # states are flushed to storage: capture reads them

    captured = await asyncio.to_thread(
        hub_cli, "scene", "capture", "evening", "--entities", "kitchen_light.light",
        "--config", str(config),
    )  # fmt: skip
    assert captured.returncode == 0, captured.stderr
    assert (config.parent / "mine" / "evening.yaml").is_file()
    assert not (config.parent / "scenes" / "evening.yaml").exists()
    listed = await asyncio.to_thread(hub_cli, "scene", "list", "--json", "--config", str(config))
    assert [scene["id"] for scene in json.loads(listed.stdout)] == ["evening"]


async def test_a_missing_scene_folder_is_an_error_at_its_line(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path, mqtt_url, "scenes:\n  folder: nowhere\n")
    where = issue_at(config, "folder", "nowhere")
    expected = f"{where}: scenes.folder: scene folder not found: {tmp_path / 'nowhere'}"

    checked = await asyncio.to_thread(hub_cli, "check", "--config", str(config))
    assert checked.returncode == 1
    assert expected in checked.stdout

    listed = await asyncio.to_thread(hub_cli, "scene", "list", "--config", str(config))
    assert listed.returncode == 1
    assert expected in listed.stderr

    captured = await asyncio.to_thread(
        hub_cli, "scene", "capture", "x", "--entities", "a.b", "--config", str(config)
    )
    assert captured.returncode == 1
    assert expected in captured.stderr
    assert not (tmp_path / "nowhere").exists()  # a typo is not created

    # The hub runs without scenes and says why.
    with caplog.at_level(logging.ERROR, logger="hub.scenes"):
        hub = await hub_factory(config, start_plugins=False, start_rules=False)
    assert hub.scenes is not None
    assert hub.scenes.scenes == {}
    assert expected in caplog.text


def test_the_default_folder_may_be_missing_but_not_be_a_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, None)
    checked = hub_cli("check", "--config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    (tmp_path / "scenes").write_text("not a folder")
    checked = hub_cli("check", "--config", str(config))
    assert checked.returncode == 1
    assert f"the scene folder {tmp_path / 'scenes'} is a file, not a folder" in checked.stdout


def test_the_folder_setting_is_validated_at_its_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, None, "scenes:\n  folder: ''\n  foldr: x\n")
    checked = hub_cli("check", "--config", str(config))
    assert checked.returncode == 1
    assert f"{issue_at(config, 'folder', chr(39))}: scenes.folder: must not be empty" in (
        checked.stdout
    )
    assert "scenes: unknown key 'foldr' (did you mean 'folder'?)" in checked.stdout
