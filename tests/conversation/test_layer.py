"""The command layer on a real hub: the scripted conversation, permissions, names, input."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, Home
from hubtest import eventually

from hub.conversation import Reply, ReplyStatus, Request
from hub.conversation.layer import IntentCall
from hub.events import CommandIssued


async def test_the_scripted_conversation(home: Home) -> None:
    from conversation.script import run_script

    async def say(who: str, text: str) -> str:
        return (await home.ask(who, text)).plain()

    replies = await run_script(say, home.hub)
    assert "not allowed" in replies[4].lower()
    # The light's state names the person and the front-end, as `hub why` shows it.
    context = home.hub.registry.states["kitchen_light.light"].context
    assert "person alice via sms" in [c.describe() for c in context.chain()]


async def test_roles_and_limits(home: Home) -> None:
    expectations = [
        # (who, text, status, entity, state afterwards)
        ("alice", "unlock the front door", ReplyStatus.DONE, "front_door_lock.lock", "unlocked"),
        ("erin", "lock the front door", ReplyStatus.REFUSED, "front_door_lock.lock", "unlocked"),
        ("carol", "lock the front door", ReplyStatus.DONE, "front_door_lock.lock", "locked"),
        ("bob", "unlock the front door", ReplyStatus.REFUSED, "front_door_lock.lock", "locked"),
        ("dave", "turn on the kitchen light", ReplyStatus.REFUSED, "kitchen_light.light", None),
        ("dave", "turn on the garage light", ReplyStatus.DONE, "garage_light.light", "on"),
        ("bob", "turn on the kitchen light", ReplyStatus.REFUSED, "kitchen_light.light", None),
        (
            "bob",
            "turn off the living room light",
            ReplyStatus.DONE,
            "living_room_light.light",
            "off",
        ),
        ("bob", "scene evening", ReplyStatus.REFUSED, "living_room_light.light", "off"),
        ("bob", "scene movie", ReplyStatus.DONE, "living_room_tv_plug.switch", "on"),
        ("bob", "set the living room thermostat to 23", ReplyStatus.REFUSED, None, None),
        ("erin", "turn off the kitchen light", ReplyStatus.DONE, "kitchen_light.light", "off"),
        ("erin", "run movie night", ReplyStatus.REFUSED, None, None),
        ("carol", "disable rule kitchen_off", ReplyStatus.REFUSED, None, None),
        ("alice", "disable rule kitchen_off", ReplyStatus.DONE, None, None),
        (
            "stranger",
            "turn on the kitchen light",
            ReplyStatus.REFUSED,
            "kitchen_light.light",
            "off",
        ),
    ]
    for who, text, status, entity_id, value in expectations:
        before = home.state(entity_id) if entity_id else None
        reply = await home.ask(who, text)
        assert reply.status is status, (who, text, reply)
        if entity_id is None:
            continue
        if status is ReplyStatus.REFUSED:
            await asyncio.sleep(0.2)
            assert home.state(entity_id) == (value or before), (who, text)
        else:
            await eventually(lambda e=entity_id, v=value: home.state(e) == v, 8, f"{who}: {text}")
    rules = home.hub.rules
    assert rules is not None
    assert rules.engine is not None
    assert rules.engine.rules["kitchen_off"].enabled is False
    refused = await home.ask("bob", "unlock the front door")
    assert "not allowed" in refused.text
    stranger = await home.ask("stranger", "status")
    assert "don't know you" in stranger.text


async def test_a_near_tie_asks_back_and_each_choice_works(home: Home) -> None:
    reply = await home.ask("alice", "turn on the light")
    assert reply.status is ReplyStatus.ASK, reply
    labels = {choice.label: choice.command for choice in reply.choices}
    assert "Kitchen light" in labels, labels
    assert "Bedroom light" in labels, labels
    chosen = await home.ask("alice", labels["Bedroom light"])
    assert chosen.status is ReplyStatus.DONE, chosen
    assert "Bedroom light" in chosen.text
    await eventually(lambda: home.state("bedroom_light.light") == "on", 8)
    # The same from German replies: the choices re-send a sentence the parser understands.
    german = await home.ask("carol", "schalte licht an")
    assert german.status is ReplyStatus.ASK
    assert (await home.ask("carol", german.choices[0].command)).status is ReplyStatus.DONE


async def test_fuzzy_names_areas_and_kinds(home: Home) -> None:
    cases = [
        ("turn off the kitchen lights", "kitchen_light.light", "off"),
        ("switch on kichen light", "kitchen_light.light", "on"),  # a typo
        ("turn off the kitchen", "kitchen_light.light", "off"),  # an area: its lights
        ("turn on kitchen_light.light", "kitchen_light.light", "on"),  # the id
        ("turn on the TV plug", "living_room_tv_plug.switch", "on"),
        ("close the living room blinds", "living_room_blinds.cover", "closed"),
        ("set the living room light to 40%", "living_room_light.light", "on"),
    ]
    for text, entity_id, value in cases:
        reply = await home.ask("alice", text)
        assert reply.status is ReplyStatus.DONE, (text, reply)
        await eventually(lambda e=entity_id, v=value: home.state(e) == v, 8, text)
    brightness = home.hub.registry.states["living_room_light.light"].attributes["brightness"]
    assert abs(brightness - 102) <= 1  # 40 % of 255
    # The kitchen's fridge plug is not a light: "turn off the kitchen" left it on.
    assert home.state("kitchen_fridge_plug.switch") == "on"
    nothing = await home.ask("alice", "turn on the spaceship")
    assert nothing.status is ReplyStatus.NOT_UNDERSTOOD
    assert "spaceship" in nothing.text
    close = await home.ask("alice", "turn on the kitchen lamp plug")
    assert close.status in (ReplyStatus.DONE, ReplyStatus.ASK, ReplyStatus.NOT_UNDERSTOOD)


async def test_status_why_lists_and_buttons(home: Home) -> None:
    await home.ask("alice", "turn on the kitchen light")
    await eventually(lambda: home.state("kitchen_light.light") == "on", 8)
    area = await home.ask("alice", "status of the kitchen")
    assert area.status is ReplyStatus.ANSWER
    assert ("Kitchen light", "on") in [(f.name, f.value.split(" ")[0]) for f in area.fields]
    assert "turn off kitchen_light.light" in [a.command for a in area.actions]
    house = await home.ask("alice", "status")
    assert house.status is ReplyStatus.ANSWER
    assert "lights on" in house.text
    why = await home.ask("alice", "why is the kitchen light on")
    assert "person alice via sms" in why.text
    scenes = await home.ask("bob", "list scenes")
    assert scenes.status is ReplyStatus.ANSWER
    # Bob (a guest in the living room) gets a button for the movie scene only.
    assert [a.command for a in scenes.actions] == ["scene movie"]
    devices = await home.ask("alice", "list devices")
    assert "36 devices" in devices.text
    energy = await home.ask("alice", "energy today")
    assert energy.status is ReplyStatus.ANSWER
    assert "kWh" in energy.text
    speed = await home.ask("alice", "run a speed test")
    assert speed.status is ReplyStatus.FAILED
    assert "not set up" in speed.text
    helped = await home.ask("alice", "help")
    assert helped.status is ReplyStatus.ANSWER
    assert helped.fields


async def test_german_replies_and_sentences(home: Home) -> None:
    reply = await home.ask("carol", "Schalte das Küchenlicht an")
    assert reply.status is ReplyStatus.DONE, reply
    assert reply.language == "de"
    assert "Eingeschaltet" in reply.text
    await eventually(lambda: home.state("kitchen_light.light") == "on", 8)
    status = await home.ask("carol", "Status der Küche")
    assert status.status is ReplyStatus.ANSWER, status
    assert "an" in [f.value.split(" ")[0] for f in status.fields]
    refused = await home.ask("carol", "deaktiviere die Regel kitchen_off")
    assert refused.status is ReplyStatus.REFUSED
    assert "nicht erlaubt" in refused.text
    # English words still work for a German speaker; the reply stays German.
    english = await home.ask("carol", "turn off the kitchen light")
    assert english.status is ReplyStatus.DONE
    assert "Ausgeschaltet" in english.text
    # A request may ask for another language than the person's.
    asked = await home.ask("alice", "hilfe", language="de")
    assert asked.language == "de"
    assert asked.title == "Hilfe"
    confused = await home.ask("carol", "blubber")
    assert confused.status is ReplyStatus.NOT_UNDERSTOOD
    assert "nicht verstanden" in confused.text


HOSTILE = [
    "",
    "   ",
    "x" * 5000,
    "turn on the kitchen light\x00",
    "turn on the \u202ekitchen light",
    "turn on the kitchen\u200b light",
    "turn on ; rm -rf /",
    "turn on kitchen_light.light; DROP TABLE audit; --",
    "turn on {{ 7*7 }}",
    "turn on ${jndi:ldap://x}",
    "turn on #",
    "turn on +/+/set",
    "scene ../../etc/passwd",
    "turn on @everyone",
    "status of <script>alert(1)</script>",
    "💡💡💡",
    "unlock the front door" * 30,
    "set the kitchen light to 1000%",
    "set the living room thermostat to 99",
]


async def test_hostile_input_gets_a_clear_answer_and_commands_nothing(home: Home) -> None:
    issued: list[CommandIssued] = []
    undo = home.hub.bus.subscribe(CommandIssued, issued.append, owner="test")
    try:
        for text in HOSTILE:
            reply = await home.ask("alice", text)
            assert reply.status in (ReplyStatus.INVALID, ReplyStatus.NOT_UNDERSTOOD), (text, reply)
            assert reply.text
            for bad in ("<script>", "{{", "${", "@everyone", "\u202e", "\x00", "/set"):
                assert bad not in reply.plain(), (text, reply.plain())
        layer = home.hub.conversation
        assert layer is not None
        alice = layer.people.get("alice")
        kitchen = "kitchen light"
        bad_structured = [
            ("format_disk", {}),
            ("set_brightness", {"target": kitchen, "brightness": "lots"}),
            ("set_brightness", {"target": kitchen, "brightness": float("nan")}),
            ("set_brightness", {"target": kitchen, "brightness": True}),
            ("turn_on", {"target": [kitchen]}),
            ("turn_on", {"evil": "x"}),
            ("turn_on", {"target": "x" * 300}),
            ("turn_on", {"target": "kitchen\x00light"}),
        ]
        for intent, slots in bad_structured:
            request = Request("api", None, intent=intent, slots=slots, person=alice)
            reply = await layer.handle(request)
            assert reply.status is ReplyStatus.INVALID, (request, reply)
        await asyncio.sleep(0.3)
        assert issued == []
    finally:
        undo()


async def test_structured_requests_skip_parsing(home: Home) -> None:
    layer = home.hub.conversation
    assert layer is not None
    alice = layer.people.get("alice")
    reply = await layer.handle(
        Request(
            "discord",
            None,
            intent="set_brightness",
            slots={"target": "kitchen_light.light", "brightness": 20},
            person=alice,
        )
    )
    assert reply.status is ReplyStatus.DONE, reply
    state = home.hub.registry.states["kitchen_light.light"]
    assert state.value == "on"
    assert abs(state.attributes["brightness"] - 51) <= 1
    out_of_range = await layer.handle(
        Request(
            "discord",
            None,
            intent="set_brightness",
            slots={"target": "kitchen light", "brightness": 150},
            person=alice,
        )
    )
    assert out_of_range.status is ReplyStatus.INVALID
    listed = await layer.handle(
        Request("discord", None, intent="list", slots={"what": "areas"}, person=alice)
    )
    assert listed.status is ReplyStatus.ANSWER
    assert "8 areas" in listed.text


async def test_every_request_is_audited_with_who_and_how_it_ended(home: Home) -> None:
    await home.ask("bob", "unlock the front door")
    await home.ask("stranger", "turn off the kitchen light")
    await home.ask("alice", "x" * 900)
    await home.ask("alice", "turn on the kitchen light", frontend="discord", channel="#home")
    storage = home.hub.storage
    assert storage is not None
    await storage.flush()
    rows = [r for r in await storage.audit(limit=200) if r.kind == "conversation"]
    by_text = {r.params["text"][:30]: r for r in rows}
    bob = by_text["unlock the front door"]
    assert (bob.params["person"], bob.result, bob.action) == ("bob", "refused", "unlock")
    assert bob.params["identity"] == "phone:+15550000002"
    assert bob.context is not None
    assert bob.context.describe() == "person bob via sms"
    stranger = by_text["turn off the kitchen light"]
    assert stranger.params["person"] is None
    assert stranger.result == "refused"
    assert stranger.params["identity"] == "phone:+15559999999"
    long_one = by_text["x" * 30]
    assert long_one.result == "invalid"
    assert len(long_one.params["text"]) == 200
    alice = by_text["turn on the kitchen light"]
    assert alice.result == "done"
    assert alice.target == "kitchen_light.light"
    assert alice.params["frontend"] == "discord"
    assert alice.params["channel"] == "#home"


async def test_autocomplete_offers_only_what_the_person_may_use(home: Home) -> None:
    layer = home.hub.conversation
    assert layer is not None
    alice, bob = layer.people.get("alice"), layer.people.get("bob")
    found = layer.complete("target", "kitch", alice)
    assert found, found
    assert found[0].label.startswith("Kitchen"), found
    assert "kitchen_light.light" in [c.value for c in found]
    assert not [c for c in layer.complete("target", "kitch", bob) if "kitchen" in c.value]
    assert "living_room_light.light" in [c.value for c in layer.complete("target", "liv", bob)]
    assert [c.value for c in layer.complete("scene", "", bob)] == ["movie"]
    assert "movie" in [c.value for c in layer.complete("scene", "mov", alice)]
    assert [c.value for c in layer.complete("command", "", alice)] == ["movie_night"]
    assert layer.complete("command", "", bob) == []
    assert layer.complete("rule", "", bob) == []
    assert "kitchen_off" in [c.value for c in layer.complete("rule", "kit", alice)]
    assert layer.complete("target", "kitchen", None) == []


async def test_a_plugin_may_answer_an_intent(home: Home) -> None:
    layer = home.hub.conversation
    assert layer is not None
    calls: list[IntentCall] = []

    async def speedtest(call: IntentCall) -> Reply:
        calls.append(call)
        return Reply(ReplyStatus.ANSWER, "93.1 Mbit/s down", language=call.language)

    undo = layer.register_intent("speedtest", speedtest)
    try:
        reply = await home.ask("carol", "speedtest")
        assert reply.text == "93.1 Mbit/s down"
        assert calls[0].person.id == "carol"
        assert calls[0].context.describe() == "person carol via sms"
        assert (await home.ask("erin", "speedtest")).status is ReplyStatus.REFUSED
        with pytest.raises(ValueError, match="already"):
            layer.register_intent("speedtest", speedtest)
    finally:
        undo()
    assert (await home.ask("carol", "speedtest")).status is ReplyStatus.FAILED


def _hub_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


async def test_hub_ask_talks_to_the_running_hub(home: Home) -> None:
    config = str(home.config)
    done = await asyncio.to_thread(
        _hub_cli, "ask", "turn on the kitchen light", "--as", "alice", "--config", config
    )
    assert done.returncode == 0, done.stderr
    assert "Kitchen light" in done.stdout
    await eventually(lambda: home.state("kitchen_light.light") == "on", 8)
    context = home.hub.registry.states["kitchen_light.light"].context
    assert "person alice via cli" in [c.describe() for c in context.chain()]
    refused = await asyncio.to_thread(
        _hub_cli, "ask", "unlock the front door", "--as", "bob", "--json", "--config", config
    )
    assert refused.returncode == 1
    body = json.loads(refused.stdout)
    assert body["status"] == "refused"
    assert "not allowed" in body["text"]
    german = await asyncio.to_thread(
        _hub_cli, "ask", "Status der Küche", "--as", "carol", "--config", config
    )
    assert german.returncode == 0
    assert "Küche" not in german.stderr
    unknown = await asyncio.to_thread(
        _hub_cli, "ask", "status", "--as", "mallory", "--config", config
    )
    assert unknown.returncode == 2
    assert "mallory" in unknown.stderr


async def test_malformed_mqtt_requests_are_rejected(home: Home, mqtt_url: str) -> None:
    from mqttprobe import MqttProbe

    base = home.hub.base_topic
    before = home.hub.stats.rejected
    with MqttProbe(mqtt_url) as probe:
        for payload in (b"not json", b"[]", b'{"id": "../x", "text": "status"}', b"{" * 20000):
            probe.publish(f"{base}/conversation/request", payload, qos=1)
        await eventually(lambda: home.hub.stats.rejected >= before + 4, 5)
