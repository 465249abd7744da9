"""The rule loader: every form of docs/rules.md into the rule model, every mistake at its place."""

import shutil
import textwrap
from pathlib import Path

import pytest

from hub.config import load_config
from hub.rules.loader import check_rule_files, load_rule_file, load_rules
from hub.rules.model import (
    AndCondition,
    CalendarTrigger,
    Choice,
    ChooseAction,
    CommandAction,
    CommandTrigger,
    CronTrigger,
    DelayAction,
    DeviceTrigger,
    EventTrigger,
    ExpressionCondition,
    FireEventAction,
    HubStartTrigger,
    IntervalTrigger,
    Mode,
    MqttTrigger,
    NotCondition,
    NotifyAction,
    NumericCondition,
    NumericTrigger,
    OrCondition,
    ParallelAction,
    Pos,
    RepeatAction,
    RepeatKind,
    Rule,
    RuleTest,
    RuleTestEvent,
    SceneAction,
    StateCondition,
    StateTrigger,
    StopAction,
    SunCondition,
    SunEvent,
    SunTrigger,
    TimeCondition,
    TimeTrigger,
    TriggerCondition,
    VariablesAction,
    WaitAction,
    WebhookCallAction,
    WebhookTrigger,
)
from hub.yamlsource import ConfigError, SecretResolver

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
VALID = FIXTURES / "valid" / "everything.yaml"
INVALID = FIXTURES / "invalid"


