"""Rules that read and react to group states: loader, checks, engine, rule tests, a real hub."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from mqttprobe import MqttProbe
from ruleharness import Harness, write_rules

from hub.config import load_config
from hub.core import Hub
from hub.events import GroupStateChanged
from hub.model import Aggregate, Device, Entity, EntityKind, Group
from hub.rules.checks import Known, check_ruleset, known_from
from hub.rules.loader import load_rule_file, load_rules
from hub.rules.model import NumericTrigger, StateCondition, StateTrigger, group_of
from hub.rules.sandbox import run_rule_tests, sandbox_hub
from hub.storage import Storage

REPO = Path(__file__).resolve().parents[2]


def hub_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``hub`` command line."""
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def harness(tmp_path: Path, rules: str, *groups: Group) -> Harness:
    """A sandbox hub with these groups and an engine running ``rules``."""
    hub = sandbox_hub()
    for group in groups:
        hub.registry.groups[group.id] = group
    hub.registry.invalidate_groups()
    return Harness.from_yaml(tmp_path, rules, hub=hub)


DOWNSTAIRS = Group("downstairs", "Downstairs lights", ["hall.light", "kitchen.light"])
UPSTAIRS = Group(
    "upstairs", "Upstairs temperature", ["bed.temperature", "bath.temperature"], Aggregate.AVERAGE
)


# --- the loader -------------------------------------------------------------------------


def test_group_subjects_are_kept_as_written_and_read_by_group_of(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        textwrap.dedent(
            """
            id: r
            triggers:
              - {state: group:downstairs, to: "on", for: 2m}
              - {numeric: upstairs, below: 19}
            conditions:
              - {state: [downstairs, hall.light], is: "on"}
            actions: [{notify: hi}]
            """
        )
    )
    rules, issues = load_rule_file(path)
    assert issues == []
    trigger, numeric = rules[0].triggers
    assert isinstance(trigger, StateTrigger)
    assert isinstance(numeric, NumericTrigger)
    assert trigger.entity_ids == ("group:downstairs",)
    assert trigger.for_ == 120
    assert numeric.entity_ids == ("upstairs",)
    condition = rules[0].conditions[0]
    assert isinstance(condition, StateCondition)
    assert [group_of(s) for s in condition.entity_ids] == ["downstairs", None]


def test_group_subject_mistakes_say_where_and_why(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        textwrap.dedent(
            """
            id: bad
            triggers:
              - {state: "group:Down stairs", to: "on"}
              - {state: group:downstairs, attribute: brightness, to: 3}
            actions: [{notify: hi}]
            tests:
              - name: t
                states: {"group:": "on"}
                expect: {nothing: true}
            """
        )
    )
    rules, issues = load_rule_file(path)
    assert rules == []
    shown = [f"{i.line}:{i.col}: {i.path}: {i.message}" for i in issues]
    assert shown == [
        "4:13: triggers[0].state: invalid entity or group 'group:Down stairs': use an entity id "
        "(<device>.<key>) or a group id (group:<id>), each part 1-64 lowercase letters, "
        "digits, '_' or '-'",
        "5:31: triggers[1]: a group has no attributes: 'group:downstairs' is a group "
        "(its state is the members' aggregate)",
        "9:14: tests[0].states: invalid entity or group 'group:': use <device>.<key> or group:<id>",
    ]


# --- hub check ---------------------------------------------------------------------------


PLUGIN_NOTE = (
    ": neither hub.yaml nor the stored registry has it; it may be a group a plug-in registers "
    "while the hub runs (such as a Zigbee2MQTT group)"
)


