"""Static checks of rule sets (``hub check``): unknown references, conflicts, loops, mistakes."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from hub.config import load_config
from hub.model import Area, Device, Entity, EntityKind, Group, Registry
from hub.rules.checks import Known, check_ruleset, known_from, known_from_registry
from hub.rules.loader import load_rules
from hub.rules.model import (
    CommandAction,
    NumericCondition,
    NumericTrigger,
    Pos,
    Rule,
    RuleSet,
    SceneAction,
    StateTrigger,
)
from hub.simulator import build_home
from hub.storage import Storage

REPO = Path(__file__).resolve().parents[2]
CHECKS = Path(__file__).resolve().parent / "fixtures" / "checks"


def simulated_registry() -> Registry:
    """The simulator's 36-device home as a registry, its areas registered, plus a group."""
    registry = Registry()
    for device in build_home(36):
        payload = device.config_payload()
        entity_ids = [f"{device.id}.{key}" for key in payload["entities"]]
        registry.devices[device.id] = Device(
            id=device.id,
            name=payload["name"],
            owner="simulator",
            area=payload["area"],
            entity_ids=entity_ids,
        )
        registry.areas.setdefault(payload["area"], Area(id=payload["area"], name=payload["area"]))
        for key, spec in payload["entities"].items():
            registry.entities[f"{device.id}.{key}"] = Entity(
                id=f"{device.id}.{key}",
                device_id=device.id,
                key=key,
                kind=EntityKind(spec["kind"]),
                name=spec["name"],
            )
    registry.groups["upstairs"] = Group(
        id="upstairs", name="Upstairs", members=["office_light.light", "device:bedroom_light"]
    )
    return registry


@pytest.fixture
def known() -> Known:
    return known_from_registry(simulated_registry())


def check(name: str, known: Known) -> list[str]:
    """The issues of one fixture file, its path shown as F."""
    path = CHECKS / name
    issues = check_ruleset(load_rules([path]), known)
    return [str(issue).replace(str(path), "F") for issue in issues]


# ----- no false positives -------------------------------------------------------------------


def test_the_example_rules_have_no_findings(known: Known) -> None:
    ruleset = load_rules([REPO / "rules"])
    assert len(ruleset.rules) >= 6
    assert check_ruleset(ruleset, known) == []


# ----- unknown references -------------------------------------------------------------------


def test_unknown_references_are_reported_with_suggestions(known: Known) -> None:
    assert check("unknown.yaml", known) == [
        "F:4:14: rules[0].triggers[0].state: warning: unknown entity 'hallway_motoin.motion' "
        "(did you mean 'hallway_motion.motion'?)",
        "F:7:14: rules[0].triggers[1].above: warning: unknown entity 'garage_charger_plug.pwr' "
        "(did you mean 'garage_charger_plug.power'?)",
        "F:8:32: rules[0].triggers[2].device[1]: warning: unknown device 'halway_light' "
        "(did you mean 'hallway_light'?)",
        "F:13:7: rules[0].conditions[1]: warning: unknown entity 'kitchen_lamp.light' "
        "(did you mean 'kitchen_light.light'?)",
        "F:16:54: rules[0].conditions[2].or[1].numeric[1]: warning: unknown entity "
        "'living_room_climate.temprature' (did you mean 'living_room_climate.temperature'?)",
        "F:19:16: rules[0].actions[0].command: warning: unknown entity 'kitchen_lamp.light' "
        "(did you mean 'kitchen_light.light'?)",
        "F:21:28: rules[0].actions[0].params.brightness: warning: unknown entity "
        "'kitchen_dimmer.level'",
        "F:22:16: rules[0].actions[1].command: warning: unknown group 'downstairs' "
        "(did you mean 'upstairs'?): neither hub.yaml nor the stored registry has it; it may "
        "be a group a plug-in registers while the hub runs (such as a Zigbee2MQTT group)",
        "F:24:16: rules[0].actions[2].command: warning: unknown area 'kitchn' "
        "(did you mean 'kitchen'?)",
        "F:26:16: rules[0].actions[3].command: warning: unknown area 'gardn' "
        "(did you mean 'garden'?)",
        "F:28:16: rules[0].actions[4].command: warning: unknown target 'hallway_lite': no "
        "entity, device, group or area has that id (did you mean 'hallway_light'?)",
        "F:38:15: rules[0].actions[9].notify: warning: unknown entity 'front_dor.contact' "
        "(did you mean 'front_door.contact'?)",
        "F:40:16: rules[0].actions[10].wait.state: warning: unknown entity "
        "'hallway_motion.motoin' (did you mean 'hallway_motion.motion'?)",
    ]


