"""Plug-ins: found by entry point, imported only when enabled, supervised and restarted."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hubtest import HubFactory, eventually, write_config
from mqttprobe import MqttProbe

import hub.plugins

PLUGIN_MODULE = '''
"""Test plug-ins, installed through a real entry point."""
import asyncio
from pydantic import BaseModel
from hub.api import Plugin

RUNS = {"crashy": 0, "stops": 0, "messages": 0}


class CrashyPlugin(Plugin):
    """Crashes in run() twice, then keeps running."""

    async def start(self):
        self.context.subscribe_mqtt("plugtest/#", self._on_message)

    def _on_message(self, topic, payload, received):
        RUNS["messages"] += 1

    async def run(self):
        RUNS["crashy"] += 1
        if RUNS["crashy"] <= 2:
            await asyncio.sleep(0.05)
            raise RuntimeError(f"crash number {RUNS['crashy']}")
        await asyncio.Event().wait()

    async def stop(self):
        RUNS["stops"] += 1


class BrokenStart(Plugin):
    """Never manages to start."""

    async def start(self):
        raise ConnectionError("token rejected by the service")


class Settings(BaseModel):
    model_config = {"extra": "forbid"}
    port: int
    name: str = "x"


class WithSettings(Plugin):
    settings_model = Settings
'''

NEVER_MODULE = """
raise ImportError("this plug-in must never be imported while disabled")
"""


@pytest.fixture
def installed_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install test plug-ins the way a package would: a dist-info with entry points."""
    site = tmp_path / "site"
    dist = site / "hubtest_plugins-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hubtest-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """
            [hub.adapters]
            crashy = hubtest_plugmod:CrashyPlugin
            broken = hubtest_plugmod:BrokenStart
            withsettings = hubtest_plugmod:WithSettings
            never = hubtest_never:Nothing
            """
        )
    )
    (site / "hubtest_plugmod.py").write_text(PLUGIN_MODULE)
    (site / "hubtest_never.py").write_text(NEVER_MODULE)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(hub.plugins, "INITIAL_BACKOFF", 0.05)
    for name in ("hubtest_plugmod", "hubtest_never"):
        sys.modules.pop(name, None)
    return site


async def test_crashing_plugin_is_restarted_and_the_hub_keeps_working(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, installed_plugins: Path
) -> None:
    extra = "adapters:\n  crashy: {}\n  never:\n    enabled: false\n"
    hub = await hub_factory(write_config(tmp_path, mqtt_url, extra))
    assert hub.plugins is not None
    module = sys.modules["hubtest_plugmod"]
    await eventually(lambda: module.RUNS["crashy"] >= 3, 5, "the plug-in was not restarted")
    status = hub.plugins.status["adapter:crashy"]
    await eventually(lambda: status.healthy)
    assert status.restarts == 2
    assert "crash number 2" in status.last_error
    assert module.RUNS["stops"] == 2  # stop() ran after each crash
    # The disabled plug-in was never imported.
    assert "hubtest_never" not in sys.modules
    # Only the live instance's subscription is left: a message is counted once, not thrice.
    with MqttProbe(mqtt_url) as probe:
        await asyncio.to_thread(probe.publish, "plugtest/x", "hello", 1)
    await eventually(lambda: module.RUNS["messages"] >= 1)
    await asyncio.sleep(0.2)
    assert module.RUNS["messages"] == 1
    # The rest of the hub keeps working meanwhile.
    dev = hub.config.hub.device_topic
    with MqttProbe(mqtt_url) as probe:
        config = {"name": "P", "entities": {"power": {"kind": "sensor", "unit": "W"}}}
        await asyncio.to_thread(probe.publish, f"{dev}/p1/config", config, 1, True)
        await asyncio.to_thread(probe.publish, f"{dev}/p1/state", {"power": 4.0}, 1)
        await eventually(lambda: "p1.power" in hub.registry.states)


async def test_plugin_that_cannot_start_is_unhealthy_and_retried(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, installed_plugins: Path
) -> None:
    hub = await hub_factory(write_config(tmp_path, mqtt_url, "adapters:\n  broken: {}\n"))
    assert hub.plugins is not None
    status = hub.plugins.status["adapter:broken"]
    await eventually(lambda: status.restarts >= 2)
    assert not status.healthy
    assert "token rejected by the service" in status.last_error
    assert hub.mqtt is not None
    assert hub.mqtt.connected


async def test_unknown_plugin_is_reported_with_a_suggestion(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, installed_plugins: Path
) -> None:
    hub = await hub_factory(write_config(tmp_path, mqtt_url, "adapters:\n  crashi: {}\n"))
    assert hub.plugins is not None
    status = hub.plugins.status["adapter:crashi"]
    assert status.state == "failed"
    assert "did you mean 'crashy'?" in status.last_error


def test_hub_check_reports_plugin_settings_with_line_and_column(
    tmp_path: Path, installed_plugins: Path
) -> None:
    config = write_config(
        tmp_path, "mqtt://127.0.0.1:1", "adapters:\n  withsettings:\n    port: lots\n    nmae: x\n"
    )
    lines = config.read_text().splitlines()
    port_line = next(i for i, line in enumerate(lines, 1) if "port: lots" in line)
    result = subprocess.run(
        [sys.executable, "-m", "hub", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": f"{installed_plugins}:{Path.cwd()}", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{config}:{port_line}:11: adapters.withsettings.port:" in result.stdout
    assert "unknown key 'nmae' (did you mean 'name'?)" in result.stdout