def test_hub_check_warns_of_unknown_groups_with_a_suggestion(tmp_path: Path) -> None:
    rules = write_rules(
        tmp_path / "rules",
        """
        - id: typo
          triggers: [{state: group:downstars, to: "on"}]
          actions: [{notify: hi}]
        - id: bare_entity
          conditions: [{numeric: hall_sensor, above: 3}]
          triggers: [{command: go}]
          actions: [{notify: hi}]
        - id: fine
          triggers: [{state: downstairs, to: "on"}, {numeric: group:upstairs, below: 19}]
          actions: [{notify: hi}]
        """,
    )
    known = Known(
        entities=frozenset({"hall_sensor.temperature", "hall.light"}),
        devices=frozenset({"hall_sensor", "hall"}),
        groups=frozenset({"downstairs", "upstairs"}),
    )
    issues = check_ruleset(load_rules([rules]), known)
    shown = [(i.line, i.col, i.path, i.severity, i.message) for i in issues]
    # Warnings, not errors: a plug-in (Zigbee2MQTT's groups) may add the group at run time.
    assert shown == [
        (
            3,
            22,
            "rules[0].triggers[0].state",
            "warning",
            "unknown group 'downstars' (did you mean 'downstairs'?)" + PLUGIN_NOTE,
        ),
        (
            6,
            26,
            "rules[1].conditions[0].numeric",
            "warning",
            "unknown group 'hall_sensor' (an entity id is <device>.<key>: did you mean "
            "'hall_sensor.temperature'?)" + PLUGIN_NOTE,
        ),
    ]
    nothing = Known(entities=None, devices=None)
    issues = check_ruleset(load_rules([rules]), nothing)
    assert issues[0].message == "unknown group 'downstars'" + PLUGIN_NOTE