def test_without_a_stored_registry_only_groups_and_areas_are_checked() -> None:
    # No database yet: entities and devices are unknown, so they are not reported; a bare
    # target that is not a group or area may be a device, so it is not reported either.
    known = Known(entities=None, devices=None, groups=frozenset(), areas=frozenset({"garden"}))
    assert check("unknown.yaml", known) == [
        "F:22:16: rules[0].actions[1].command: warning: unknown group 'downstairs': neither "
        "hub.yaml nor the stored registry has it; it may be a group a plug-in registers while "
        "the hub runs (such as a Zigbee2MQTT group)",
        "F:24:16: rules[0].actions[2].command: warning: unknown area 'kitchn'",
        "F:26:16: rules[0].actions[3].command: warning: unknown area 'gardn' "
        "(did you mean 'garden'?)",
    ]


def test_templated_targets_are_skipped(known: Known) -> None:
    lines = check("unknown.yaml", known)
    # Lines 34-37 command "{{ 'nowhere_at_all.light' }}" and "{{ trigger.entity_id }}".
    assert not [line for line in lines if line.startswith(("F:34:", "F:36:"))]
    assert not [line for line in lines if "nowhere_at_all" in line]


def test_unknown_scenes_only_when_scenes_are_known(tmp_path: Path) -> None:
    rule = tmp_path / "scene.yaml"
    rule.write_text(
        textwrap.dedent(
            """\
            id: evening
            triggers:
              - command: evening
            actions:
              - scene: movie_nite
              - scene: "{{ 'anything' }}"
            """
        )
    )
    ruleset = load_rules([rule])
    nothing = Known(entities=None, devices=None)
    assert check_ruleset(ruleset, nothing) == []
    scenes = dataclasses.replace(nothing, scenes=frozenset({"movie_night", "dinner"}))
    assert [str(issue) for issue in check_ruleset(ruleset, scenes)] == [
        f"{rule}:5:12: actions[0].scene: warning: unknown scene 'movie_nite' "
        "(did you mean 'movie_night'?)"
    ]


# ----- conflicts ----------------------------------------------------------------------------


def test_conflicting_rules(known: Known) -> None:
    assert check("conflicts.yaml", known) == [
        "F:14:7: rules[1].actions[0]: warning: rules 'hall_on' (F:7:7) and 'hall_off' (F:14:7) "
        "both react to hallway_motion.motion turning on and set hallway_light.light to "
        "different values (turn_on vs turn_off)",
        # hall_night's turn_off runs only on its `late` trigger (not reported with hall_on);
        # its default branch runs on motion, as hall_off does.
        "F:33:11: rules[2].actions[0].default[0]: warning: rules 'hall_off' (F:14:7) and "
        "'hall_night' (F:33:11) both react to hallway_motion.motion turning on and set "
        "hallway_light.light to different values (turn_off vs turn_on)",
        "F:101:11: rules[8].actions[0].then[0]: warning: rules 'heat_morning' (F:88:7) and "
        "'heat_morning_eco' (F:101:11) both react to the time 06:30 and set "
        "living_room_thermostat.thermostat to different values "
        "(set_temperature 21 vs set_temperature 18)",
        "F:123:13: rules[10].actions[0].parallel[1][1]: warning: rule 'garden_pump_race' sets "
        "garden_pump_plug.switch to different values at the same time in parallel branches "
        "(F:120:11 and F:123:13): turn_on vs turn_off",
        "F:139:7: rules[12].actions[0]: warning: rules 'bell_on' (F:132:7) and 'bell_off' "
        "(F:139:7) both react to MQTT messages on 'home/+/bell' and 'home/front/#' with "
        "payload 'ring' and set office_light.light to different values (turn_on vs turn_off)",
        "F:173:7: rules[16].actions[0]: warning: rules 'fan_hot' (F:156:7) and 'fan_warm' "
        "(F:173:7) both react to living_room_climate.temperature going between 25 and 30 and "
        "set office_desk_plug.switch to different values (turn_on vs turn_off)",
    ]