def write(folder: Path, text: str, name: str = "rules.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    """Every issue of one file, as printed, with the file name shortened to ``F``."""
    _, issues = load_rule_file(path)
    return [str(issue).replace(str(path), "F") for issue in issues]


def pos(line: int, col: int, file: Path = VALID) -> Pos:
    return Pos(str(file), line, col)


# --- the valid file -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def valid_rules() -> dict[str, Rule]:
    rules, issues = load_rule_file(VALID)
    assert [str(issue) for issue in issues] == []
    assert [rule.id for rule in rules] == ["every_trigger", "every_condition", "every_action"]
    return {rule.id: rule for rule in rules}


def test_every_trigger_form(valid_rules: dict[str, Rule]) -> None:
    rule = valid_rules["every_trigger"]
    assert rule.triggers == (
        StateTrigger(
            id="motion",
            pos=pos(10, 7),
            entity_ids=("hallway_motion.motion", "porch_motion.motion"),
            from_=("off",),
            to=("on", 1, True),  # YAML 1.2: bare `on` stays text, only true is a boolean
            attribute="battery",
            for_=120.0,
        ),
        NumericTrigger(
            id="warm",
            pos=pos(16, 7),
            entity_ids=("kitchen_sensor.temperature",),
            above=20.0,
            below="kitchen_sensor.setpoint",
            attribute="value",
            for_=5400.0,
        ),
        MqttTrigger(pos=pos(22, 7), topic="zigbee2mqtt/+/action", payload="single"),
        MqttTrigger(
            pos=pos(24, 7), topic="frigate/#", json_field="after.label", json_value="person"
        ),
        MqttTrigger(pos=pos(26, 7), topic="legacy/button", payload="1"),
        TimeTrigger(pos=pos(28, 7), at=("07:30",)),
        TimeTrigger(pos=pos(29, 7), at=("06:00", "18:30:15")),
        CronTrigger(pos=pos(30, 7), expression="*/5 * * * *"),
        IntervalTrigger(pos=pos(31, 7), every=90.0),
        SunTrigger(id="dusk", pos=pos(32, 7), event=SunEvent.SUNSET, offset=-1800.0),
        SunTrigger(pos=pos(35, 7), event=SunEvent.SUNRISE, offset=0.0),
        HubStartTrigger(pos=pos(36, 7)),
        DeviceTrigger(
            pos=pos(37, 7), device_ids=("kitchen_plug", "garage_door"), event="offline", for_=300.0
        ),
        CommandTrigger(pos=pos(40, 7), name="movie night"),
        WebhookTrigger(pos=pos(41, 7), name="doorbell"),
        CalendarTrigger(
            pos=pos(42, 7), calendar="family", event="end", offset=-900.0, match="holiday"
        ),
        EventTrigger(pos=pos(46, 7), event_type="garage_opened", data={"by": "rule"}),
    )
    assert rule == Rule(
        id="every_trigger",
        description="One of each trigger.",
        triggers=rule.triggers,
        actions=(CommandAction(pos=pos(49, 7), target="hallway_light.light", action="turn_on"),),
        mode=Mode.QUEUED,
        max=3,
        enabled=False,
        catch_up=False,
        variables={"level": 180, "label": "{{ trigger.id }}"},
        pos=pos(2, 3),
    )
    assert isinstance(rule.triggers[0].to, tuple)
    assert type(rule.triggers[0].to[2]) is bool


def test_every_condition_form(valid_rules: dict[str, Rule]) -> None:
    rule = valid_rules["every_condition"]
    assert rule.triggers == (
        HubStartTrigger(id="boot", pos=pos(54, 7)),
        CommandTrigger(id="manual", pos=pos(56, 7), name="check"),
    )
    assert rule.conditions == (
        StateCondition(
            pos=pos(59, 7),
            entity_ids=("hallway_light.light", "kitchen_light.light"),
            state=("on",),
        ),
        StateCondition(
            pos=pos(61, 7),
            entity_ids=("alarm.mode",),
            state=("armed_away", "armed_night"),
            attribute="source",
            for_=10.0,
        ),
        NumericCondition(
            pos=pos(65, 7), entity_ids=("kitchen_sensor.temperature",), above=18.5, below=24.0
        ),
        NumericCondition(
            pos=pos(68, 7),
            entity_ids=("a.b", "c.d"),
            below="kitchen_sensor.setpoint",
            attribute="level",
        ),
        TimeCondition(
            pos=pos(71, 7), after="17:00", before="07:00", weekdays=("mon", "tue", "fri")
        ),
        TimeCondition(pos=pos(72, 7), weekdays=("sat",)),
        SunCondition(
            pos=pos(73, 7),
            after=SunEvent.SUNSET,
            after_offset=-1800.0,
            before=SunEvent.SUNRISE,
            before_offset=3600.0,
        ),
        SunCondition(pos=pos(74, 7), before=SunEvent.SUNSET),
        TriggerCondition(pos=pos(75, 7), ids=("boot",)),
        TriggerCondition(pos=pos(76, 7), ids=("boot", "manual")),
        AndCondition(
            pos=pos(77, 7),
            conditions=(
                ExpressionCondition(pos=pos(78, 11), expression="trigger.id == 'boot'"),
                OrCondition(
                    pos=pos(79, 11),
                    conditions=(
                        ExpressionCondition(
                            pos=pos(80, 15),
                            expression="states('kitchen_sensor.temperature') > 20",
                        ),
                        NotCondition(
                            pos=pos(81, 15),
                            conditions=(
                                StateCondition(
                                    pos=pos(82, 19), entity_ids=("alarm.mode",), state=("disarmed",)
                                ),
                            ),
                        ),
                    ),
                ),
            ),
        ),
    )
    assert rule.actions == (SceneAction(pos=pos(85, 7), scene="evening"),)
    assert (rule.mode, rule.max, rule.enabled, rule.catch_up) == (Mode.SINGLE, 10, True, True)


def test_every_action_form(valid_rules: dict[str, Rule]) -> None:
    rule = valid_rules["every_action"]
    assert rule.mode is Mode.PARALLEL
    assert rule.triggers == (CommandTrigger(id="any_id", pos=pos(90, 7), name="everything"),)
    assert rule.actions == (
        CommandAction(
            alias="lamp on",
            continue_on_error=True,
            pos=pos(93, 7),
            target="living_room_lamp.light",
            action="turn_on",
            params={"brightness": "{{ level }}", "transition": 2},
            wait=False,
        ),
        CommandAction(pos=pos(99, 7), target="area:kitchen", action="turn_off"),
        SceneAction(pos=pos(101, 7), scene="{{ 'night' if now().hour > 22 else 'evening' }}"),
        NotifyAction(
            pos=pos(102, 7),
            message="Door opened at {{ now() }}",
            title="Door",
            targets=("alice", "family_chat"),
            data={"priority": "high"},
        ),
        NotifyAction(pos=pos(106, 7), message="plain", targets=("bob",)),
        DelayAction(pos=pos(108, 7), duration=90.0),
        DelayAction(pos=pos(109, 7), duration="{{ level / 10 }}"),
        DelayAction(pos=pos(110, 7), duration=5.0),
        WaitAction(
            pos=pos(111, 7),
            triggers=(
                StateTrigger(pos=pos(112, 9), entity_ids=("front_door.contact",), to=("off",)),
            ),
            timeout=120.0,
            continue_on_timeout=False,
        ),
        WaitAction(
            pos=pos(116, 7),
            triggers=(
                MqttTrigger(pos=pos(117, 11), topic="doorbell/pressed"),
                EventTrigger(id="garage", pos=pos(118, 11), event_type="garage_opened"),
            ),
        ),
        WaitAction(
            pos=pos(120, 7), expression="is_state('front_door.contact', 'off')", timeout=30.0
        ),
        ChooseAction(
            pos=pos(122, 7),
            choices=(
                Choice(
                    pos=pos(123, 11),
                    conditions=(TriggerCondition(pos=pos(123, 24), ids=("any_id",)),),
                    actions=(SceneAction(pos=pos(125, 15), scene="one"),),
                ),
                Choice(
                    pos=pos(126, 11),
                    conditions=(
                        ExpressionCondition(pos=pos(126, 23), expression="now().hour < 6"),
                    ),
                    actions=(SceneAction(pos=pos(127, 21), scene="two"),),
                ),
            ),
            default=(SceneAction(pos=pos(129, 11), scene="three"),),
        ),
        ChooseAction(
            pos=pos(130, 7),
            choices=(
                Choice(
                    pos=pos(130, 7),
                    conditions=(
                        StateCondition(
                            pos=pos(130, 12), entity_ids=("front_door.contact",), state=("on",)
                        ),
                    ),
                    actions=(SceneAction(pos=pos(131, 14), scene="open"),),
                ),
            ),
            default=(SceneAction(pos=pos(132, 14), scene="closed"),),
        ),
        ChooseAction(
            pos=pos(133, 7),
            choices=(
                Choice(
                    pos=pos(133, 7),
                    conditions=(
                        ExpressionCondition(pos=pos(133, 11), expression="states('x.y') == 'on'"),
                    ),
                    actions=(SceneAction(pos=pos(134, 13), scene="solo"),),
                ),
            ),
        ),
        RepeatAction(
            pos=pos(135, 7),
            kind=RepeatKind.COUNT,
            count=3,
            actions=(SceneAction(pos=pos(135, 36), scene="blink"),),
        ),
        RepeatAction(
            pos=pos(136, 7),
            kind=RepeatKind.COUNT,
            count="{{ level // 60 }}",
            max_iterations=50,
            actions=(SceneAction(pos=pos(139, 19), scene="blink"),),
        ),
        RepeatAction(
            pos=pos(140, 7),
            kind=RepeatKind.WHILE,
            conditions=(
                NumericCondition(
                    pos=pos(141, 17), entity_ids=("kitchen_sensor.temperature",), below=19.0
                ),
            ),
            actions=(DelayAction(pos=pos(142, 19), duration=60.0),),
        ),
        RepeatAction(
            pos=pos(143, 7),
            kind=RepeatKind.UNTIL,
            conditions=(
                ExpressionCondition(
                    pos=pos(144, 17), expression="is_state('front_door.contact', 'off')"
                ),
            ),
            actions=(DelayAction(pos=pos(145, 19), duration=10.0),),
        ),
        RepeatAction(
            pos=pos(146, 7),
            kind=RepeatKind.FOR_EACH,
            items=["kitchen_light.light", "hallway_light.light"],
            actions=(
                CommandAction(pos=pos(149, 13), target="{{ repeat.item }}", action="turn_off"),
            ),
        ),
        RepeatAction(
            pos=pos(151, 7),
            kind=RepeatKind.FOR_EACH,
            items="{{ ['a.b', 'c.d'] }}",
            actions=(SceneAction(pos=pos(153, 19), scene="each"),),
        ),
        ParallelAction(
            pos=pos(154, 7),
            branches=(
                (
                    SceneAction(pos=pos(155, 12), scene="a"),
                    DelayAction(pos=pos(155, 24), duration=1.0),
                ),
                (SceneAction(pos=pos(156, 11), scene="b"),),
            ),
        ),
        VariablesAction(pos=pos(157, 7), variables={"count": 0, "next_level": "{{ level + 10 }}"}),
        StopAction(pos=pos(158, 7), reason="done for {{ trigger.id }}", error=True),
        StopAction(pos=pos(160, 7)),
        WebhookCallAction(
            pos=pos(161, 7),
            url="https://example.com/hook",
            method="PUT",
            json={"state": "{{ states('x.y') }}", "fixed": [1, 2]},
            headers={"X-Token": "abc"},
            timeout=5.0,
        ),
        WebhookCallAction(pos=pos(166, 7), url="http://example.com/plain"),
        FireEventAction(pos=pos(167, 7), event_type="movie_started", data={"room": "living_room"}),
    )


def test_rule_tests_are_parsed(valid_rules: dict[str, Rule]) -> None:
    lamp, quiet = valid_rules["every_action"].tests
    assert lamp == RuleTest(
        name="the lamp turns on",
        clock="2026-01-05T21:00:00",
        states={
            "hallway_motion.motion": "off",
            "kitchen_sensor.temperature": {"state": 21.5, "unit": "°C"},
        },
        events=(
            RuleTestEvent(
                kind="state",
                data={"state": "hallway_motion.motion", "to": "on", "attributes": {"battery": 90}},
                pos=pos(176, 11),
            ),
            RuleTestEvent(
                kind="mqtt", data={"mqtt": "doorbell/pressed", "payload": "1"}, pos=pos(179, 11)
            ),
            RuleTestEvent(kind="advance", data={"advance": 120.0}, pos=pos(181, 11)),
            RuleTestEvent(kind="at", data={"at": "22:15"}, pos=pos(182, 11)),
            RuleTestEvent(kind="command", data={"command": "everything"}, pos=pos(183, 11)),
            RuleTestEvent(kind="webhook", data={"webhook": "doorbell"}, pos=pos(184, 11)),
            RuleTestEvent(
                kind="event",
                data={"event": "garage_opened", "data": {"by": "test"}},
                pos=pos(185, 11),
            ),
            RuleTestEvent(
                kind="device", data={"device": "kitchen_plug", "to": "offline"}, pos=pos(187, 11)
            ),
        ),
        expect_commands=(
            {
                "target": "living_room_lamp.light",
                "action": "turn_on",
                "params": {"brightness": 180},
            },
            {"target": "area:kitchen", "action": "turn_off"},
        ),
        expect_notifications=(
            {"message": "plain", "targets": ("bob",)},
            {"message_contains": "Door"},
        ),
        pos=pos(170, 7),
    )
    assert quiet == RuleTest(
        name="quiet",
        events=(RuleTestEvent(kind="advance", data={"advance": 10.0}, pos=pos(197, 16)),),
        expect_none=True,
        pos=pos(196, 7),
    )


def test_a_one_rule_file_has_paths_from_the_rule(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        id: solo
        triggers: [{state: a.b, to: "on"}]
        actions:
          - command: a.c
            action: turn_on
            params: {brightness: [1, {level: "{{ x +* 2 }}"}]}
          - comand: a.c
        """,
    )
    rules, issues = load_rule_file(path)
    assert rules == []
    shown = [str(issue).replace(str(path), "F") for issue in issues]
    assert shown[-1] == "F:7:5: actions[1]: unknown action type 'comand' (did you mean 'command'?)"
    # The same file written as a list of one names the rule `rules[0]`.
    listed = write(tmp_path, "- " + path.read_text().replace("\n", "\n  "), "listed.yaml")
    last = [str(issue) for issue in load_rule_file(listed)[1]][-1]
    assert last.endswith(
        ":7:7: rules[0].actions[1]: unknown action type 'comand' (did you mean 'command'?)"
    )


