"""The `hub` command line, run as a user runs it: a subprocess with real files and brokers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hubtest import REPO, HubFactory, eventually, hub_cli, write_config
from mqttprobe import MqttProbe

COMMANDS = ["run", "demo", "check", "simulate", "bench", "devices"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_and_takes_config(command: str) -> None:
    result = hub_cli(command, "--help")
    assert result.returncode == 0
    assert "--config FILE" in result.stdout


@pytest.mark.parametrize("command", ["check", "devices", "bench"])
def test_reporting_commands_take_json(command: str) -> None:
    assert "--json" in hub_cli(command, "--help").stdout


@pytest.mark.parametrize(
    "args", [["nonsense"], ["bench", "--devices", "many"], ["check", "--no-such-flag"], []]
)
def test_bad_usage_exits_2(args: list[str]) -> None:
    assert hub_cli(*args).returncode == 2


def test_bench_refuses_an_unknown_scenario_with_exit_2() -> None:
    result = hub_cli("bench", "--scenario", "nope")
    assert result.returncode == 2
    assert "unknown scenario 'nope'" in result.stderr


def test_check_reports_exact_line_and_column_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text("hub:\n  name: Home\n  base_topik: x\nmqtt:\n  keepalive: soon\n")
    result = hub_cli("check", "--config", str(config))
    assert result.returncode == 1
    assert (
        f"{config}:3:3: hub: unknown key 'base_topik' (did you mean 'base_topic'?)" in result.stdout
    )
    assert f"{config}:5:14: mqtt.keepalive:" in result.stdout
    as_json = json.loads(hub_cli("check", "--config", str(config), "--json").stdout)
    assert as_json["ok"] is False
    assert {(i["line"], i["col"]) for i in as_json["issues"]} == {(3, 3), (5, 14)}


def test_check_passes_on_the_example_configuration() -> None:
    result = hub_cli("check", "--config", str(REPO / "hub.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_on_a_missing_file_says_so(tmp_path: Path) -> None:
    result = hub_cli("check", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert "nope.yaml:1:1:" in result.stdout


async def test_devices_lists_what_the_hub_stored(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory
) -> None:
    config = write_config(tmp_path, mqtt_url)
    hub = await hub_factory(config)
    dev = hub.config.hub.device_topic
    with MqttProbe(mqtt_url) as probe:
        body = {"name": "Desk lamp", "area": "office", "entities": {"light": {"kind": "light"}}}
        probe.publish(f"{dev}/desk_lamp/config", body, 1, True)
        probe.publish(f"{dev}/desk_lamp/state", {"light": {"state": "on", "brightness": 80}}, 1)
        await eventually(lambda: "desk_lamp.light" in hub.registry.states)
    await hub.stop()
    listed = json.loads(hub_cli("devices", "--config", str(config), "--json").stdout)
    assert [d["id"] for d in listed] == ["desk_lamp"]
    state = listed[0]["entities"][0]["state"]
    assert state["state"] == "on"
    assert state["attributes"]["brightness"] == 80
    text = hub_cli("devices", "--config", str(config)).stdout
    assert "desk_lamp" in text
    assert "Desk lamp" in text


def test_demo_runs_a_home_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text((REPO / "hub.yaml").read_text())
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "demo", "--config", str(config), "--rate", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 30
        output = ""
        assert proc.stdout is not None
        while "Ctrl-C stops everything" not in output and time.monotonic() < deadline:
            output += proc.stdout.readline()
        assert "hub demo is running" in output
        assert "Mosquitto" in output
        time.sleep(3)
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output + rest
    assert "Traceback" not in rest
    listed = json.loads(hub_cli("devices", "--config", str(config), "--json").stdout)
    assert len(listed) >= 30
    kinds = {e["kind"] for d in listed for e in d["entities"]}
    assert {"switch", "light", "sensor", "binary_sensor", "climate", "energy_meter"} <= kinds
    # Ctrl-C let every device say goodbye before the hub stopped, and it was stored.
    assert not any(d["available"] for d in listed)
    assert sum(1 for d in listed for e in d["entities"] if e["state"] is not None) > 50


def test_simulate_publishes_a_home_against_any_broker(mqtt_url: str, tmp_path: Path) -> None:
    with MqttProbe(mqtt_url) as probe:
        probe.subscribe("simtest/+/config")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hub",
                "simulate",
                "--config",
                str(tmp_path / "none.yaml"),
                "--broker",
                mqtt_url,
                "--devices",
                "32",
                "--rate",
                "20",
                "--prefix",
                "simtest",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            for _ in range(32):
                probe.wait_for("simtest/+/config", timeout=15)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=20)
    assert proc.returncode == 0


def test_bench_reports_every_documented_figure_as_json(tmp_path: Path) -> None:
    result = hub_cli(
        "bench",
        "--json",
        "--devices",
        "30",
        "--rate",
        "300",
        "--duration",
        "2",
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    for key in (
        "scenario",
        "devices",
        "rate",
        "duration_s",
        "ingest_msgs_per_s",
        "lost",
        "cpu_s_per_1k_msgs",
        "peak_rss_mb",
        "startup_s",
    ):
        assert key in report
    assert report["scenario"] == "core"
    assert report["lost"] == 0
    assert report["ingest_msgs_per_s"] > 250
    for key in ("state_latency_ms", "command_latency_ms"):
        assert {"p50", "p95", "p99"} <= set(report[key])
        assert report[key]["p50"] is not None
    assert {"p50", "p99"} <= set(report["floor_rtt_ms"])
    assert 0 < report["startup_s"] < 5