def test_a_conflict_separated_by_a_trigger_id_is_not_reported(known: Known) -> None:
    lines = check("conflicts.yaml", known)
    assert not [line for line in lines if "'hall_on'" in line and "'hall_night'" in line]
    # Nor the others the conditions keep apart: time windows, lock states, payloads, ranges.
    for apart in ("kitchen_day", "door_lock_home", "bell_quiet", "fan_cold", "heat_computed"):
        assert not [line for line in lines if f"'{apart}'" in line], apart


def test_a_disabled_rule_does_not_conflict(tmp_path: Path, known: Known) -> None:
    rule = tmp_path / "disabled.yaml"
    text = (CHECKS / "conflicts.yaml").read_text()
    rule.write_text(text.replace("- id: hall_off\n", "- id: hall_off\n  enabled: false\n"))
    lines = [str(issue) for issue in check_ruleset(load_rules([rule]), known)]
    assert not [line for line in lines if "'hall_off'" in line]
    assert [line for line in lines if "'heat_morning'" in line]


# ----- loops --------------------------------------------------------------------------------


def test_loops(known: Known) -> None:
    assert check("loops.yaml", known) == [
        "F:7:7: rules[0].actions[0]: warning: loop: rule 'loop_a' (F:7:7) sets "
        "hallway_light.light on -> rule 'loop_b' (F:14:7) toggles office_light.light -> "
        "rule 'loop_c' (F:22:7) sets kitchen_light.light on -> rule 'loop_a'",
        "F:30:7: rules[3].actions[0]: warning: loop: rule 'self_loop' (F:30:7) toggles "
        "garage_charger_plug.switch -> rule 'self_loop'",
        "F:57:7: rules[6].actions[0]: warning: loop: rule 'ping' (F:57:7) fires event 'pong' "
        "-> rule 'pong' (F:65:7) fires event 'ping' -> rule 'ping'",
    ]


def test_a_three_rule_cycle_is_reported_once_wherever_the_files_start_it(
    tmp_path: Path, known: Known
) -> None:
    # The same three rules, listed starting from another rule of the cycle.
    text = (CHECKS / "loops.yaml").read_text()
    head, rest = text.split("- id: loop_a\n", 1)
    loop_a, rest = rest.split("- id: loop_b\n", 1)
    rule = tmp_path / "rotated.yaml"
    rule.write_text(head + "- id: loop_b\n" + rest + "\n- id: loop_a\n" + loop_a)
    lines = [str(issue) for issue in check_ruleset(load_rules([rule]), known)]
    cycles = [line for line in lines if "'loop_a'" in line]
    assert len(cycles) == 1
    assert "loop: rule 'loop_b'" in cycles[0]
    assert cycles[0].endswith("-> rule 'loop_b'")


def test_loops_through_groups_and_areas(known: Known) -> None:
    assert check("targets.yaml", known) == [
        "F:6:7: rules[0].actions[0]: warning: loop: rule 'office_echo' (F:6:7) toggles "
        "upstairs -> rule 'office_echo'",
        "F:14:7: rules[1].actions[0]: warning: loop: rule 'kitchen_area_on' (F:14:7) sets "
        "area:kitchen on -> rule 'kitchen_plug_off' (F:22:7) sets kitchen_plug.switch off -> "
        "rule 'kitchen_area_on'",
    ]


