"""`hub bench --scenario firmware`: mixed firmware dialects through the real adapters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hubtest import hub_cli

from hub.bench import format_table


@pytest.fixture(scope="module")
def firmware_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One short firmware bench at a modest rate, shared by the tests that read its report."""
    args = ["--scenario", "firmware", "--devices", "60", "--rate", "300", "--duration", "4"]
    result = hub_cli("bench", *args, "--json", cwd=tmp_path_factory.mktemp("bench"), timeout=180)
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
    # ... and split by dialect, so a wide tail can be traced to the firmware it comes from.
    states_by_dialect = report["state_latency_by_dialect_ms"]
    # (the one watched native device may change nothing in 4 s at this rate)
    assert {"tasmota", "shelly", "zigbee2mqtt", "ha_discovery"} <= set(states_by_dialect)
    assert set(states_by_dialect) <= {"native", "tasmota", "shelly", "zigbee2mqtt", "ha_discovery"}
    assert (
        sum(latency["samples"] for latency in states_by_dialect.values())
        == report["state_latency_ms"]["samples"]
    )
    assert report["cpu_s_per_1k_msgs"] > 0


def test_firmware_bench_table_shows_latency_per_dialect(firmware_report: dict[str, Any]) -> None:
    table = format_table(firmware_report)
    # Under "publish -> state" and under "command -> confirmed".
    assert table.count("via zigbee2mqtt") == 2
    assert table.count("via shelly") == 2
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


def _step_at(level: float, capacity: float) -> Any:
    """A step as a hub with ``capacity`` msgs/s would give it: past it, the hub falls behind."""
    from hub.bench import Step

    p99 = 5.0 if level <= capacity else 400.0
    return Step(
        rate=level,
        duration=5,
        sent=int(level * 5),
        sent_rate=level,
        hub_received=int(level * 5),
        lost=0,
        cpu_s=1.0,
        state_ms=[p99] * 100,
        command_ms=[],
        commands_failed=0,
        floor_ms=[],
    )


@pytest.mark.parametrize("capacity", [2500.0, 9000.0, 15000.0, 27000.0, 50000.0, 123456.0])
def test_the_limit_search_brackets_the_rate_a_hub_keeps_up_with(capacity: float) -> None:
    from hub.bench import BISECT_STEPS, LimitSearch

    search = LimitSearch()
    tried: list[float] = []
    while (level := search.next_level()) is not None:
        tried.append(level)
        search.record(level, _step_at(level, capacity))
    assert search.best is not None
    # Never above what the hub keeps up with, and at most the last bracket below it.
    assert search.best.rate <= capacity
    # Within the last bracket below it: a coarse step (a quarter) halved BISECT_STEPS times
    # above 10,000 msgs/s (down to 500 msgs/s, on a grid of 125), a coarse step (half) below.
    assert capacity - search.best.rate <= (
        max(capacity / 4 / 2**BISECT_STEPS, 500) + 125 if capacity > 12000 else capacity / 3
    )
    assert search.failed_at is not None
    assert search.bisected == BISECT_STEPS or search.failed_at - search.best.rate <= 500
    assert len(tried) == len(search.steps)
    assert [row["kept_up"] for row in search.steps] == [r <= capacity for r in tried]
    # A level the hub fell behind at is run once more, straight after; no level a third time.
    for index, level in enumerate(tried):
        again = search.steps[index]["again"]
        assert again == (index > 0 and tried[index - 1] == level and level > capacity)
        assert tried.count(level) == (2 if level > capacity else 1)


def test_one_stall_does_not_end_the_search_but_a_lost_message_does() -> None:
    """On a shared machine one 5 s step can fall behind on a single stall of the host: the
    search runs it again before counting it failed. A lost message is final."""
    from hub.bench import LimitSearch

    stalled = LimitSearch()
    first = stalled.next_level()
    assert first is not None
    assert not stalled.record(first, _step_at(first, 0.0))  # fell behind once
    assert stalled.settle_first
    assert stalled.next_level() == first
    assert stalled.record(first, _step_at(first, 1e9))  # kept up when run again
    assert stalled.best is not None
    assert stalled.next_level() == first * 1.5  # the search goes on up

    losing = LimitSearch()
    level = losing.next_level()
    assert level is not None
    step = _step_at(level, 1e9)
    step.lost = 3
    assert not losing.record(level, step)
    assert losing.next_level() != level
    assert losing.failed_at == level


def test_against_needs_max_and_the_other_compared_scenario(tmp_path: Path) -> None:
    for args, said in [
        (["--against", "core"], "needs --max"),
        (["--scenario", "firmware", "--max", "--against", "firmware"], "another scenario"),
        (["--scenario", "rules", "--max", "--against", "core"], "another scenario"),
        (["--max", "--against", "rules"], "another scenario"),
    ]:
        result = hub_cli("bench", *args, cwd=tmp_path)
        assert result.returncode == 2, args
        assert said in result.stderr, (args, result.stderr)


def _searched(limits: list[float]) -> list[Any]:
    """Finished searches whose limits are ``limits`` (0: the search found none)."""
    from hub.bench import LimitSearch

    searches = []
    for capacity in limits:
        search = LimitSearch()
        while (level := search.next_level()) is not None:
            step = _step_at(level, capacity)
            if capacity == 0:
                step.lost = 1
            search.record(level, step)
        searches.append(search)
    return searches


def test_rounds_report_the_median_round_not_the_luckiest() -> None:
    """``--rounds N``: one lucky or unlucky search near the limit moves a ratio by a fifth on
    a small shared host; the median round is reported, with every round's figures."""
    from hub.bench import _median_round, _report, _round_summary

    rounds = [_searched(pair) for pair in ([40000, 40000], [24000, 40000], [33000, 40000])]
    ratios = [s[0].best.rate / s[1].best.rate for s in rounds]
    assert len(set(ratios)) == 3
    chosen = _median_round(rounds)
    assert chosen is rounds[2]  # neither the 100 % round nor the 60 % one
    # Of an even number, the lower of the middle two.
    assert _median_round(rounds[:2]) is rounds[1]
    # One scenario: ordered by its limit; a round that found no limit orders first.
    alone = [_searched([c]) for c in (30000, 0, 20000)]
    assert _median_round(alone) is alone[2]
    summaries = [_round_summary(r) for r in rounds]
    assert [s["ratio"] for s in summaries] == [round(r, 3) for r in ratios]
    assert _round_summary(alone[1]) == {"max_zero_loss_rate": None}

    best, other = chosen[0].best, chosen[1].best
    assert best is not None
    assert other is not None
    report = _report(
        best, scenario="firmware", devices=200, startup=0.5, peak_rss=80.0, broker="mosquitto"
    )
    report["max_zero_loss_rate"] = best.rate
    report["against"] = {"scenario": "core", "max_zero_loss_rate": other.rate}
    report["ratio_to_against"] = round(best.rate / other.rate, 3)
    report["rounds"] = summaries
    table = format_table(report)
    line = next(row for row in table.splitlines() if "3 rounds (median shown)" in row)
    for summary in summaries:
        assert (
            f"{summary['max_zero_loss_rate']:g}/{summary['against_max_zero_loss_rate']:g}" in line
        )


def test_rounds_need_max_and_a_positive_count(tmp_path: Path) -> None:
    for args in (["--rounds", "0", "--max"], ["--rounds", "3"]):
        result = hub_cli("bench", *args, cwd=tmp_path)
        assert result.returncode == 2, args
        assert "--rounds" in result.stderr, (args, result.stderr)
