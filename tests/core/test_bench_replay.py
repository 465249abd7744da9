"""`hub bench --replay`: a scenario's messages through an in-process hub, CPU per message."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from hubtest import hub_cli


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return hub_cli("bench", *args, cwd=tmp_path, timeout=180)


def test_replay_reports_cpu_per_message_for_every_firmware_dialect(tmp_path: Path) -> None:
    result = _bench(
        tmp_path,
        "--replay",
        "--scenario",
        "firmware",
        "--devices",
        "60",
        "--messages",
        "3000",
        "--json",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["scenario"] == "firmware"
    assert report["messages"] == 3000
    by_dialect = report["by_dialect"]
    assert set(by_dialect) == {"native", "tasmota", "shelly", "zigbee2mqtt", "ha_discovery"}
    assert sum(row["messages"] for row in by_dialect.values()) == 3000
    for name, row in by_dialect.items():
        assert row["handler_cpu_us_per_msg"] > 0, name
    # Every message reached its adapter and reported at least one entity (none was rejected:
    # the replay fails on a rejection); some readings changed a state.
    assert report["reports"] >= 3000
    assert 0 < report["state_changes"] <= report["reports"]
    assert report["cpu_us_per_msg"] >= report["handler_cpu_us_per_msg"] > 0


def test_replay_table_and_bad_usage(tmp_path: Path) -> None:
    result = _bench(tmp_path, "--replay", "--devices", "20", "--messages", "500")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CPU per message" in result.stdout
    assert "native" in result.stdout
    wrong = _bench(tmp_path, "--replay", "--scenario", "rules")
    assert wrong.returncode == 2
    assert "--replay takes --scenario core or firmware" in wrong.stderr
    none = _bench(tmp_path, "--replay", "--messages", "0")
    assert none.returncode == 2