def test_loops_through_groups_whose_members_are_unknown_are_said_only_of_one_rule() -> None:
    # The group and the area exist, but what they hold is known only when the hub runs.
    nothing = Known(
        entities=None, devices=None, groups=frozenset({"upstairs"}), areas=frozenset({"kitchen"})
    )
    # Not even the kinds are known: any entity could be anywhere, which tells nothing.
    assert check("targets.yaml", nothing) == []
    # With the kinds known, a rule whose command may reach its own trigger is said to be a
    # possible loop; a chain of two rules through such a guess (kitchen_area_on and
    # kitchen_plug_off, if the kitchen light is in the kitchen) is not.
    kinds = {"office_light.light": "light", "kitchen_light.light": "light"}
    some = dataclasses.replace(nothing, entity_kinds=kinds | {"kitchen_plug.switch": "switch"})
    assert check("targets.yaml", some) == [
        "F:6:7: rules[0].actions[0]: warning: possible loop: rule 'office_echo' (F:6:7) "
        "toggles upstairs -> rule 'office_echo' (only if upstairs reaches office_light.light; "
        "the members of group 'upstairs' are known only at run time)",
    ]


# ----- smaller mistakes ---------------------------------------------------------------------


def test_small_mistakes(known: Known) -> None:
    assert check("small.yaml", known) == [
        "F:5:10: triggers[0].for: warning: 'for: 0' waits for no time at all: leave 'for' out, "
        "or give a duration",
        "F:7:11: conditions[0].time: warning: 'after' and 'before' are the same time "
        "(07:00:00): the window is empty, so this condition is never true",
        "F:9:5: actions[0]: warning: this wait has no timeout and the rule's mode is single: "
        "while it waits, the rule ignores its triggers, possibly for ever; consider a "
        "'timeout' (or mode restart)",
    ]


def test_a_wait_without_timeout_is_fine_in_mode_restart(tmp_path: Path, known: Known) -> None:
    rule = tmp_path / "restart.yaml"
    rule.write_text("mode: restart\n" + (CHECKS / "small.yaml").read_text())
    lines = [str(issue) for issue in check_ruleset(load_rules([rule]), known)]
    assert len(lines) == 2
    assert not [line for line in lines if "no timeout" in line]


def test_an_empty_numeric_range_is_an_error_even_from_code(known: Known) -> None:
    # The loader refuses this range in a file; a rule set built in code gets it from the
    # checker, at the rule part's position, with the rules[<id>] path.
    where = Pos("<code>", 3, 5)
    rule = Rule(
        id="fan",
        triggers=(
            NumericTrigger(
                entity_ids=("office_climate.temperature",), above=30, below=20, pos=where
            ),
            StateTrigger(entity_ids=("office_light.light",), to=("on",), for_=0.0, pos=where),
        ),
        conditions=(
            NumericCondition(
                entity_ids=("office_climate.temperatur",), above=5, below=5, pos=where
            ),
        ),
        actions=(
            CommandAction(target="office_desk_plug.switch", action="turn_on", pos=where),
            SceneAction(scene="{{ 'x' }}", pos=where),
        ),
        pos=Pos("<code>", 1, 1),
    )
    issues = check_ruleset(RuleSet(rules={"fan": rule}), known)
    assert [str(issue) for issue in issues] == [
        "<code>:3:5: rules[fan].conditions[0].below: 'below' (5) must be more than 'above' (5): "
        "no number is in between, so this condition is never true",
        "<code>:3:5: rules[fan].conditions[0].numeric: warning: unknown entity "
        "'office_climate.temperatur' (did you mean 'office_climate.temperature'?)",
        "<code>:3:5: rules[fan].triggers[0].below: 'below' (20) must be more than 'above' (30): "
        "no number is in between, so this trigger never fires",
        "<code>:3:5: rules[fan].triggers[1].for: warning: 'for: 0' waits for no time at all: "
        "leave 'for' out, or give a duration",
    ]
    assert [issue.severity for issue in issues] == ["error", "warning", "error", "warning"]