# --- every kind of mistake ---------------------------------------------------------------


ENTITY_RULE = "use <device>.<key>, each 1-64 lowercase letters, digits, '_' or '-'"
SUBJECT_RULE = (
    "use an entity id (<device>.<key>) or a group id (group:<id>), each part 1-64 lowercase "
    "letters, digits, '_' or '-'"
)
ID_RULE = "use 1-64 lowercase letters, digits, '_' or '-'"
TRIGGER_TYPES = "state, numeric, mqtt, time, cron, every, sun, hub, device, command, webhook, "
TRIGGER_TYPES += "calendar, event"


def test_trigger_mistakes() -> None:
    t = "F:{}: rules[0].triggers[{}]".format
    assert problems(INVALID / "triggers.yaml") == [
        f"{t('4:7', 0)}: unknown trigger type 'stat' (did you mean 'state'?)",
        f"{t('6:7', 1)}: unknown key 'fro' (did you mean 'from'?)",
        f"{t('7:15', 2)}.state[0]: invalid entity or group 'Hallway.motion': {SUBJECT_RULE}",
        # `motion` (no dot) is read as a group id: hub check says whether that group exists.
        f"{t('8:12', 2)}.for: expected a number of seconds or a duration like '5s', got 'soon'",
        f"{t('9:7', 3)}: give 'above', 'below' or both",
        f"{t('12:14', 4)}.below: 'below' (20) must be more than 'above' (25): "
        "no number is in between",
        f"{t('14:14', 5)}.above: expected a number or an entity id, got 'warm'",
        f"{t('15:13', 6)}.mqtt: topic filter 'zigbee2mqtt/#/action': '#' must be a whole last "
        "level",
        f"{t('17:16', 7)}.payload: expected the payload text, got 1.5 (put it in quotes)",
        f"{t('19:7', 8)}.json: missing required key 'value'",
        f"{t('19:20', 8)}.json.path: invalid dotted path 'a..b'",
        f"{t('20:23', 9)}.time[1]: invalid time of day '25:00': hours go to 23, minutes and "
        "seconds to 59",
        f"{t('21:13', 10)}.cron: cron expression '* * *' has 3 fields, expected 5 "
        "(minute hour day-of-month month day-of-week)",
        f"{t('22:14', 11)}.every: must be more than 0 seconds, got 0",
        f"{t('23:12', 12)}.sun: expected one of 'sunrise', 'sunset', got 'sunsett' "
        "(did you mean 'sunset'?)",
        f"{t('24:15', 12)}.offset: expected a duration like '30m' or '-30m', got 'soon'",
        f"{t('25:12', 13)}.hub: expected one of 'start', got 'stop'",
        f"{t('27:11', 14)}.to: expected one of 'online', 'offline', got 'on'",
        f"{t('28:16', 15)}.command: a command name must not be empty",
        f"{t('29:16', 16)}.webhook: invalid webhook name 'Door Bell': {ID_RULE}",
        f"{t('30:7', 17)}: missing required key 'event'",
        f"{t('32:13', 18)}.data: expected data (a mapping of key: value), got a list",
        f"{t('34:7', 19)}: a trigger has exactly one type, got 'state' and 'mqtt' "
        "(write one trigger each)",
        f"{t('36:11', 20)}.id: invalid trigger id 'Motion!': {ID_RULE}",
        f"{t('37:7', 21)}: expected a trigger (a mapping of key: value), got 'state: a.b'",
        f"{t('38:7', 22)}: a trigger needs its type: one of {TRIGGER_TYPES}",
    ]


