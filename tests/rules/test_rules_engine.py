"""The rule engine: every trigger, condition, action and mode; traces; failures at run time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
from ruleharness import AMSTERDAM, Harness


async def harness(tmp_path: Path, text: str, **kwargs: Any) -> Harness:
    return await Harness.from_yaml(tmp_path, text, **kwargs).start()


# ----- triggers -------------------------------------------------------------------------------


async def test_state_trigger_from_to_and_attribute(tmp_path: Path) -> None:
    h = Harness.from_yaml(
        tmp_path,
        """
        - id: r
          triggers:
            - state: hall.motion
              from: "off"
              to: "on"
            - state: desk.light
              attribute: brightness
              id: dimmed
          actions:
            - notify: >-
                {{ trigger.platform }} {{ trigger.entity_id }} {{ trigger.from }}->{{ trigger.to }}
        """,
    )
    h.given_states({"hall.motion": "off", "desk.light": {"state": "on", "brightness": 10}})
    await h.start()
    await h.set("hall.motion", "on")
    await h.set("hall.motion", "on")  # a repeat report is not a change
    await h.set("desk.light", {"state": "on", "brightness": 20})
    await h.set("desk.light", {"state": "off", "brightness": 20})  # brightness unchanged
    assert h.notifications == ["state hall.motion off->on", "state desk.light 10->20"]


async def test_state_held_for_fires_once_and_is_cancelled_by_a_change(tmp_path: Path) -> None:
    h = Harness.from_yaml(
        tmp_path,
        """
        - id: r
          triggers:
            - state: door.contact
              to: "on"
              for: 5m
          actions:
            - notify: open too long
        """,
    )
    h.given_states({"door.contact": "off"})
    await h.start()
    await h.set("door.contact", "on")
    await h.advance(240)
    await h.set("door.contact", "off")
    await h.advance(600)
    assert h.notifications == []
    await h.set("door.contact", "on")
    await h.advance(299)
    assert h.notifications == []
    await h.advance(2)
    assert h.notifications == ["open too long"]


async def test_numeric_trigger_fires_on_crossing_only_and_thresholds_may_be_entities(
    tmp_path: Path,
) -> None:
    h = Harness.from_yaml(
        tmp_path,
        """
        - id: r
          mode: parallel
          triggers:
            - numeric: room.temperature
              above: room.setpoint
          actions:
            - notify: "warm {{ trigger.value }}"
        """,
    )
    h.given_states({"room.temperature": 19.0, "room.setpoint": 20.0})
    await h.start()
    await h.set("room.temperature", 21.0)
    await h.set("room.temperature", 22.0)  # still above: no new crossing
    await h.set("room.temperature", 19.5)
    await h.set("room.setpoint", 19.0)  # the threshold moved below the value: a crossing
    assert h.notifications == ["warm 21.0", "warm 19.5"]


async def test_mqtt_trigger_with_payload_and_json_field(tmp_path: Path) -> None:
    h = await harness(
        tmp_path,
        """
        - id: r
          mode: parallel
          triggers:
            - mqtt: zigbee/+/action
              payload: single
              id: click
            - mqtt: sensors/garden
              json: {path: soil.moisture, value: 10}
              id: dry
          actions:
            - notify: "{{ trigger.id }} {{ trigger.topic }}"
        """,
    )
    await h.mqtt("zigbee/remote1/action", "double")
    await h.mqtt("zigbee/remote1/action", "single")
    await h.mqtt("sensors/garden", '{"soil": {"moisture": 25}}')
    await h.mqtt("sensors/garden", '{"soil": {"moisture": 10}}')
    await h.mqtt("sensors/garden", "not json")
    assert h.notifications == ["click zigbee/remote1/action", "dry sensors/garden"]


async def test_time_cron_interval_and_sun_triggers(tmp_path: Path) -> None:
    h = await harness(
        tmp_path,
        """
        - id: at_time
          triggers: [{time: "12:30"}]
          actions: [{notify: "time {{ now().hour }}:{{ now().minute }}"}]
        - id: by_cron
          triggers: [{cron: "0 */2 * * *"}]
          actions: [{notify: "cron {{ now().hour }}"}]
        - id: every
          triggers: [{every: 45m}]
          actions: [{notify: every}]
        - id: sunset
          triggers: [{sun: sunset, offset: -30m}]
          actions: [{notify: "sun {{ now().hour }}:{{ now().minute }}"}]
        """,
        tz="Europe/Amsterdam",
        location=AMSTERDAM,
    )
    await h.advance(4 * 3600 + 25 * 60)  # 12:00 -> 16:25 local
    notes = h.notifications
    assert "time 12:30" in notes
    assert [n for n in notes if n.startswith("cron")] == ["cron 14", "cron 16"]
    assert notes.count("every") == 5  # 12:45, 13:30, 14:15, 15:00, 15:45
    sun = [n for n in notes if n.startswith("sun")]
    # Sunset in Amsterdam on 5 January 2026 is at 16:42, so 30 minutes before is 16:12.
    assert sun == ["sun 16:12"]


async def test_hub_start_device_command_webhook_calendar_and_event_triggers(tmp_path: Path) -> None:
    h = Harness.from_yaml(
        tmp_path,
        """
        - id: r
          mode: queued
          triggers:
            - hub: start
            - device: plug1
              to: offline
              for: 1m
            - command: movie night
            - webhook: doorbell
            - calendar: family
              event: start
              match: holiday
            - event: laundry_done
              data: {machine: washer}
          actions:
            - notify: "{{ trigger.platform }}"
        """,
    )
    h.given_states({"plug1.switch": "on"})
    await h.start()
    h.hub.set_available("plug1", True)
    h.hub.set_available("plug1", False)
    await h.advance(61)
    await h.command("movie night")
    h.engine.fire_webhook("doorbell", {"who": "postman"})
    h.engine.fire_calendar("family", "start", "Work")
    h.engine.fire_calendar("family", "start", "Summer holiday")
    await h.event("laundry_done", machine="dryer")
    await h.event("laundry_done", machine="washer")
    await h.idle()
    assert h.notifications == ["hub", "device", "command", "webhook", "calendar", "event"]


# ----- conditions -----------------------------------------------------------------------------


async def test_conditions_all_kinds_are_traced_with_their_results(tmp_path: Path) -> None:
    h = Harness.from_yaml(
        tmp_path,
        """
        - id: r
          mode: parallel
          triggers:
            - state: hall.motion
              to: "on"
              id: motion
          conditions:
            - state: hall.light
              is: ["off", unavailable]
            - numeric: hall.lux
              below: 50
            - time: {after: "08:00", before: "23:00", weekdays: [mon, tue]}
            - trigger: motion
            - or:
                - expr: "states('hall.lux') < 10"
                - not:
                    - state: alarm.armed
                      is: "on"
            - "is_state('hall.light', 'off')"
          actions:
            - notify: lit
        """,
    )
    h.given_states(
        {"hall.motion": "off", "hall.light": "off", "hall.lux": 30, "alarm.armed": "off"}
    )
    await h.start()
    await h.set("hall.motion", "on")
    assert h.notifications == ["lit"]
    await h.set("hall.motion", "off")
    await h.set("alarm.armed", "on")
    await h.set("hall.motion", "on")
    assert h.notifications == ["lit"]
    failed = h.traces("r")[-1]
    assert failed["outcome"] == "conditions_failed"
    results = [(c["type"], c["result"]) for c in failed["conditions"]]
    assert results == [
        ("state", True),
        ("numeric", True),
        ("time", True),
        ("trigger", True),
        ("or", False),
    ]
    inner = failed["conditions"][4]["conditions"]
    assert [c["type"] for c in inner] == ["expression", "not"]
    assert failed["conditions"][0]["pos"].endswith("rules.yaml:9:7")


async def test_sun_condition_at_night(tmp_path: Path) -> None:
    h = Harness.from_yaml(
        tmp_path,
        """
        - id: r
          triggers: [{state: hall.motion, to: "on"}]
          conditions: [{sun: {after: sunset, before: sunrise}}]
          actions: [{notify: dark}]
        """,
        start="2026-01-05T12:00:00",
        tz="Europe/Amsterdam",
        location=AMSTERDAM,
    )
    h.given_states({"hall.motion": "off"})
    await h.start()
    await h.set("hall.motion", "on")
    await h.set("hall.motion", "off")
    await h.advance(8 * 3600)  # 20:00, dark
    await h.set("hall.motion", "on")
    assert h.notifications == ["dark"]


# ----- actions --------------------------------------------------------------------------------


async def test_command_confirmed_and_state_carries_the_run_in_its_context(tmp_path: Path) -> None:
    h = Harness.from_yaml(
        tmp_path,
        """
        - id: motion_light
          triggers: [{state: hall.motion, to: "on"}]
          actions:
            - command: hall.light
              action: turn_on
              params: {brightness: "{{ 100 + 50 }}"}
        """,
    )
    h.given_states({"hall.motion": "off", "hall.light": "off"})
    await h.start()
    await h.set("hall.motion", "on")
    await h.idle()
    state = h.hub.registry.states["hall.light"]
    assert state.value == "on"
    assert state.attributes["brightness"] == 150
    chain = [(c.origin.value, c.source) for c in state.context.chain()]
    assert chain == [("device", "hall"), ("rule", "motion_light"), ("device", "hall")]
    trace = h.traces("motion_light")[-1]
    assert trace["outcome"] == "ok"
    assert state.context.parent is not None
    assert trace["run_id"] == state.context.parent.id
    step = trace["steps"][0]
    assert step["type"] == "command"
    assert step["result"]["results"][0]["ok"] is True
    assert step["duration_ms"] >= 0


async def test_delay_wait_choose_repeat_parallel_variables_and_event(tmp_path: Path) -> None:
    h = Harness.from_yaml(
        tmp_path,
        """
        - id: r
          variables: {base: 10}
          triggers: [{command: go}]
          actions:
            - variables: {level: "{{ base * 2 }}"}
            - delay: 30s
            - notify: "after delay {{ level }}"
            - wait: {state: hall.door, to: "on"}
              timeout: 1m
            - notify: "timed out {{ wait.timed_out }}"
            - if: ["level > 15"]
              then: [{notify: big}]
              else: [{notify: small}]
            - repeat:
                count: 2
                actions: [{notify: "count {{ repeat.index }}"}]
            - repeat:
                for_each: [a, b]
                actions: [{notify: "item {{ repeat.item }}"}]
            - repeat:
                until: ["repeat.index >= 3"]
                actions: [{notify: "until {{ repeat.index }}"}]
            - repeat:
                while: ["repeat.index < 2"]
                actions: [{notify: "while {{ repeat.index }}"}]
            - parallel:
                - [{delay: 10s}, {notify: slow}]
                - [{notify: fast}]
            - event: done
              data: {level: "{{ level }}"}
        - id: listener
          triggers: [{event: done}]
          actions: [{notify: "heard {{ trigger.data.level }}"}]
        """,
    )
    h.given_states({"hall.door": "off"})
    await h.start()
    await h.command("go")
    await h.advance(29)
    assert h.notifications == []
    await h.advance(2)
    assert h.notifications == ["after delay 20"]
    await h.advance(61)
    await h.advance(11)
    assert h.notifications == [
        "after delay 20",
        "timed out True",
        "big",
        "count 1",
        "count 2",
        "item a",
        "item b",
        "until 1",
        "until 2",
        "until 3",
        "while 1",
        "fast",
        "slow",
        "heard 20",
    ]
    assert h.traces("r")[-1]["outcome"] == "ok"


async def test_wait_for_a_trigger_continues_with_its_data(tmp_path: Path) -> None:
    h = Harness.from_yaml(
        tmp_path,
        """
        - id: r
          triggers: [{command: go}]
          actions:
            - wait: [{state: hall.door, to: "on"}, {mqtt: bell/press}]
              timeout: 10m
              continue_on_timeout: false
            - notify: "woke by {{ wait.trigger.platform }}"
            - wait_expr: "states('hall.lux') > 100"
            - notify: bright
        """,
    )
    h.given_states({"hall.door": "off", "hall.lux": 5})
    await h.start()
    await h.command("go")
    await h.advance(60)
    await h.mqtt("bell/press", "1")
    assert h.notifications == ["woke by mqtt"]
    await h.set("hall.lux", 50)
    await h.set("hall.lux", 150)
    assert h.notifications == ["woke by mqtt", "bright"]
    await h.command("go")
    await h.advance(601)
    assert h.traces("r")[-1]["outcome"] == "stopped"
    assert h.traces("r")[-1]["error"] == "the wait timed out"


async def test_stop_error_and_failures_are_recorded_and_other_rules_keep_running(
    tmp_path: Path,
) -> None:
    h = Harness.from_yaml(
        tmp_path,
        """
        - id: stops
          triggers: [{command: go}]
          actions:
            - stop: enough
            - notify: never
        - id: errors
          triggers: [{command: go}]
          actions:
            - stop: "broken {{ 1 + 1 }}"
              error: true
        - id: missing_entity
          triggers: [{command: go}]
          actions:
            - command: nowhere.light
              action: turn_on
        - id: bad_expression
          triggers: [{command: go}]
          actions:
            - notify: "{{ states('a.b') + 1 }}"
        - id: tolerant
          triggers: [{command: go}]
          actions:
            - command: nowhere.light
              action: turn_on
              continue_on_error: true
            - scene: movie
              continue_on_error: true
            - notify: still here
        """,
    )
    await h.start()
    await h.command("go")
    assert h.traces("stops")[-1]["outcome"] == "stopped"
    assert h.traces("errors")[-1]["error"] == "broken 2"
    missing = h.traces("missing_entity")[-1]
    assert missing["outcome"] == "error"
    assert "no entity, device, group or area is called 'nowhere.light'" in missing["error"]
    bad = h.traces("bad_expression")[-1]
    assert bad["outcome"] == "error"
    assert "states" in bad["error"]
    tolerant = h.traces("tolerant")[-1]
    assert tolerant["outcome"] == "ok"
    assert "no scene service" in tolerant["steps"][1]["error"]
    assert h.notifications == ["still here"]


async def test_command_that_times_out_fails_the_step_with_the_reason(tmp_path: Path) -> None:
    h = Harness.from_yaml(
        tmp_path,
        """
        - id: r
          triggers: [{command: go}]
          actions:
            - command: button1.button
              action: turn_on
        """,
    )
    h.given_states({"button1.button": "single"})
    await h.start()
    await h.command("go")
    trace = h.traces("r")[-1]
    assert trace["outcome"] == "error"
    assert "cannot turn_on" in trace["error"]


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        _Hook.received.append(orjson.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.received = []
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


async def test_webhook_call_posts_json_to_a_real_server(
    tmp_path: Path, webhook_server: str
) -> None:
    h = Harness.from_yaml(
        tmp_path,
        f"""
        - id: r
          triggers: [{{command: go}}]
          actions:
            - webhook_call: "{webhook_server}/hook"
              json: {{door: "{{{{ states('front.door') }}}}"}}
            - webhook_call: "http://127.0.0.1:9/nothing-listens"
              timeout: 2
        """,
    )
    h.given_states({"front.door": "on"})
    await h.start()
    await h.command("go")
    for _ in range(200):
        if h.traces("r"):
            break
        await asyncio.sleep(0.01)
    assert _Hook.received == [{"door": "on"}]
    trace = h.traces("r")[-1]
    assert trace["steps"][0]["result"]["status"] == 204
    assert trace["outcome"] == "error"
    assert "failed" in trace["error"]


# ----- modes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "expected", "outcomes"),
    [
        ("single", ["done 1"], {"ok": 1, "skipped": 2}),
        ("restart", ["done 3"], {"restarted": 2, "ok": 1}),
        ("queued", ["done 1", "done 2"], {"ok": 2, "dropped": 1}),
        ("parallel", ["done 1", "done 2"], {"ok": 2, "dropped": 1}),
    ],
)
async def test_modes(
    tmp_path: Path, mode: str, expected: list[str], outcomes: dict[str, int]
) -> None:
    h = Harness.from_yaml(
        tmp_path,
        f"""
        - id: r
          mode: {mode}
          max: {1 if mode == "queued" else 2}
          triggers: [{{mqtt: go}}]
          actions:
            - delay: 10s
            - notify: "done {{{{ trigger.payload }}}}"
        """,
    )
    await h.start()
    for n in ("1", "2", "3"):
        await h.mqtt("go", n)
    await h.advance(35)
    assert h.notifications == expected
    counted: dict[str, int] = {}
    for trace in h.traces("r"):
        counted[trace["outcome"]] = counted.get(trace["outcome"], 0) + 1
    assert counted == outcomes


async def test_enable_disable_at_run_time(tmp_path: Path) -> None:
    h = await harness(
        tmp_path,
        """
        - id: r
          triggers: [{mqtt: go}]
          actions: [{notify: "go {{ trigger.payload }}"}]
        """,
    )
    await h.mqtt("go", "1")
    h.engine.set_enabled("r", False)
    await h.mqtt("go", "2")
    h.engine.set_enabled("r", True)
    await h.mqtt("go", "3")
    assert h.notifications == ["go 1", "go 3"]


async def test_dispatch_is_compiled_an_event_reaches_only_rules_that_name_it(
    tmp_path: Path,
) -> None:
    rules = "\n".join(
        f"""
        - id: r{i}
          triggers: [{{state: sensor{i}.temperature}}]
          actions: [{{notify: "r{i}"}}]"""
        for i in range(200)
    )
    h = await harness(tmp_path, rules)
    assert len(h.engine.state_index) == 200
    assert [w.owner for w in h.engine.state_index["sensor7.temperature"]] == ["r7"]
    await h.set("sensor7.temperature", 20.5)
    assert h.notifications == ["r7"]


class _SilentDevices:
    """A dialect whose devices take commands and never report back."""

    def send_command(self, *args: Any) -> None:
        pass


async def test_command_nobody_confirms_times_out_and_the_reason_is_traced(tmp_path: Path) -> None:
    h = Harness.from_yaml(
        tmp_path,
        """
        - id: r
          triggers: [{command: go}]
          actions:
            - command: deaf.light
              action: turn_on
            - notify: never
        - id: other
          triggers: [{command: go}]
          actions: [{notify: other rules keep running}]
        """,
    )
    h.given_states({"deaf.light": "off"})
    h.hub.registry.devices["deaf"].owner = "silent"
    h.hub.commands.register_dialect("silent", _SilentDevices())
    h.hub.commands.timeout = 0.3  # the router's time-out runs on the real loop clock
    await h.start()
    await h.command("go")
    for _ in range(100):
        if h.traces("r"):
            break
        await asyncio.sleep(0.02)
    trace = h.traces("r")[-1]
    assert trace["outcome"] == "error"
    assert "deaf.light did not report the expected state within" in trace["error"]
    assert h.notifications == ["other rules keep running"]


async def test_the_same_button_press_twice_fires_twice(tmp_path: Path) -> None:
    # A remote sends "single" for every single press: each is a new event, while a switch that
    # repeats "on" is not a change.
    h = Harness.from_yaml(
        tmp_path,
        """
        - id: pressed
          triggers: [{state: button1.button, to: single}]
          actions:
            - notify: pressed
        - id: switched
          triggers: [{state: plug1.switch, to: "on"}]
          actions:
            - notify: switched on
        """,
    )
    await h.start()
    for _ in range(2):
        await h.set("button1.button", "single")
        await h.set("plug1.switch", "on")
        await h.advance(1)
        await h.idle()
    assert h.notifications.count("pressed") == 2
    assert h.notifications.count("switched on") == 1
