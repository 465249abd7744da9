"""`hub bench --scenario rules`: generated rules over the simulated devices, timed end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hubtest import hub_cli

from hub.bench import format_table, plan_rules
from hub.rules.loader import load_rules
from hub.rules.model import ChooseAction, CommandAction, Rule, StateTrigger
from hub.simulator import build_home


@pytest.fixture(scope="module")
def rules_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One short rules bench, shared by the tests that read its report."""
    result = hub_cli(
        "bench",
        "--scenario",
        "rules",
        "--rules",
        "20",
        "--devices",
        "40",
        "--rate",
        "200",
        "--duration",
        "3",
        "--json",
        cwd=tmp_path_factory.mktemp("bench"),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_rules_bench_times_every_measured_rule_and_loses_nothing(
    rules_report: dict[str, Any],
) -> None:
    report = rules_report
    assert report["scenario"] == "rules"
    assert report["rules"] == 20
    assert sum(report["rule_kinds"].values()) == 20
    assert report["history"] is True
    assert report["lost"] == 0
    assert report["rule_misses"] == 0
    assert report["rule_unexpected_commands"] == 0
    latency = report["rule_latency_ms"]
    assert set(latency) == {"p50", "p95", "p99", "samples"}
    # Half the motion reports are "on"; each one must have been matched to its command.
    assert latency["samples"] >= report["rule_events"] // 2 - len(report["rule_kinds"])
    assert latency["samples"] > 30
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert report["cpu_s_per_1k_msgs"] > 0
    assert report["state_latency_ms"]["p50"] is not None


def test_rules_bench_table_has_a_rule_line(rules_report: dict[str, Any]) -> None:
    table = format_table(rules_report)
    line = next(row for row in table.splitlines() if row.startswith("sensor -> rule command"))
    assert "20 rules, 0 missed, history on" in line


def test_rules_flag_is_refused_with_the_core_scenario(tmp_path: Path) -> None:
    result = hub_cli("bench", "--rules", "10", cwd=tmp_path)
    assert result.returncode == 2
    assert "--rules applies only to --scenario rules" in result.stderr


def test_rules_scenario_refuses_zero_rules(tmp_path: Path) -> None:
    result = hub_cli("bench", "--scenario", "rules", "--rules", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "at least 1" in result.stderr


def _commanded(rule: Rule) -> set[str]:
    targets: set[str] = set()
    pending = list(rule.actions)
    while pending:
        action = pending.pop()
        if isinstance(action, CommandAction):
            targets.add(action.target)
        elif isinstance(action, ChooseAction):
            pending += action.default
            for choice in action.choices:
                pending += choice.actions
    return targets


@pytest.mark.parametrize(("count", "devices"), [(1, 3), (7, 3), (20, 40), (1000, 200)])
def test_generated_rules_load_and_only_measured_rules_command_measured_lights(
    tmp_path: Path, count: int, devices: int
) -> None:
    plan = plan_rules(build_home(devices, seed=7), count)
    (tmp_path / "bench.yaml").write_text(plan.text)
    rules = load_rules([tmp_path]).rules
    assert len(rules) == count == sum(plan.kinds.values())
    measured_lights = {light for _, light in plan.pairs}
    for motion, light in plan.pairs:
        commanding = [r for r in rules.values() if light in _commanded(r)]
        assert len(commanding) == 1, light
        (rule,) = commanding
        assert rule.mode.value == "parallel"
        assert all(isinstance(t, StateTrigger) and t.entity_ids == (motion,) for t in rule.triggers)
    others = [r for r in rules.values() if not r.id.startswith("bench_measured_")]
    assert all(not (_commanded(r) & measured_lights) for r in others)


def test_rules_need_a_motion_sensor_and_a_light() -> None:
    with pytest.raises(ValueError, match="needs a motion sensor and a light"):
        plan_rules(build_home(2, seed=7), 5)