# ----- what exists --------------------------------------------------------------------------


def write_config(tmp_path: Path, database: str) -> Path:
    config = tmp_path / "hub.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            database:
              url: {database}
            areas:
              - {{id: office, name: Office}}
              - {{id: kitchen, name: Kitchen}}
            groups:
              - {{id: upstairs, name: Upstairs, members: [office_light.light, group:desk]}}
              - {{id: desk, name: Desk, members: [entity:office_desk_plug.switch]}}
            """
        )
    )
    return config


async def test_known_from_a_missing_sqlite_file_does_not_create_it(tmp_path: Path) -> None:
    loaded = load_config(write_config(tmp_path, "sqlite+aiosqlite:///data/hub.db"))
    url = loaded.config.database.resolved_url
    known = await known_from(loaded.config, url)
    assert not (tmp_path / "data").exists()
    assert known.entities is None
    assert known.devices is None
    assert known.groups == {"upstairs", "desk"}
    assert known.areas == {"office", "kitchen"}
    assert known.group_members["upstairs"] == ("office_light.light", "group:desk")
    # Without the registry, groups of entities are still followed (and areas as far as
    # hub.yaml's devices: section tells: here not at all).
    assert check("targets.yaml", known) == [
        "F:6:7: rules[0].actions[0]: warning: loop: rule 'office_echo' (F:6:7) toggles "
        "upstairs -> rule 'office_echo'"
    ]


async def test_known_from_no_url_or_an_unreachable_server(tmp_path: Path) -> None:
    loaded = load_config(write_config(tmp_path, "sqlite+aiosqlite:///hub.db"))
    assert (await known_from(loaded.config, None)).entities is None
    unreachable = "postgresql+asyncpg://postgres@127.0.0.1:1/hub"
    known = await known_from(loaded.config, unreachable)
    assert known.entities is None
    assert known.groups == {"upstairs", "desk"}


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'stored.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


async def test_known_from_an_empty_database_knows_no_entities(
    tmp_path: Path, database_url: str
) -> None:
    storage = Storage(database_url)
    await storage.start()
    await storage.close()
    loaded = load_config(write_config(tmp_path, "sqlite+aiosqlite:///hub.db"))
    known = await known_from(loaded.config, database_url)
    assert known.entities is None
    assert known.devices is None


async def test_known_from_the_stored_registry(tmp_path: Path, database_url: str) -> None:
    registry = simulated_registry()
    storage = Storage(database_url)
    await storage.start()
    for device_id in ("office_light", "office_desk_plug", "kitchen_light", "bedroom_light"):
        device = registry.devices[device_id]
        await storage.save_device(device, list(registry.entities_of(device_id)))
    await storage.save_area(Area(id="kitchen", name="Kitchen"))
    await storage.save_group(Group(id="stored", name="Stored", members=["kitchen_light.light"]))
    await storage.close()

    loaded = load_config(write_config(tmp_path, "sqlite+aiosqlite:///hub.db"))
    known = await known_from(loaded.config, database_url)
    assert known.devices == frozenset(
        {"office_light", "office_desk_plug", "kitchen_light", "bedroom_light"}
    )
    assert known.entities == frozenset(
        {
            "office_light.light",
            "office_desk_plug.switch",
            "office_desk_plug.power",
            "office_desk_plug.energy",
            "kitchen_light.light",
            "bedroom_light.light",
        }
    )
    assert known.areas == {"office", "kitchen"}
    assert known.groups == {"upstairs", "desk", "stored"}
    assert known.entity_kinds["office_desk_plug.power"] == "sensor"
    lines = check("unknown.yaml", known)
    assert (
        "F:19:16: rules[0].actions[0].command: warning: unknown entity 'kitchen_lamp.light' "
        "(did you mean 'kitchen_light.light'?)"
    ) in lines