def test_condition_mistakes() -> None:
    assert problems(INVALID / "conditions.yaml") == [
        "F:6:21: conditions[0].trigger[1]: unknown trigger id 'bot' (did you mean 'boot'?)",
        "F:7:5: conditions[1]: missing required key 'is'",
        "F:9:17: conditions[2].is[1]: expected a value (text, number, true or false), got a list",
        "F:10:5: conditions[3]: give 'above', 'below' or both",
        "F:11:19: conditions[4].time.after: invalid time of day '7:60': hours go to 23, minutes "
        "and seconds to 59",
        "F:11:38: conditions[4].time.weekdays[0]: expected one of 'mon', 'tue', 'wed', 'thu', "
        "'fri', 'sat', 'sun', got 'monday' (did you mean 'mon'?)",
        "F:12:11: conditions[5].time: give 'after', 'before' or 'weekdays'",
        "F:13:11: conditions[6].time: expected {after: 'HH:MM', before: 'HH:MM', weekdays: [..]}, "
        "got '17:00'",
        "F:14:10: conditions[7].sun: give 'after', 'before' or both",
        "F:14:11: conditions[7].sun: 'after_offset' needs 'after'",
        "F:15:18: conditions[8].sun.after: expected one of 'sunrise', 'sunset', got 'dusk'",
        "F:15:56: conditions[8].sun.before_offset: expected a duration like '30m' or '-30m', "
        "got 'later'",
        "F:16:10: conditions[9].and: needs at least one condition",
        "F:17:11: conditions[10].or[0]: unknown condition type 'stat' (did you mean 'state'?)",
        "F:18:45: conditions[11].not.attribute: expected an attribute name, got 5 "
        "(put it in quotes)",
        "F:19:11: conditions[12].expr: an expression must not be empty",
        "F:20:5: conditions[13]: expected a condition (a mapping, or an expression as text), "
        "got 42",
        "F:22:20: actions[0].if[0].trigger: unknown trigger id 'manual' "
        "(this rule's trigger ids: boot)",
    ]


