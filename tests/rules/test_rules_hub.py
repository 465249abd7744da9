"""Rules in a running hub: real broker, simulated devices, storage, and the CLI around them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from mqttprobe import MqttProbe

from hub.config import load_config
from hub.core import Hub
from hub.simulator import Simulator, build_home

REPO = Path(__file__).resolve().parents[2]

MOTION_RULE = """
- id: hall_light
  description: motion lights the hall
  mode: restart
  triggers:
    - state: hallway_motion.motion
      to: "on"
  actions:
    - command: hallway_light.light
      action: turn_on
      params: {brightness: 123}
"""


def hub_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)
    return result


@pytest.fixture
async def home(tmp_path: Path, mqtt_url: str) -> AsyncIterator[tuple[Hub, Path, Simulator]]:
    suffix = uuid.uuid4().hex[:8]
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "hall.yaml").write_text(textwrap.dedent(MOTION_RULE))
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
        await eventually(lambda: "hallway_motion.motion" in hub.registry.states)
        yield hub, config, sim
    finally:
        await asyncio.to_thread(sim.stop)
        if hub.started:
            await hub.stop()


async def _motion(hub: Hub, value: str) -> None:
    prefix = hub.config.hub.device_topic
    with MqttProbe(hub.mqtt.address.display()) as probe:  # type: ignore[union-attr]
        await asyncio.to_thread(
            probe.publish, f"{prefix}/hallway_motion/state", {"motion": value}, 1
        )


async def test_motion_rule_runs_through_the_real_broker_and_why_explains_it(
    home: tuple[Hub, Path, Simulator],
) -> None:
    hub, config, _ = home
    await _motion(hub, "off")
    await _motion(hub, "on")
    await eventually(
        lambda: (
            (s := hub.registry.states.get("hallway_light.light")) is not None
            and s.attributes.get("brightness") == 123
        )
    )
    state = hub.registry.states["hallway_light.light"]
    chain = [(c.origin.value, c.source) for c in state.context.chain()]
    assert chain[:2] == [("device", "hallway_light"), ("rule", "hall_light")]
    assert chain[2] == ("device", "hallway_motion")
    await hub.stop()  # everything is flushed: states, traces

    why = hub_cli("why", "hallway_light.light", "--config", str(config))
    assert why.returncode == 0, why.stderr
    lines = why.stdout.splitlines()
    assert lines[0].startswith("hallway_light.light is 'on'")
    assert "set by device hallway_light" in lines[1]
    assert "because rule hall_light" in lines[2]
    # The run that set the light is linked with its trigger; it ended "ok", or "restarted"
    # when the simulated sensor's own motion burst re-triggered the rule meanwhile.
    assert re.search(r"run hall_light-\S+ -> (ok|restarted); trigger", why.stdout), why.stdout
    assert "because device hallway_motion" in why.stdout

    trace = hub_cli("rules", "trace", "hall_light", "--config", str(config))
    assert trace.returncode == 0, trace.stderr
    assert re.search(r"-> (ok|restarted)", trace.stdout)
    assert "actions[0] command" in trace.stdout
    assert "caused by: rule hall_light <- device hallway_motion" in trace.stdout
    as_json = json.loads(
        hub_cli("rules", "trace", "hall_light", "--config", str(config), "--json").stdout
    )
    finished = [t for t in as_json if t["outcome"] == "ok"]
    assert finished[0]["steps"][0]["result"]["results"][0]["ok"] is True


async def test_rules_are_enabled_disabled_and_reloaded_over_mqtt(
    home: tuple[Hub, Path, Simulator],
    mqtt_url: str,
) -> None:
    hub, config, _ = home
    assert hub.rules is not None
    engine = hub.rules.engine
    assert engine is not None
    base = hub.base_topic
    with MqttProbe(mqtt_url) as probe:
        probe.subscribe(f"{base}/events/rules_reload")
        await asyncio.to_thread(
            probe.publish, f"{base}/rules/hall_light/set", {"enabled": False}, 1
        )
        await eventually(lambda: not engine.rules["hall_light"].enabled)
        await asyncio.to_thread(probe.publish, f"{base}/rules/hall_light/set", {"enabled": True}, 1)
        await eventually(lambda: engine.rules["hall_light"].enabled)
        # A broken file is refused and the running rules stay.
        bad = config.parent / "rules" / "broken.yaml"
        bad.write_text("- id: oops\n  triggers: [{stat: x.y}]\n  actions: [{notify: hi}]\n")
        await asyncio.to_thread(probe.publish, f"{base}/rules/reload", "{}", 1)
        _, payload = await asyncio.to_thread(probe.wait_for, f"{base}/events/rules_reload")
        refused = json.loads(payload)
        assert refused["ok"] is False
        assert "broken.yaml:2:" in refused["message"]
        assert "did you mean 'state'" in refused["message"]
        assert "hall_light" in engine.rules
        # Fixed: the new rule is added, the old one is kept.
        bad.write_text("- id: extra\n  triggers: [{command: hello}]\n  actions: [{notify: hi}]\n")
        await asyncio.to_thread(probe.publish, f"{base}/rules/reload", "{}", 1)
        _, payload = await asyncio.to_thread(probe.wait_for, f"{base}/events/rules_reload")
        assert json.loads(payload)["ok"] is True
        assert set(engine.rules) == {"hall_light", "extra"}
    await _motion(hub, "off")
    await _motion(hub, "on")
    await eventually(
        lambda: (
            (s := hub.registry.states.get("hallway_light.light")) is not None
            and s.attributes.get("brightness") == 123
        )
    )


async def test_replay_runs_a_changed_rule_set_over_recorded_history(
    home: tuple[Hub, Path, Simulator],
    tmp_path: Path,
) -> None:
    hub, config, _ = home
    for value in ("off", "on", "off", "on"):
        await _motion(hub, value)
    await eventually(lambda: hub.registry.states["hallway_light.light"].value == "on")
    await hub.stop()
    changed = tmp_path / "changed"
    changed.mkdir()
    (changed / "hall.yaml").write_text(
        textwrap.dedent(MOTION_RULE).replace("brightness: 123", "brightness: 40")
    )
    result = hub_cli(
        "rules",
        "replay",
        "--since",
        "1h",
        "--rules",
        str(changed),
        "--config",
        str(config),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    commands = [e for e in report["effects"] if e["kind"] == "command"]
    assert [c["params"] for c in commands] == [{"brightness": 40}, {"brightness": 40}]
    assert all(c["target"] == "hallway_light.light" for c in commands)
    # Nothing was touched: the stored light still has the brightness the real rule set.
    stored = json.loads(hub_cli("devices", "--config", str(config), "--json").stdout)
    light = next(d for d in stored if d["id"] == "hallway_light")
    assert light["entities"][0]["state"]["attributes"]["brightness"] == 123
    text = hub_cli(
        "rules", "replay", "--since", "1h", "--rules", str(changed), "--config", str(config)
    )
    assert "2 command(s) would have been issued; nothing was touched" in text.stdout


async def test_named_commands_and_webhooks_arrive_over_mqtt(
    home: tuple[Hub, Path, Simulator],
    mqtt_url: str,
) -> None:
    hub, config, _ = home
    (config.parent / "rules" / "named.yaml").write_text(
        textwrap.dedent("""
        - id: movie
          triggers: [{command: movie night}]
          actions:
            - command: living_room_light.light
              action: turn_on
              params: {brightness: 20}
        - id: bell
          triggers: [{webhook: doorbell}]
          actions:
            - command: hallway_light.light
              action: turn_on
              params: {brightness: "{{ trigger.json.level }}"}
    """)
    )
    assert hub.rules is not None
    ok, message = await hub.rules.reload()
    assert ok, message
    base = hub.base_topic
    with MqttProbe(mqtt_url) as probe:
        await asyncio.to_thread(probe.publish, f"{base}/rules/command/movie night", "", 1)
        await asyncio.to_thread(probe.publish, f"{base}/webhook/doorbell", {"level": 77}, 1)
        await asyncio.to_thread(probe.publish, f"{base}/webhook/nobody", "{}", 1)
    await eventually(
        lambda: hub.registry.states["living_room_light.light"].attributes.get("brightness") == 20
    )
    await eventually(
        lambda: hub.registry.states["hallway_light.light"].attributes.get("brightness") == 77
    )
    await eventually(lambda: hub.stats.rejected_by_reason.get("unknown_rule") == 1)