def test_hub_check_knows_the_groups_of_hub_yaml(tmp_path: Path) -> None:
    write_rules(
        tmp_path / "rules",
        """
        - id: r
          triggers: [{state: group:downstairs, to: "on"}, {state: group:upstair, to: "on"}]
          actions: [{notify: hi}]
        """,
    )
    config = tmp_path / "hub.yaml"
    config.write_text(
        "areas: [{id: hall, name: Hall}, {id: attic, name: Attic}]\n"
        "groups:\n"
        "  - {id: downstairs, name: Downstairs, members: [area:hall]}\n"
        "  - {id: upstairs, name: Upstairs, members: [area:attic], aggregate: average}\n"
    )
    result = hub_cli("check", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr  # a warning
    assert "warning: unknown group 'upstair' (did you mean 'upstairs'?)" + PLUGIN_NOTE in (
        result.stdout
    )
    assert "downstairs" not in result.stdout.replace("rules.yaml", "")
    assert result.stdout.endswith("OK (1 warning(s))\n")


# --- hub check: loops and conflicts through groups ---------------------------------------

HOUSEHOLD = """\
database: {{url: "{url}"}}
areas:
  - {{id: hall, name: Hall}}
  - {{id: garden, name: Garden}}
  - {{id: bedroom, name: Bedroom}}
groups:
  - {{id: downstairs, name: Downstairs, members: [area:hall]}}
  - {{id: hall_lights, name: Hall lights, members: [area:hall], kind: light}}
  - {{id: night, name: Night, members: ["tag:night"]}}
  - {{id: outside, name: Outside, members: [area:garden]}}
  - {{id: all_lights, name: All lights, members: [group:downstairs, bedroom.light]}}
devices:
  bedroom: {{area: bedroom, tags: [night]}}
"""


async def household(tmp_path: Path, *, stored: bool = True) -> Known:
    """What ``hub check`` knows of a household: hub.yaml's areas, groups (by area, tag, kind,
    nested) and device overrides, and (``stored``) the registry an earlier run stored."""
    database = tmp_path / "hub.db"
    config = tmp_path / "hub.yaml"
    config.write_text(HOUSEHOLD.format(url=f"sqlite+aiosqlite:///{database}"))
    if stored:
        storage = Storage(f"sqlite+aiosqlite:///{database}")
        await storage.start()
        devices = {
            "hall": ("hall", {"light": EntityKind.LIGHT, "plug": EntityKind.SWITCH}),
            "front": (None, {"button": EntityKind.BUTTON}),
            "bedroom": (None, {"light": EntityKind.LIGHT}),  # its area comes from hub.yaml
            "porch": ("garden", {"light": EntityKind.LIGHT}),
        }
        for device_id, (area, entities) in devices.items():
            ids = [f"{device_id}.{key}" for key in entities]
            await storage.save_device(
                Device(device_id, device_id.title(), "test", area=area, entity_ids=ids),
                [Entity(f"{device_id}.{k}", device_id, k, kind, k) for k, kind in entities.items()],
            )
        await storage.close()
    loaded = load_config(config)
    return await known_from(loaded.config, loaded.config.database.resolved_url)


def checked(tmp_path: Path, known: Known, rules: str) -> list[str]:
    """The issues ``hub check`` finds in ``rules``, the file shown as F."""
    folder = write_rules(tmp_path / "rules", rules)
    issues = check_ruleset(load_rules([folder]), known)
    return [str(issue).replace(str(folder / "rules.yaml"), "F") for issue in issues]


async def test_a_rule_on_a_member_commanding_its_group_or_the_reverse_is_a_loop(
    tmp_path: Path,
) -> None:
    known = await household(tmp_path)
    # An area group (the hall's devices, as stored), from a member and back.
    assert checked(
        tmp_path,
        known,
        """
        - id: member_commands_group
          triggers: [{state: hall.light}]
          actions: [{command: downstairs, action: toggle}]
        """,
    ) == [
        "F:4:13: rules[0].actions[0]: warning: loop: rule 'member_commands_group' (F:4:13) "
        "toggles downstairs -> rule 'member_commands_group'"
    ]
    # A tag group (tags from hub.yaml's devices:) triggering a command to its member; the
    # group that just turned on is not turned anything by turning a member on.
    assert checked(
        tmp_path,
        known,
        """
        - id: group_commands_member
          triggers: [{state: group:night}]
          actions: [{command: bedroom.light, action: toggle}]
        - id: on_stays_on
          triggers: [{state: group:downstairs, to: "on"}]
          actions: [{command: hall.light, action: turn_on}]
        """,
    ) == [
        "F:4:13: rules[0].actions[0]: warning: loop: rule 'group_commands_member' (F:4:13) "
        "toggles bedroom.light -> rule 'group_commands_member'"
    ]
    # A group of one kind: the hall's plug is no light, so commanding the lights does not
    # reach it; commanding the whole hall does.
    plug_commands = """
        - id: plug_commands
          triggers: [{state: hall.plug}]
          actions: [{command: GROUP, action: toggle}]
        """
    lights = plug_commands.replace("GROUP", "group:hall_lights")
    assert checked(tmp_path, known, lights) == []
    hall = plug_commands.replace("GROUP", "group:downstairs")
    assert checked(tmp_path, known, hall) == [
        "F:4:13: rules[0].actions[0]: warning: loop: rule 'plug_commands' (F:4:13) toggles "
        "group:downstairs -> rule 'plug_commands'"
    ]


async def test_rules_commanding_one_entity_directly_and_through_a_group_conflict(
    tmp_path: Path,
) -> None:
    known = await household(tmp_path)
    assert checked(
        tmp_path,
        known,
        """
        - id: doorbell_lights
          triggers: [{state: front.button, to: single}]
          actions: [{command: group:all_lights, action: turn_on}]
        - id: doorbell_dark
          triggers: [{state: front.button, to: single}]
          actions: [{command: bedroom.light, action: turn_off}]
        - id: porch_lights
          triggers: [{state: front.button, to: double}]
          actions: [{command: outside, action: turn_on}]
        - id: porch_dark
          triggers: [{state: front.button, to: double}]
          actions: [{command: porch.light, action: turn_off}]
        """,
    ) == [
        "F:7:13: rules[1].actions[0]: warning: rules 'doorbell_lights' (F:4:13) and "
        "'doorbell_dark' (F:7:13) both react to front.button changing to 'single' and set "
        "bedroom.light to different values (turn_on through group:all_lights vs turn_off)",
        "F:13:13: rules[3].actions[0]: warning: rules 'porch_lights' (F:10:13) and "
        "'porch_dark' (F:13:13) both react to front.button changing to 'double' and set "
        "porch.light to different values (turn_on through outside vs turn_off)",
    ]


async def test_membership_known_only_at_run_time_is_said_not_guessed(tmp_path: Path) -> None:
    # Before the first run nothing is stored: the porch's area is not known, the bedroom's
    # is (hub.yaml's devices: section).
    known = await household(tmp_path, stored=False)
    assert known.entities is None
    rules = """
        - id: porch_echo
          triggers: [{state: porch.light}]
          actions: [{command: group:outside, action: toggle}]
        - id: bedroom_echo
          triggers: [{state: bedroom.light}]
          actions: [{command: area:bedroom, action: toggle}]
        - id: porch_lights
          triggers: [{state: front.button, to: double}]
          actions: [{command: outside, action: turn_on}]
        - id: porch_dark
          triggers: [{state: front.button, to: double}]
          actions: [{command: porch.light, action: turn_off}]
        """
    assert checked(tmp_path, known, rules) == [
        "F:4:13: rules[0].actions[0]: warning: possible loop: rule 'porch_echo' (F:4:13) "
        "toggles group:outside -> rule 'porch_echo' (only if group:outside reaches "
        "porch.light; the area of device 'porch' is known only at run time)",
        "F:7:13: rules[1].actions[0]: warning: loop: rule 'bedroom_echo' (F:7:13) toggles "
        "area:bedroom -> rule 'bedroom_echo'",
        "F:13:13: rules[3].actions[0]: warning: rules 'porch_lights' (F:10:13) and "
        "'porch_dark' (F:13:13) both react to front.button changing to 'double' and may set "
        "porch.light to different values (turn_on through outside vs turn_off) (only if "
        "outside reaches porch.light; the area of device 'porch' is known only at run time)",
    ]
    # Once a run has stored the porch (in the garden), the same rules are certain.
    stored = await household(tmp_path)
    assert [line for line in checked(tmp_path, stored, rules) if "possible" in line] == []


async def test_a_group_only_a_plug_in_knows_may_close_a_rules_own_loop(tmp_path: Path) -> None:
    # Neither hub.yaml nor the database has these groups: whatever they hold is known only
    # when the hub runs. A rule that may feed itself through one is said to; a conflict with
    # every entity of the house is not.
    known = await household(tmp_path)
    assert [
        line
        for line in checked(
            tmp_path,
            known,
            """
            - id: lamp_commands_zigbee
              triggers: [{state: hall.light}]
              actions: [{command: group:zigbee2mqtt_group_7, action: toggle}]
            - id: zigbee_commands_plug
              triggers: [{state: group:zigbee2mqtt_group_8}]
              actions: [{command: hall.plug, action: toggle}]
            - id: doorbell_group
              triggers: [{state: front.button, to: single}]
              actions: [{command: group:zigbee2mqtt_group_7, action: turn_on}]
            - id: doorbell_plug
              triggers: [{state: front.button, to: single}]
              actions: [{command: hall.plug, action: turn_off}]
            """,
        )
        if "unknown group" not in line
    ] == [
        "F:4:13: rules[0].actions[0]: warning: possible loop: rule 'lamp_commands_zigbee' "
        "(F:4:13) toggles group:zigbee2mqtt_group_7 -> rule 'lamp_commands_zigbee' (only if "
        "group:zigbee2mqtt_group_7 reaches hall.light; the members of group "
        "'zigbee2mqtt_group_7' are known only at run time)",
        "F:7:13: rules[1].actions[0]: warning: possible loop: rule 'zigbee_commands_plug' "
        "(F:7:13) toggles hall.plug -> rule 'zigbee_commands_plug' (only if hall.plug is in "
        "group 'zigbee2mqtt_group_8'; the members of group 'zigbee2mqtt_group_8' are known "
        "only at run time)",
    ]


async def test_groups_stored_by_an_earlier_run_are_known_with_their_members(
    tmp_path: Path, database_url: str
) -> None:
    # A group a plug-in registered (a Zigbee group), stored: no warning, members followed.
    storage = Storage(database_url)
    await storage.start()
    await storage.save_group(Group("zigbee2mqtt_group_1", "Living room", ["living.lamp"]))
    await storage.close()
    config = tmp_path / "hub.yaml"
    config.write_text("groups: [{id: downstairs, name: Downstairs, members: [hall.light]}]\n")
    known = await known_from(load_config(config).config, database_url)
    assert "zigbee2mqtt_group_1" in known.groups
    assert checked(
        tmp_path,
        known,
        """
        - id: zigbee
          triggers: [{state: group:zigbee2mqtt_group_1}]
          conditions:
            - "states('zigbee2mqtt_group_1') != None and states('group:zigbee2mqtt_grup_1') == 'on'"
          actions:
            - command: living.lamp
              action: toggle
            - notify: "{{ state_attr('group:downstairs', 'on') }} {{ states('hall') }}"
        """,
    ) == [
        "F:5:7: rules[0].conditions[0]: warning: unknown group 'zigbee2mqtt_grup_1' (did you "
        "mean 'zigbee2mqtt_group_1'?)" + PLUGIN_NOTE,
        "F:7:7: rules[0].actions[0]: warning: loop: rule 'zigbee' (F:7:7) toggles "
        "living.lamp -> rule 'zigbee'",
        "F:9:15: rules[0].actions[1].notify: warning: unknown group 'hall'" + PLUGIN_NOTE,
    ]


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'stored.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


# --- the engine ---------------------------------------------------------------------------

ANY_ON = """
- id: any_on
  triggers:
    - {state: group:downstairs, to: "on", id: lit}
    - {state: downstairs, to: "off", for: 5m, id: dark}
  actions:
    - notify: "{{ trigger.id }} {{ trigger.to }} {{ trigger.on }}/{{ trigger.members }}"
"""


async def test_a_group_trigger_fires_on_the_aggregate_not_on_every_member(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path, ANY_ON, DOWNSTAIRS)
    h.given_states({"hall.light": "off", "kitchen.light": "off"})
    await h.start()
    await h.set("hall.light", "on")
    assert h.notifications == ["lit on 1/2"]
    await h.set("kitchen.light", "on")  # still "on": the aggregate did not change
    await h.set("hall.light", {"state": "on", "brightness": 10})
    assert h.notifications == ["lit on 1/2"]
    trace = h.traces("any_on")[0]
    assert trace["trigger"]["entity_id"] == "group:downstairs"
    assert trace["trigger"]["group_id"] == "downstairs"
    assert (trace["trigger"]["from"], trace["trigger"]["to"]) == ("off", "on")
    # The run's context chains back to the member that changed the group.
    assert trace["context"]["parent"]["source"] == "hall"
    await h.stop()


async def test_for_on_a_group_waits_and_is_cancelled_when_the_group_changes_back(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path, ANY_ON, DOWNSTAIRS)
    h.given_states({"hall.light": "on", "kitchen.light": "off"})
    await h.start()
    await h.set("hall.light", "off")  # the group is off: the 5 minutes start
    await h.advance(240)
    await h.set("kitchen.light", "on")  # on again before 5 minutes: cancelled
    await h.advance(600)
    assert h.notifications == ["lit on 1/2"]
    await h.set("kitchen.light", "off")
    await h.advance(299)
    assert h.notifications == ["lit on 1/2"]
    await h.advance(2)
    assert h.notifications == ["lit on 1/2", "dark off 0/2"]
    assert h.traces("any_on")[-1]["trigger"]["for"] == 300
    await h.stop()


AVERAGE = """
- id: cold_upstairs
  triggers:
    - {numeric: group:upstairs, below: 19}
  conditions:
    - {numeric: upstairs, below: 25}
    - {state: group:downstairs, is: "off", for: 1m}
  actions:
    - command: bed.thermostat
      action: set_temperature
      params: {temperature: "{{ trigger.value + 2 }}"}
"""


async def test_a_numeric_trigger_on_an_average_fires_on_the_crossing_and_traces_values(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path, AVERAGE, UPSTAIRS, DOWNSTAIRS)
    h.given_states(
        {
            "bed.temperature": 21,
            "bath.temperature": 20,
            "hall.light": "off",
            "kitchen.light": "off",
            "bed.thermostat": "heat",
        }
    )
    await h.start()
    await h.advance(120)  # downstairs has been off long enough
    await h.set("bed.temperature", 17.5)  # average 18.75: crosses below 19
    assert h.commands == [("bed.thermostat", "set_temperature", {"temperature": 20.75})]
    await h.set("bath.temperature", 19.5)  # 18.5: still below, no new crossing
    assert len(h.commands) == 1
    trace = h.traces("cold_upstairs")[0]
    assert trace["trigger"]["value"] == 18.75
    assert trace["trigger"]["aggregate"] == "average"
    conditions = trace["conditions"]
    assert conditions[0]["values"] == {"upstairs": 18.75}
    assert conditions[1]["values"] == {"group:downstairs": "off"}
    await h.set("bed.temperature", 22)  # 20.75: out of the range
    await h.set("hall.light", "on")
    await h.set("bed.temperature", 17)  # crosses again, but downstairs is not off
    assert len(h.commands) == 1
    assert h.traces("cold_upstairs")[-1]["outcome"] == "conditions_failed"
    await h.stop()


async def test_group_index_reaches_only_the_rules_that_name_the_group(tmp_path: Path) -> None:
    h = harness(tmp_path, ANY_ON + AVERAGE, DOWNSTAIRS, UPSTAIRS)
    await h.start()
    assert set(h.engine.group_index) == {"downstairs", "upstairs"}
    assert [w.owner for w in h.engine.group_index["upstairs"]] == ["cold_upstairs"]
    assert "hall.light" not in h.engine.state_index  # members are not watched one by one
    seen: list[GroupStateChanged] = []
    h.hub.bus.subscribe(GroupStateChanged, seen.append, owner="test")
    await h.set("hall.light", "on")
    assert [(e.group_id, e.old, e.new) for e in seen] == [("downstairs", None, "on")]
    await h.stop()
    assert not any(h.engine.group_index.values())  # disarmed: nothing left indexed


# --- expressions read groups --------------------------------------------------------------

EXPRESSIONS = """
- id: report
  triggers: [{command: report}]
  conditions:
    - "is_state('group:downstairs', 'on') and states('upstairs') < 21"
  actions:
    - notify: >-
        {{ states('group:downstairs') }} {{ states('downstairs') }}
        {{ state_attr('group:downstairs', 'on') }}/{{ state_attr('downstairs', 'members') }}
        {{ state_attr('upstairs', 'aggregate') }} {{ states('upstairs') }}
        {{ now().timestamp() - last_changed('group:downstairs') }}
        {{ states('group:nowhere') }} {{ is_state('nowhere', 'on') }}
        {{ state_attr('group:downstairs', 'brightness') }}
- id: wait_for_dark
  triggers: [{command: leave}]
  actions:
    - wait_expr: "states('group:downstairs') == 'off'"
      timeout: 10m
    - notify: "dark after {{ wait.timed_out }}"
"""


async def test_expressions_read_a_groups_aggregate_like_triggers_do(tmp_path: Path) -> None:
    h = harness(tmp_path, EXPRESSIONS, DOWNSTAIRS, UPSTAIRS)
    h.given_states(
        {
            "hall.light": "off",
            "kitchen.light": "off",
            "bed.temperature": 21,
            "bath.temperature": 20,
        }
    )
    await h.start()
    await h.command("report")
    assert h.notifications == []  # downstairs is off: the condition holds not
    assert h.traces("report")[-1]["outcome"] == "conditions_failed"
    await h.advance(90)
    await h.set("kitchen.light", "on")
    await h.advance(30)
    await h.command("report")
    # The value, as group:<id> and as the bare id; the counts and the aggregate as
    # attributes; last_changed is when the aggregate changed; unknown groups are None.
    assert h.notifications == ["on on 1/2 average 20.5 30.0 unknown False unknown"]
    await h.stop()


async def test_a_wait_expr_on_a_group_resolves_when_the_group_changes(tmp_path: Path) -> None:
    h = harness(tmp_path, EXPRESSIONS, DOWNSTAIRS, UPSTAIRS)
    h.given_states({"hall.light": "on", "kitchen.light": "on"})
    await h.start()
    await h.command("leave")
    await h.set("hall.light", "off")
    assert h.notifications == []  # kitchen is still on: the group is on
    await h.set("kitchen.light", "off")
    assert h.notifications == ["dark after False"]
    await h.stop()


PINNED = """
- id: pinned
  triggers: [{command: go}]
  actions:
    - wait_expr: "is_state('downstairs', 'on')"
      timeout: 1m
    - notify: "{{ states('group:downstairs') }} {{ wait.timed_out }}"
  tests:
    - name: a group given its value directly is what expressions read
      states: {group:downstairs: "off"}
      events:
        - {command: go}
        - {state: group:downstairs, to: "on"}
      expect:
        notifications: [{message: "on False"}]
"""


async def test_rule_tests_give_expressions_the_group_value_they_set(tmp_path: Path) -> None:
    ruleset = load_rules([write_rules(tmp_path / "rules", PINNED)])
    results = await run_rule_tests(ruleset)
    assert [(r.name, r.passed, r.problems) for r in results] == [
        ("a group given its value directly is what expressions read", True, []),
    ]


# --- rule tests (hub rules test) ------------------------------------------------------------

RULE_WITH_TESTS = """
- id: night_watch
  triggers:
    - {state: group:downstairs, to: "on"}
  conditions:
    - {numeric: group:upstairs, below: 19}
  actions:
    - {notify: "downstairs on while upstairs is {{ states('bed.temperature') }}"}
  tests:
    - name: members drive the group
      states: {hall.light: "off", kitchen.light: "off", bed.temperature: 17, bath.temperature: 18}
      events:
        - {state: kitchen.light, to: "on"}
      expect:
        notifications: [{message_contains: "downstairs on"}]
    - name: a group's value can be given directly
      states: {group:downstairs: "off", group:upstairs: 18}
      events:
        - {state: group:downstairs, to: "on"}
      expect:
        notifications: [{message_contains: "downstairs on"}]
    - name: warm upstairs, nothing
      states: {group:downstairs: "off", group:upstairs: 22}
      events:
        - {state: downstairs, to: "on"}
      expect: {nothing: true}
"""


async def test_rule_tests_drive_groups_by_members_or_by_value(tmp_path: Path) -> None:
    from hub.model import Registry

    ruleset = load_rules([write_rules(tmp_path / "rules", RULE_WITH_TESTS)])
    registry = Registry()
    registry.groups.update({g.id: g for g in (DOWNSTAIRS, UPSTAIRS)})
    results = await run_rule_tests(ruleset, registry=registry)
    assert [(r.name, r.passed, r.problems) for r in results] == [
        ("members drive the group", True, []),
        ("a group's value can be given directly", True, []),
        ("warm upstairs, nothing", True, []),
    ]


def test_hub_rules_test_uses_the_groups_of_hub_yaml(tmp_path: Path) -> None:
    write_rules(tmp_path / "rules", RULE_WITH_TESTS)
    config = tmp_path / "hub.yaml"
    config.write_text(
        "groups:\n"
        "  - {id: downstairs, name: Downstairs, members: [hall.light, kitchen.light]}\n"
        "  - id: upstairs\n"
        "    name: Upstairs\n"
        "    members: [bed.temperature, bath.temperature]\n"
        "    aggregate: average\n"
    )
    result = hub_cli("rules", "test", "--config", str(config), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["passed"] == 3
    # Without the groups, the members no longer make up "downstairs": that test fails.
    config.write_text("")
    result = hub_cli("rules", "test", "--config", str(config), "--json")
    assert result.returncode == 1
    failed = [t["test"] for t in json.loads(result.stdout)["tests"] if not t["passed"]]
    assert failed == ["members drive the group"]


# --- a real hub ---------------------------------------------------------------------------

REAL_RULE = """
- id: downstairs_lit
  triggers:
    - state: group:downstairs
      to: "on"
  actions:
    - command: porch.light
      action: turn_on
      wait: false
- id: downstairs_dark
  triggers:
    - state: downstairs
      to: "off"
      for: 1s
  actions:
    - command: porch.light
      action: turn_off
      wait: false
"""


async def test_a_real_hub_runs_a_rule_on_a_group_of_two_devices(
    tmp_path: Path, mqtt_url: str
) -> None:
    suffix = uuid.uuid4().hex[:8]
    prefix, base = f"t{suffix}/home", f"t{suffix}/hub"
    write_rules(tmp_path / "rules", REAL_RULE)
    config = tmp_path / "hub.yaml"
    config.write_text(
        f"hub: {{base_topic: {base}, device_topic: {prefix}, command_timeout: 3s}}\n"
        f"mqtt: {{url: {mqtt_url}, client_id: hub-{suffix}}}\n"
        f"database: {{url: 'sqlite+aiosqlite:///{tmp_path / 'hub.db'}', flush_interval: 0.1s}}\n"
        "groups:\n"
        "  - {id: downstairs, name: Downstairs, members: [hall, kitchen], kind: light}\n"
    )
    loaded = load_config(config)
    hub = Hub(loaded.config, config_path=loaded.path, source=loaded.source)
    await hub.start()
    try:
        with MqttProbe(mqtt_url) as probe:
            probe.subscribe(f"{prefix}/porch/set")
            probe.subscribe(f"{base}/groups/downstairs/state")
            for device in ("hall", "kitchen", "porch"):
                body = {"name": device, "entities": {"light": {"kind": "light"}}}
                await asyncio.to_thread(probe.publish, f"{prefix}/{device}/config", body, 1, True)
                await asyncio.to_thread(
                    probe.publish, f"{prefix}/{device}/state", {"light": "off"}, 1
                )
            await _until(lambda: hub.groups.value("downstairs") == "off")

            await asyncio.to_thread(probe.publish, f"{prefix}/kitchen/state", {"light": "on"}, 1)
            _, payload = await asyncio.to_thread(probe.wait_for, f"{prefix}/porch/set")
            assert json.loads(payload)["action"] == "turn_on"
            # The mirror publishes the same aggregate the rule saw.
            await _until(
                lambda: any(
                    json.loads(m.payload)["state"] == "on"
                    for m in probe.messages
                    if m.topic == f"{base}/groups/downstairs/state" and m.payload
                )
            )

            # The second member turning on changes nothing for the group: no second command.
            await asyncio.to_thread(probe.publish, f"{prefix}/hall/state", {"light": "on"}, 1)
            await asyncio.sleep(0.3)
            sets = [m for m in probe.messages if m.topic == f"{prefix}/porch/set"]
            assert len(sets) == 1

            # Both off: the group is off; held for 1 s, the other rule turns the porch off.
            for device in ("hall", "kitchen"):
                await asyncio.to_thread(
                    probe.publish, f"{prefix}/{device}/state", {"light": "off"}, 1
                )
            _, payload = await asyncio.to_thread(probe.wait_for, f"{prefix}/porch/set", None, 5.0)
            assert json.loads(payload)["action"] == "turn_off"
    finally:
        await hub.stop()
    trace = await asyncio.to_thread(
        hub_cli, "rules", "trace", "downstairs_lit", "--json", "--config", str(config)
    )
    assert trace.returncode == 0, trace.stderr
    runs = json.loads(trace.stdout)
    assert len(runs) == 1
    trigger = runs[0]["trigger"]
    assert (trigger["entity_id"], trigger["from"], trigger["to"]) == (
        "group:downstairs",
        "off",
        "on",
    )
    assert (trigger["on"], trigger["members"]) == (1, 2)
    # The run was caused by the kitchen light, through the group.
    assert runs[0]["context"]["parent"]["source"] == "kitchen"


async def _until(check: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