def test_action_mistakes() -> None:
    a = "F:{}: rules[0].actions[{}]".format
    assert problems(INVALID / "actions.yaml") == [
        f"{a('4:7', 0)}: missing required key 'action'",
        f"{a('5:16', 1)}.command: unknown target kind 'room' in 'room:kitchen': "
        "use entity:, device:, group:, area: or tag:",
        f"{a('7:15', 1)}.params: expected data (a mapping of key: value), got a list",
        f"{a('8:7', 2)}: unknown action type 'notfy' (did you mean 'notify'?)",
        f"{a('9:14', 3)}.delay: expected a number of seconds or a duration like '5s', got 'soon'",
        f"{a('11:7', 4)}: give either 'wait' (triggers) or 'wait_expr', not both",
        f"{a('12:13', 5)}.wait: needs at least one trigger",
        f"{a('13:16', 5)}.timeout: a duration cannot be negative, got -5",
        f"{a('15:11', 6)}.choose[0]: missing required key 'actions'",
        f"{a('17:58', 7)}.choose: unknown key 'extra'",
        f"{a('18:7', 8)}: missing required key 'then'",
        f"{a('20:26', 9)}.repeat: give one of 'count', 'while', 'until' or 'for_each', "
        "not 'count' and 'while'",
        f"{a('21:7', 10)}.repeat: give one of 'count', 'while', 'until' or 'for_each'",
        f"{a('22:23', 11)}.repeat.count: must be at least 0, got -1",
        f"{a('23:26', 12)}.repeat.for_each: expected a list or a template giving one, "
        "got 'kitchen'",
        f"{a('23:74', 12)}.repeat.max_iterations: must be at least 1, got 0",
        f"{a('24:34', 13)}.parallel[1][0]: unknown action type 'sceen' (did you mean 'scene'?)",
        f"{a('25:19', 14)}.variables: 'trigger' is set by the run itself: choose another name",
        f"{a('25:31', 14)}.variables: invalid variable name '2nd': use letters, digits and '_', "
        "not starting with a digit",
        f"{a('26:13', 15)}.stop: expected a reason, got a mapping",
        f"{a('27:14', 15)}.error: expected true or false, got 'yes'",
        f"{a('28:21', 16)}.webhook_call: expected an http:// or https:// URL, "
        "got 'example.com/hook'",
        f"{a('29:15', 16)}.method: expected one of 'GET', 'POST', 'PUT', 'PATCH', 'DELETE', "
        "got 'fetch'",
        f"{a('30:26', 16)}.headers.X-Count: expected header text, got 5 (put it in quotes)",
        f"{a('31:16', 16)}.timeout: must be more than 0 seconds, got 0",
        f"{a('32:14', 17)}.event: an event type must not be empty",
        f"{a('34:14', 18)}.alias: expected a name for the step, got 7 (put it in quotes)",
        f"{a('35:26', 18)}.continue_on_error: expected true or false, got 'maybe'",
    ]


