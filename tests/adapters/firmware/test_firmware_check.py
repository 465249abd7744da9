"""`hub check` validates the firmware profiles hub.yaml loads, as a user runs it (a subprocess).

A typo in a profile or in its settings shows at ``file:line:col`` before the hub starts, and
``hub check`` exits 1; the bundled profiles with the example settings check clean.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from adapters.firmware.profile import BUNDLED

REPO = Path(__file__).resolve().parents[3]

# A made-up firmware family whose profile has two mistakes: a misspelt variable in a topic
# (line 10, the value at column 12) and an entity kind that does not exist (line 14, col 15).
BROKEN_PROFILE = """\
format: 1
title: ACME relay (made up)
vars:
  serial: {pattern: "[a-z0-9]+"}
device:
  key: serial
  id: "acme-{serial}"
messages:
  - name: state
    topic: "acme/{serail}/state"
    decode:
      - path: relay
        entity: relay
        kind: swich
"""


def hub_check(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``hub check`` on ``config`` from its folder, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "hub", "check", "--config", config.name, *extra],
        capture_output=True,
        text=True,
        cwd=config.parent,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
        check=False,
    )


def write_hub_yaml(folder: Path, firmware: str) -> Path:
    """A hub.yaml with only the firmware adapter, ``firmware`` its settings (YAML, unindented)."""
    path = folder / "hub.yaml"
    path.write_text("adapters:\n  firmware:\n" + textwrap.indent(firmware, "    "))
    return path


def test_a_broken_custom_profile_is_reported_at_its_line_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "acme.yaml").write_text(BROKEN_PROFILE)
    config = write_hub_yaml(tmp_path, "profiles: [tasmota, profiles/acme.yaml]\n")

    result = hub_check(config)

    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert (
        "profiles/acme.yaml:10:12: messages[0].topic: unknown placeholder {serail} "
        "(did you mean 'serial'?)" in lines
    )
    assert (
        "profiles/acme.yaml:14:15: messages[0].decode[0].kind: unknown entity kind 'swich' "
        "(did you mean 'switch'?)" in result.stdout
    )
    assert lines[-1] == "2 error(s) in hub.yaml"


def test_the_json_report_carries_the_profile_file_and_position(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text(BROKEN_PROFILE)
    config = write_hub_yaml(tmp_path, "profiles: [./acme.yaml]\n")

    result = hub_check(config, "--json")

    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    where = {(i["file"], i["line"], i["col"]) for i in report["issues"]}
    assert where == {("acme.yaml", 10, 12), ("acme.yaml", 14, 15)}


def test_the_bundled_profiles_check_clean(tmp_path: Path) -> None:
    """Every bundled profile, with devices and options set as the example hub.yaml does."""
    config = write_hub_yaml(
        tmp_path,
        f"profiles: [{', '.join(BUNDLED)}]\n"
        "tasmota:\n"
        '  full_topic: "%prefix%/%topic%/"\n'
        "  devices:\n"
        "    - {topic: kitchen_plug, id: kitchen_plug, name: Kitchen plug, area: kitchen}\n"
        "    - sonoff_dual\n"
        "shelly-gen2:\n"
        "  devices: [shellyplus1pm-a8032ab12345]\n",
    )

    result = hub_check(config)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "hub.yaml: OK"


def test_the_example_configuration_loads_its_profiles_clean() -> None:
    result = hub_check(REPO / "hub.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "firmware" not in result.stdout


def test_settings_that_do_not_fit_the_profiles_are_reported_in_hub_yaml(tmp_path: Path) -> None:
    """Unknown bundled names, missing files, options and device entries: at their key."""
    config = write_hub_yaml(
        tmp_path,
        "profiles: [tasmot, my/missing.yaml, shelly-gen2, generic-json]\n"  # line 3
        "shelly-gen2:\n"
        "  rpc_scr: hub\n"  # line 5
        '  devices: ["bad+key", {key: ok, colour: red}]\n'  # line 6
        "generic-json:\n"
        '  topic: "#/{device}"\n',  # line 8
    )

    result = hub_check(config)

    assert result.returncode == 1
    out = result.stdout
    assert (
        "hub.yaml:3:16: adapters.firmware.profiles[0]: no bundled profile 'tasmot' "
        "(did you mean 'tasmota'?)" in out
    )
    assert "hub.yaml:3:24: adapters.firmware.profiles[1]: profile file 'my/missing.yaml' " in out
    assert (
        "hub.yaml:5:7: adapters.firmware.shelly-gen2.rpc_scr: the shelly-gen2 profile has no "
        "option 'rpc_scr' (did you mean 'rpc_src'?)" in out
    )
    assert (
        "hub.yaml:6:17: adapters.firmware.shelly-gen2.devices[0]: 'bad+key' is not a valid prefix"
        in out
    )
    assert "hub.yaml:6:28: adapters.firmware.shelly-gen2.devices[1]: unknown key(s) colour" in out
    assert "hub.yaml:7:5: adapters.firmware.generic-json: " in out
    assert "wildcard" in out
    assert out.splitlines()[-1] == "6 error(s) in hub.yaml"


def test_a_disabled_adapter_is_not_checked(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text(BROKEN_PROFILE)
    config = write_hub_yaml(tmp_path, "enabled: false\nprofiles: [./acme.yaml]\n")
    result = hub_check(config)
    assert result.returncode == 0, result.stdout
