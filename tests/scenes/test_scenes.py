"""Scenes in a running hub: real Mosquitto, simulated devices, rules, MQTT and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hubtest import eventually
from mqttprobe import MqttProbe

from hub.commands import Command
from hub.config import load_config
from hub.core import Hub
from hub.model import Context, Origin
from hub.scenes import SceneError, dump_scenes, load_scenes
from hub.simulator import Simulator, build_home

REPO = Path(__file__).resolve().parents[2]

SCENES = """
- id: movie
  name: Movie night
  transition: 2s
  entities:
    living_room_light.light: {state: "on", brightness: 40}
    living_room_blinds.cover: closed
    living_room_tv_plug.switch: "on"

- id: cosy
  name: Cosy
  entities:
    living_room_light.light: {state: "on", brightness: 150, color_temp: 454}
    kitchen_light.light: "off"
    living_room_tv_plug.switch: "off"
    living_room_thermostat.thermostat: {mode: heat, temperature: 21.5}
"""

RULE = """
- id: motion_movie
  triggers:
    - state: hallway_motion.motion
      to: "on"
  actions:
    - scene: movie
"""

ENTITIES = (
    "living_room_light.light",
    "kitchen_light.light",
    "living_room_tv_plug.switch",
    "living_room_thermostat.thermostat",
    "living_room_blinds.cover",
)


def hub_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.fixture
async def home(tmp_path: Path, mqtt_url: str) -> AsyncIterator[tuple[Hub, Path]]:
    suffix = uuid.uuid4().hex[:8]
    (tmp_path / "scenes").mkdir()
    (tmp_path / "scenes" / "test.yaml").write_text(textwrap.dedent(SCENES))
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "movie.yaml").write_text(textwrap.dedent(RULE))
    config = tmp_path / "hub.yaml"
    config.write_text(
        f"hub: {{base_topic: t{suffix}/hub, device_topic: t{suffix}/home, command_timeout: 3s}}\n"
        f"mqtt: {{url: {mqtt_url}, client_id: hub-{suffix}}}\n"
        f"database: {{url: 'sqlite+aiosqlite:///{tmp_path / 'hub.db'}', flush_interval: 0.1s}}\n"
    )
    loaded = load_config(config)
    hub = Hub(loaded.config, config_path=loaded.path, source=loaded.source)
    await hub.start()
    sim = Simulator(mqtt_url, build_home(36, seed=1), rate=0, prefix=f"t{suffix}/home")
    await asyncio.to_thread(sim.start)
    try:
        await eventually(lambda: all(e in hub.registry.states for e in ENTITIES), 10)
        yield hub, config
    finally:
        await asyncio.to_thread(sim.stop)
        if hub.started:
            await hub.stop()


def _chain(hub: Hub, entity_id: str) -> list[tuple[str, str]]:
    return [(c.origin.value, c.source) for c in hub.registry.states[entity_id].context.chain()]


async def test_apply_sets_every_entity_with_the_scene_in_each_context(
    home: tuple[Hub, Path],
) -> None:
    hub, _ = home
    assert hub.scenes is not None
    context = Context(Origin.PERSON, "alice")
    result = await hub.scenes.apply("movie", context=context)
    assert result["ok"], result
    assert set(result["entities"]) == {
        "living_room_light.light",
        "living_room_blinds.cover",
        "living_room_tv_plug.switch",
    }
    states = hub.registry.states
    light = states["living_room_light.light"]
    assert light.value == "on"
    assert light.attributes["brightness"] == 40
    assert states["living_room_tv_plug.switch"].value == "on"
    assert states["living_room_blinds.cover"].value in ("closing", "closed")
    for entity_id in result["entities"]:
        chain = _chain(hub, entity_id)
        assert ("scene", "movie") in chain, chain
        assert chain[-1] == ("person", "alice")


async def test_active_after_apply_until_an_entity_changes_and_revert_restores(
    home: tuple[Hub, Path],
    mqtt_url: str,
) -> None:
    hub, _ = home
    scenes = hub.scenes
    assert scenes is not None
    ids = ("living_room_light.light", "kitchen_light.light", "living_room_tv_plug.switch")
    # Start from a known state that differs from the scene.
    for entity_id, action in zip(ids, ("turn_off", "turn_on", "turn_on"), strict=True):
        [done] = await hub.commands.execute(Command(entity_id, action, Context(Origin.CLI, "t")))
        assert done.ok, done
    before = {e: hub.registry.states[e] for e in (*ids, "living_room_thermostat.thermostat")}
    assert not scenes.is_active("cosy")
    state_topic = f"{hub.base_topic}/scenes/cosy/state"
    with MqttProbe(mqtt_url) as probe:
        probe.subscribe(state_topic)
        result = await scenes.apply("cosy", context=Context(Origin.CLI, "test"))
        assert result["ok"], result
        assert scenes.is_active("cosy")
        await asyncio.to_thread(
            probe.wait_for, state_topic, lambda p: json.loads(p) == {"active": True}
        )
        [done] = await hub.commands.execute(
            Command("kitchen_light.light", "turn_on", Context(Origin.CLI, "t"))
        )
        assert done.ok
        assert not scenes.is_active("cosy")
        await asyncio.to_thread(
            probe.wait_for, state_topic, lambda p: json.loads(p) == {"active": False}
        )

    reverted = await scenes.revert("cosy", context=Context(Origin.CLI, "test"))
    assert reverted["ok"], reverted
    states = hub.registry.states
    for entity_id in ids:
        assert states[entity_id].value == before[entity_id].value, entity_id
    thermostat = states["living_room_thermostat.thermostat"]
    old = before["living_room_thermostat.thermostat"]
    assert thermostat.value == old.value
    assert thermostat.attributes["target_temperature"] == pytest.approx(
        old.attributes["target_temperature"]
    )
    with pytest.raises(SceneError, match="has not been applied"):
        await scenes.revert("cosy", context=Context(Origin.CLI, "test"))
    with pytest.raises(SceneError, match="did you mean 'cosy'"):
        await scenes.apply("cozy", context=Context(Origin.CLI, "test"))


async def test_capture_round_trips(home: tuple[Hub, Path], tmp_path: Path) -> None:
    hub, _ = home
    scenes = hub.scenes
    assert scenes is not None
    await scenes.apply("cosy", context=Context(Origin.CLI, "test"))
    captured = scenes.capture("snapshot", ["living_room_light.light", "living_room_tv_plug.switch"])
    assert captured.entities["living_room_light.light"]["state"] == "on"
    assert captured.entities["living_room_light.light"]["brightness"] == 150
    folder = tmp_path / "captured"
    folder.mkdir()
    (folder / "snapshot.yaml").write_text(dump_scenes([captured]))
    loaded, issues = load_scenes(folder)
    assert issues == []
    assert loaded["snapshot"].entities == captured.entities
    scenes.scenes["snapshot"] = loaded["snapshot"]
    assert scenes.is_active("snapshot")
    with pytest.raises(SceneError, match="unknown entity"):
        scenes.capture("x", ["no_such.light"])


async def test_apply_and_revert_over_mqtt_and_from_the_cli(
    home: tuple[Hub, Path], mqtt_url: str
) -> None:
    hub, config = home
    scenes = hub.scenes
    assert scenes is not None
    light = "living_room_light.light"
    [done] = await hub.commands.execute(Command(light, "turn_off", Context(Origin.CLI, "t")))
    assert done.ok
    with MqttProbe(mqtt_url) as probe:
        await asyncio.to_thread(probe.publish, f"{hub.base_topic}/scenes/movie/apply", "", 1)
    await eventually(lambda: hub.registry.states[light].attributes.get("brightness") == 40, 10)
    await eventually(lambda: hub.registry.states[light].value == "on", 10)
    chain = _chain(hub, light)
    assert ("scene", "movie") in chain
    assert chain[-1][0] == "mqtt"

    revert = await asyncio.to_thread(hub_cli, "scene", "revert", "movie", "--config", str(config))
    assert revert.returncode == 0, revert.stderr
    await eventually(lambda: hub.registry.states[light].value == "off", 10)

    apply = await asyncio.to_thread(hub_cli, "scene", "apply", "cosy", "--config", str(config))
    assert apply.returncode == 0, apply.stderr
    await eventually(lambda: scenes.is_active("cosy"), 10)

    rejected = hub.stats.rejected_by_reason.get("unknown_scene", 0)
    with MqttProbe(mqtt_url) as probe:
        await asyncio.to_thread(probe.publish, f"{hub.base_topic}/scenes/nope/apply", "x", 1)
    await eventually(lambda: hub.stats.rejected_by_reason.get("unknown_scene", 0) > rejected, 10)

    listed = await asyncio.to_thread(hub_cli, "scene", "list", "--json", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    assert [s["id"] for s in json.loads(listed.stdout)] == ["movie", "cosy"]

    await hub.stop()  # states are flushed to storage: capture reads them
    captured = await asyncio.to_thread(
        hub_cli,
        "scene",
        "capture",
        "after",
        "--entities",
        light,
        "kitchen_light.light",
        "--config",
        str(config),
    )
    assert captured.returncode == 0, captured.stderr
    loaded, issues = load_scenes(config.parent / "scenes")
    assert issues == []
    assert loaded["after"].entities[light] == {"state": "on", "brightness": 150, "color_temp": 454}
    assert loaded["after"].entities["kitchen_light.light"] == {"state": "off"}


async def test_a_rule_applies_a_scene(home: tuple[Hub, Path], mqtt_url: str) -> None:
    hub, _ = home
    prefix = hub.config.hub.device_topic
    with MqttProbe(mqtt_url) as probe:
        for value in ("off", "on"):
            await asyncio.to_thread(
                probe.publish, f"{prefix}/hallway_motion/state", {"motion": value}, 1
            )
    light = "living_room_light.light"
    await eventually(
        lambda: (
            hub.registry.states[light].attributes.get("brightness") == 40
            and hub.registry.states["living_room_tv_plug.switch"].value == "on"
        ),
        10,
    )
    await eventually(lambda: ("rule", "motion_movie") in _chain(hub, light), 10)
    chain = _chain(hub, light)
    assert chain.index(("scene", "movie")) < chain.index(("rule", "motion_movie"))


def test_bad_scene_files_give_every_issue_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        textwrap.dedent(
            """\
            - id: movie
              transiton: 2s
              entities:
                living_room_light: "on"
                kitchen_light.light: {state: "on", brightness: 400}
                living_room_blinds.cover: ajar
                hall_light.light: {state: "on", brigthness: 3}
            - id: Bad Id
              entities: {}
            - id: movie2
              transition: soon
              entities:
                kitchen_light.light: [1, 2]
            """
        )
    )
    (tmp_path / "broken.yaml").write_text("- id: x\n  entities: {a.b: on\n")
    (tmp_path / "good.yaml").write_text("- id: ok\n  entities:\n    a.b: 'on'\n")
    scenes, issues = load_scenes(tmp_path)
    assert list(scenes) == ["ok"]
    text = [str(issue) for issue in issues]
    bad = str(tmp_path / "bad.yaml")
    expected = [
        f"{bad}:2:3: [0].transiton: unknown key 'transiton' (did you mean 'transition'?)",
        f"{bad}:4:5: [0].entities.living_room_light: invalid entity id",
        f"{bad}:5:52: [0].entities['kitchen_light.light'].brightness: brightness must be",
        f"{bad}:6:31: [0].entities['living_room_blinds.cover']: unknown state 'ajar'",
        f"{bad}:7:37: [0].entities['hall_light.light'].brigthness: unknown key 'brigthness'",
        f"{bad}:8:7: [1].id: invalid scene id 'Bad Id'",
        f"{bad}:9:3: [1].entities: a scene needs 'entities'",
        f"{bad}:11:15: [2].transition:",
        f"{bad}:13:26: [2].entities['kitchen_light.light']: expected a state",
    ]
    for line in expected:
        assert any(t.startswith(line) for t in text), (line, text)
    assert any(t.startswith(str(tmp_path / "broken.yaml")) for t in text), text