def test_rule_test_mistakes() -> None:
    t = "F:{}: rules[0].tests[{}]".format
    assert problems(INVALID / "tests.yaml") == [
        f"{t('5:7', 0)}: missing required key 'expect'",
        f"{t('7:14', 1)}.clock: expected a local date-time like '2026-01-05T21:00:00', "
        "got '2026-13-01T00:00:00'",
        f"{t('9:9', 1)}.states: invalid entity or group 'Kitchen': "
        "use <device>.<key> or group:<id>",
        f"{t('10:9', 1)}.states['a.b']: missing required key 'state'",
        f"{t('12:11', 1)}.events[0]: unknown test event type 'stat' (did you mean 'state'?)",
        f"{t('14:11', 1)}.events[1]: missing required key 'to'",
        f"{t('15:17', 1)}.events[2].mqtt: topic 'a/+/c' must not contain wildcards",
        f"{t('16:20', 1)}.events[3].advance: expected a number of seconds or a duration like "
        "'5s', got 'soon'",
        f"{t('17:15', 1)}.events[4].at: invalid time of day '24:00': hours go to 23, minutes "
        "and seconds to 59",
        f"{t('19:15', 1)}.events[5].to: expected one of 'online', 'offline', got 'gone' "
        "(did you mean 'online'?)",
        f"{t('20:20', 1)}.events[6].webhook: invalid webhook name 'Bad Name': {ID_RULE}",
        f"{t('22:9', 1)}.expect: 'nothing: true' cannot go with commands or notifications",
        f"{t('23:20', 1)}.expect.commands[0]: missing required key 'action'",
        f"{t('25:26', 1)}.expect.notifications[0]: give 'message' or 'message_contains', not both",
        f"{t('26:13', 1)}.expect.notifications[1]: give 'message' or 'message_contains'",
        f"{t('27:13', 2)}.name: duplicate test name 'everything wrong' (first on line 6)",
        f"{t('28:14', 2)}.clock: give a local date-time without a time zone, "
        "got '2026-01-05T12:00:00+01:00'",
        f"{t('29:7', 2)}.expect: expect needs 'commands', 'notifications' or 'nothing: true'",
        f"{t('29:16', 2)}.expect: unknown key 'comands' (did you mean 'commands'?)",
    ]


