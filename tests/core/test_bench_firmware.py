"""`hub bench --scenario firmware`: mixed firmware dialects through the real adapters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hub.bench import format_table

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def firmware_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One short firmware bench at a modest rate, shared by the tests that read its report."""
    args = ["--scenario", "firmware", "--devices", "60", "--rate", "300", "--duration", "4"]
    result = subprocess.run(
        [sys.executable, "-m", "hub", "bench", *args, "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path_factory.mktemp("bench"),
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_firmware_bench_loses_nothing_and_confirms_commands_through_every_dialect(
    firmware_report: dict[str, Any],
) -> None:
    report = firmware_report
    assert report["scenario"] == "firmware"
    assert report["lost"] == 0
    assert report["command_latency_ms"]["failed"] == 0
    mix = report["firmware_mix"]["devices"]
    assert set(mix) == {"native", "tasmota", "shelly", "zigbee2mqtt", "ha_discovery"}
    assert sum(mix.values()) == 60
    by_dialect = report["command_latency_by_dialect_ms"]
    # Commands take turns over the dialects: every one with a switch or light was confirmed.
    assert set(by_dialect) == {"native", "tasmota", "shelly", "zigbee2mqtt", "ha_discovery"}
    for name, latency in by_dialect.items():
        assert latency["samples"] >= 2, (name, latency)
        assert 0 < latency["p50"] <= latency["p99"] < 3000, (name, latency)
    # States reported through the adapters were matched to their publishes (on the devices
    # the observer watches: one in four of each dialect).
    assert report["state_latency_ms"]["samples"] > 25
    assert report["cpu_s_per_1k_msgs"] > 0


def test_firmware_bench_table_shows_latency_per_dialect(firmware_report: dict[str, Any]) -> None:
    table = format_table(firmware_report)
    assert "via zigbee2mqtt" in table
    assert "via shelly" in table
    assert "firmware" in table.splitlines()[0]
    # The floor probe measures p50 and p99 only: no made-up p95 beside them.
    (floor,) = [line for line in table.splitlines() if line.startswith("floor")]
    assert "p50" in floor
    assert "p99" in floor
    assert "p95" not in floor


def test_the_observer_watches_one_device_in_four_of_every_dialect() -> None:
    from collections import Counter

    from hub.bench import WATCH_EVERY, BenchHome, watched_devices

    home = BenchHome(1883, "5", 60, mixed=True)  # not connected: only its devices are read
    watched = watched_devices(home)
    hub_ids = {home.dialect_of[d.id].hub_device_id(d): d.dialect for d in home.devices}
    assert watched <= set(hub_ids)
    per_dialect = Counter(hub_ids.values())
    seen = Counter(hub_ids[device_id] for device_id in watched)
    assert set(seen) == set(per_dialect)  # every dialect is measured
    for dialect, count in per_dialect.items():
        assert seen[dialect] == -(-count // WATCH_EVERY), dialect
