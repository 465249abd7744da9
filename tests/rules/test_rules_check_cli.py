"""`hub check` runs the rule checks: syntax errors fail it, static findings warn."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

RULES = """\
- id: on_with_motion
  triggers: [{state: hall.motion, to: "on"}]
  actions:
    - command: hall.light
      action: turn_on
- id: off_with_motion
  triggers: [{state: hall.motion, to: "on"}]
  actions:
    - command: hall.light
      action: turn_off
- id: ping
  triggers: [{state: a.switch, to: "on"}]
  actions: [{command: b.switch, action: turn_on}]
- id: pong
  triggers: [{state: b.switch, to: "on"}]
  actions: [{command: a.switch, action: turn_off}]
- id: pang
  triggers: [{state: a.switch, to: "off"}]
  actions: [{command: a.switch, action: turn_on}]
"""


def check(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", "check", "--config", str(folder / "hub.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_conflicts_and_loops_are_warnings_with_both_locations(tmp_path: Path) -> None:
    (tmp_path / "hub.yaml").write_text("hub: {name: Test}\n")
    (tmp_path / "rules").mkdir()
    rules = tmp_path / "rules" / "house.yaml"
    rules.write_text(RULES)
    result = check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"{rules}:9:7: " in out  # the second rule's command
    assert "warning" in out
    assert "'on_with_motion'" in out
    assert "'off_with_motion'" in out
    assert "loop: rule 'ping'" in out
    assert "warning(s))" in out.splitlines()[-1]


def test_a_syntax_error_in_a_rule_file_fails_the_check(tmp_path: Path) -> None:
    (tmp_path / "hub.yaml").write_text("hub: {name: Test}\n")
    (tmp_path / "rules").mkdir()
    bad = tmp_path / "rules" / "bad.yaml"
    bad.write_text(
        textwrap.dedent("""\
        - id: r
          triggers: [{state: hall.motion, too: "on"}]
          actions: [{notify: hi}]
    """)
    )
    result = check(tmp_path)
    assert result.returncode == 1
    assert (
        f"{bad}:2:35: rules[0].triggers[0]: unknown key 'too' (did you mean 'to'?)" in result.stdout
    )


def test_scene_files_are_checked_and_rules_may_name_only_known_scenes(tmp_path: Path) -> None:
    (tmp_path / "hub.yaml").write_text("hub: {name: Test}\n")
    (tmp_path / "scenes").mkdir()
    (tmp_path / "scenes" / "living.yaml").write_text(
        "- id: movie\n  entities:\n    den.light: {state: 'on', brightnes: 40}\n"
    )
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(
        "- id: r\n  triggers: [{command: film}]\n  actions: [{scene: movi}]\n"
    )
    result = check(tmp_path)
    assert result.returncode == 1
    assert f"{tmp_path / 'scenes' / 'living.yaml'}:3:" in result.stdout
    assert "brightnes" in result.stdout
    assert "unknown scene 'movi'" in result.stdout