def test_rule_mistakes_and_the_good_rules_of_the_same_file() -> None:
    path = INVALID / "rules.yaml"
    r = "F:{}: rules[{}]".format
    assert problems(path) == [
        f"{r('1:3', 0)}: missing required key 'triggers'",
        f"{r('1:3', 0)}: missing required key 'actions'",
        f"{r('1:7', 0)}.id: invalid rule id 'Bad Rule': {ID_RULE}",
        f"{r('2:9', 0)}.mode: expected one of 'single', 'restart', 'queued', 'parallel', "
        "got 'restrat' (did you mean 'restart'?)",
        f"{r('3:8', 0)}.max: must be at least 1, got 0",
        f"{r('4:12', 0)}.enabled: expected true or false, got 'yes'",
        f"{r('5:13', 0)}.catch_up: expected true or false, got 1",
        f"{r('6:16', 0)}.description: expected a description, got a list",
        f"{r('7:25', 0)}.variables: 'wait' is set by the run itself: choose another name",
        f"{r('8:3', 0)}: unknown key 'trigers' (did you mean 'triggers'?)",
        f"{r('12:7', 2)}.id: duplicate rule id 'twin' (first defined at F:9:3)",
        f"{r('15:3', 3)}: expected a rule (a mapping of key: value), got 'just text'",
    ]
    rules, _ = load_rule_file(path)
    # The rules without mistakes are still built (`hub check` reports; the engine refuses).
    assert [(rule.id, rule.pos) for rule in rules] == [
        ("twin", pos(9, 3, path)),
        ("good", pos(16, 3, path)),
    ]
    good = rules[1]
    assert good.triggers == (HubStartTrigger(pos=pos(17, 13, path)),)
    assert good.actions == (SceneAction(pos=pos(18, 12, path), scene="c"),)


def test_yaml_problems_use_the_same_paths(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        - id: a
          triggers: [{hub: start}]
          actions: [{scene: x}]
          actions: [{scene: y}]
        - id: b
          triggers: [{hub: start}]
          actions: [{scene: x}]
        """,
    )
    assert problems(path) == [
        "F:4:3: rules[0].actions: duplicate key 'actions' (first given on line 3)"
    ]
    # The YAML mistake spoils its own rule only.
    assert [rule.id for rule in load_rule_file(path)[0]] == ["b"]


def test_a_file_that_is_not_rules(tmp_path: Path) -> None:
    assert problems(write(tmp_path, "just text\n")) == [
        "F:1:1: <root>: a rule file holds a rule (a mapping) or a list of rules, got 'just text'"
    ]
    assert load_rule_file(write(tmp_path, "# nothing yet\n", "empty.yaml")) == ([], [])


def test_secrets_in_rule_files(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        id: hook
        triggers: [{hub: start}]
        actions:
          - webhook_call: !secret hook_url
        """,
    )
    rules, issues = load_rule_file(
        path, secrets=SecretResolver.from_mapping({"hook_url": "https://h/x"})
    )
    assert issues == []
    assert rules[0].actions == (WebhookCallAction(pos=pos(4, 5, path), url="https://h/x"),)
    # An unknown secret is reported once, by the YAML loader, not again as "expected a URL",
    # and the rule is not built without it.
    assert load_rule_file(path)[0] == []
    assert problems(path) == [
        "F:4:19: actions[0].webhook_call: secret 'hook_url' not found: "
        "no secrets file is configured"
    ]


# --- expressions and templates ------------------------------------------------------------


def test_expressions_and_templates_are_checked(tmp_path: Path) -> None:
    pytest.importorskip("hub.rules.expr")
    path = write(
        tmp_path,
        """
        - id: exprs
          triggers: [{hub: start}]
          conditions:
            - "states('a.b') >"
          actions:
            - command: a.c
              action: turn_on
              params: {brightness: "{{ level + }}", fine: "{{ level }}"}
            - wait_expr: "1 +* 2"
            - notify: "hello {{ name"
        """,
    )
    found = problems(path)
    assert [issue.split(": ", 2)[:2] for issue in found] == [
        ["F:4:7", "rules[0].conditions[0]"],
        ["F:8:28", "rules[0].actions[0].params.brightness"],
        ["F:9:18", "rules[0].actions[1].wait_expr"],
        ["F:10:15", "rules[0].actions[2].notify"],
    ]
    assert all(": invalid expression: " in issue for issue in (found[0], found[2]))
    assert all(": invalid template: " in issue for issue in (found[1], found[3]))


# --- folders -----------------------------------------------------------------------------


def test_load_rules_reads_folders_recursively_and_sorted(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    write(folder / "b", "id: two\ntriggers: [{hub: start}]\nactions: [{scene: x}]\n", "two.yml")
    write(folder, "- id: one\n  triggers: [{hub: start}]\n  actions: [{scene: x}]\n", "a.yaml")
    write(folder, "id: ignored\n", "notes.txt")
    write(folder / ".git", "id: [broken\n", "x.yaml")
    extra = write(tmp_path / "more", "id: three\ntriggers: [{hub: start}]\nactions: [{scene: x}]\n")
    rule_set = load_rules([folder, extra])
    assert list(rule_set.rules) == ["one", "two", "three"]
    assert rule_set.files == (str(folder / "a.yaml"), str(folder / "b" / "two.yml"), str(extra))
    assert rule_set.rules["two"].pos == pos(1, 1, folder / "b" / "two.yml")


def test_duplicate_rule_ids_across_files(tmp_path: Path) -> None:
    first = write(
        tmp_path, "- id: lights\n  triggers: [{hub: start}]\n  actions: [{scene: x}]\n", "a.yaml"
    )
    second = write(
        tmp_path, "# again\nid: lights\ntriggers: [{hub: start}]\nactions: [{scene: y}]\n", "b.yaml"
    )
    with pytest.raises(ConfigError) as caught:
        load_rules([tmp_path])
    assert [str(issue) for issue in caught.value.issues] == [
        f"{second}:2:5: id: duplicate rule id 'lights' (first defined at {first}:1:3)"
    ]


def test_every_file_is_reported_even_next_to_a_syntax_error(tmp_path: Path) -> None:
    broken = write(tmp_path, "- id: a\n  triggers: [{hub: start}\n", "a.yaml")
    shutil.copy(INVALID / "conditions.yaml", tmp_path / "b.yaml")
    issues = check_rule_files([tmp_path])
    assert str(issues[0]).startswith(f"{broken}:3:1: <root>: YAML syntax: ")
    assert [issue.file for issue in issues[1:]] == [str(tmp_path / "b.yaml")] * 18
    with pytest.raises(ConfigError) as caught:
        load_rules([tmp_path])
    assert caught.value.issues == issues


def test_missing_rule_folders(tmp_path: Path) -> None:
    missing = tmp_path / "rules"
    # The default folder may be absent: no rules, no problem.
    assert check_rule_files([missing], missing_ok=True) == []
    assert load_rules([missing], missing_ok=True).rules == {}
    # A folder the configuration names must exist.
    assert [str(issue) for issue in check_rule_files([missing])] == [
        f"{missing}:1:1: <root>: rules folder not found"
    ]
    with pytest.raises(ConfigError):
        load_rules([missing])


# --- the rules: section of hub.yaml --------------------------------------------------------


def test_rules_section_defaults_and_paths(tmp_path: Path) -> None:
    default = load_config(write(tmp_path / "a", "hub:\n  name: Home\n", "hub.yaml")).config.rules
    assert (default.paths, default.traces_per_outcome, default.history_keep, default.history) == (
        ("rules",),
        20,
        3 * 86400.0,
        True,
    )
    assert not default.configured
    assert default.resolved_paths() == (tmp_path / "a" / "rules",)

    config = write(
        tmp_path / "b",
        """
        rules:
          paths: [rules, /srv/shared-rules, ~/more]
          traces_per_outcome: 5
          history_keep: 12h
          history: false
        """,
        "hub.yaml",
    )
    section = load_config(config).config.rules
    assert section.configured
    assert section.resolved_paths() == (
        tmp_path / "b" / "rules",
        Path("/srv/shared-rules"),
        Path("~/more").expanduser(),
    )
    assert section.resolved_paths(Path("/x")) == (
        Path("/x/rules"),
        Path("/srv/shared-rules"),
        Path("~/more").expanduser(),
    )
    assert (section.traces_per_outcome, section.history_keep, section.history) == (
        5,
        43200.0,
        False,
    )
    single = load_config(write(tmp_path / "c", "rules:\n  paths: automations\n", "hub.yaml"))
    assert single.config.rules.paths == ("automations",)


def test_rules_section_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        rules:
          paths: [""]
          traces_per_outcome: 0
          history_keep: forever
          histroy: true
        """,
        "hub.yaml",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(issue).replace(str(path), "F") for issue in caught.value.issues] == [
        "F:2:11: rules.paths[0]: must not be empty",
        "F:3:23: rules.traces_per_outcome: must be at least 1, got 0",
        "F:4:17: rules.history_keep: expected a number of seconds or a duration like '5s', "
        "got 'forever'",
        "F:5:3: rules: unknown key 'histroy' (did you mean 'history'?)",
    ]


def test_the_repository_configuration_still_checks() -> None:
    loaded = load_config(REPO / "hub.yaml")
    paths = loaded.config.rules.resolved_paths()
    assert check_rule_files(paths, missing_ok=not loaded.config.rules.configured) == []
