"""The Discord front-end in a running hub: real discord.py against the local Discord stand-in.

Every request here goes the whole way: the stand-in puts an INTERACTION_CREATE (or a
MESSAGE_CREATE) on the gateway websocket, discord.py parses it and dispatches it through its
CommandTree, the front-end hands it to the command layer, the device obeys over the real
broker, and discord.py's InteractionResponse posts the answer back over REST.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import (
    ALERTS,
    ALICE,
    BOB,
    COUSIN,
    GENERAL,
    GUILD,
    IDS,
    INCIDENTS,
    STRANGER,
    VISITOR,
    Home,
    discord_yaml,
    make_standin,
    plugin_status,
    start_hub,
)
from hubtest import eventually, write_config
from script import PEOPLE_YAML, run_script

from frontends.discord import bot as discord_bot
from frontends.discord.standin import DiscordStandIn, message_buttons, message_text
from hub.api import Command, Context, Origin
from hub.conversation import ReplyAction
from hub.notify import Delivery


async def hub_says(home: Home, sender: str, text: str) -> str:
    """``/hub text:...`` as one of the script's people; the answer's visible text."""
    answer = await home.standin.slash(IDS[sender], "hub", {"text": text}, guild_id=GUILD)
    return answer.text


async def test_the_scripted_conversation_through_slash_commands(home: Home) -> None:
    await run_script(lambda sender, text: hub_says(home, sender, text), home.hub)
    # The guest's and the stranger's refusals were shown to them alone.
    refusal = await home.standin.slash(
        BOB, "hub", {"text": "unlock the front door"}, guild_id=GUILD
    )
    assert "not allowed" in refusal.text.lower()
    assert refusal.ephemeral
    stranger = await home.standin.slash(
        STRANGER, "hub", {"text": "turn off the kitchen light"}, guild_id=GUILD
    )
    assert "don't know you" in stranger.text.lower()
    assert stranger.ephemeral
    assert home.value("kitchen_light.light") == "on"
    assert home.value("front_door_lock.lock") == "locked"


async def test_structured_slash_commands_act_as_the_person(home: Home) -> None:
    standin = home.standin
    off = await standin.slash(ALICE, "off", {"target": "kitchen_light.light"}, guild_id=GUILD)
    assert off.message is not None
    assert not off.ephemeral
    await eventually(lambda: home.value("kitchen_light.light") == "off", 8, off.text)
    on = await standin.slash(
        ALICE, "brightness", {"target": "kitchen_light.light", "percent": 50}, guild_id=GUILD
    )
    await eventually(lambda: home.value("kitchen_light.light") == "on", 8, on.text)
    state = home.hub.registry.states["kitchen_light.light"]
    assert abs(int(state.attributes["brightness"]) - 128) <= 2, state.attributes
    # The new state remembers who asked, through which front-end.
    chain = [(c.origin, c.source, c.via) for c in state.context.chain()]
    assert any(o is Origin.PERSON and s == "alice" for o, s, _ in chain), chain
    why = await standin.slash(ALICE, "why", {"target": "kitchen_light.light"}, guild_id=GUILD)
    assert "alice" in why.text.lower()
    status = await standin.slash(ALICE, "status", {"target": "kitchen_light.light"}, guild_id=GUILD)
    assert "on" in status.text.lower()
    house = await standin.slash(ALICE, "status", {}, guild_id=GUILD)
    assert house.text


async def test_discord_roles_make_transient_people(home: Home) -> None:
    standin = home.standin
    # A member of the Family role (not in people:) is a member: may use the lights.
    await standin.slash(COUSIN, "off", {"target": "kitchen_light.light"}, guild_id=GUILD)
    await eventually(lambda: home.value("kitchen_light.light") == "off", 8)
    # A Visitors member is a guest: may not unlock the door.
    answer = await standin.slash(VISITOR, "hub", {"text": "unlock the front door"}, guild_id=GUILD)
    assert "not allowed" in answer.text.lower()
    assert answer.ephemeral
    # Somebody with no mapped role is nobody.
    answer = await standin.slash(STRANGER, "on", {"target": "kitchen_light.light"}, guild_id=GUILD)
    assert "don't know you" in answer.text.lower()
    await asyncio.sleep(0.3)
    assert home.value("kitchen_light.light") == "off"
    assert home.value("front_door_lock.lock") == "locked"


async def test_autocomplete_offers_what_the_person_may_use(home: Home) -> None:
    standin = home.standin
    alice = await standin.autocomplete(ALICE, "on", {"target": "kitch"}, "target", guild_id=GUILD)
    values = [c["value"] for c in alice]
    assert any("kitchen_light" in v for v in values), alice
    assert all(len(c["name"]) <= 100 and len(c["value"]) <= 100 for c in alice)
    scenes = await standin.autocomplete(ALICE, "scene", {"name": "mov"}, "name", guild_id=GUILD)
    assert any("movie" in c["value"] for c in scenes), scenes
    # Bob is a guest limited to the living room: nothing of the kitchen, the living room yes.
    bob = await standin.autocomplete(BOB, "on", {"target": "kitch"}, "target", guild_id=GUILD)
    assert not any("kitchen" in c["value"] for c in bob), bob
    bob_living = await standin.autocomplete(
        BOB, "on", {"target": "living"}, "target", guild_id=GUILD
    )
    assert bob_living, "a guest limited to the living room sees its devices"
    assert all("kitchen" not in c["value"] for c in bob_living)
    # A stranger learns nothing.
    assert (
        await standin.autocomplete(STRANGER, "on", {"target": "kit"}, "target", guild_id=GUILD)
        == []
    )


async def test_a_scene_button_applies_the_scene_as_the_presser(home: Home) -> None:
    standin, hub = home.standin, home.hub
    assert hub.notifier is not None
    await hub.commands.execute(
        Command("living_room_tv_plug.switch", "turn_off", Context(Origin.CLI, "test"))
    )
    await eventually(lambda: home.value("living_room_tv_plug.switch") == "off", 8)
    # An alert with a scene button (a rule's notify with actions renders the same way).
    channel = hub.notifier.channels["discord"]
    result = await channel.deliver(
        Delivery(
            id="d-scene",
            channel="discord",
            address="alerts",
            title="Film starts soon",
            text="Dim the living room?",
            actions=(ReplyAction("Movie night", "scene movie", "primary"),),
        )
    )
    assert result.ok, result
    posted = standin.messages_in(ALERTS)[-1]
    buttons = message_buttons(posted)
    assert [b["label"] for b in buttons] == ["Movie night"]
    # The press is checked for whoever presses: a stranger may not.
    refused = await standin.press(STRANGER, posted, buttons[0]["custom_id"], guild_id=GUILD)
    assert "don't know you" in refused.text.lower()
    assert refused.ephemeral
    await asyncio.sleep(0.3)
    assert home.value("living_room_tv_plug.switch") == "off"
    pressed = await standin.press(ALICE, posted, buttons[0]["custom_id"], guild_id=GUILD)
    assert "movie" in pressed.text.lower(), pressed.text
    await eventually(lambda: home.value("living_room_tv_plug.switch") == "on", 8, pressed.text)


async def test_an_incident_gets_a_thread_and_its_next_alerts_land_in_it(home: Home) -> None:
    standin, hub = home.standin, home.hub
    notifier = hub.notifier
    assert notifier is not None
    notifier.notify("Freezer is warm (-8 °C)", "Freezer", ["discord:alerts"], key="freezer")
    await eventually(lambda: standin.threads_of(ALERTS), 8, "no thread was opened")
    (thread,) = standin.threads_of(ALERTS)
    assert thread["name"] == "Freezer"
    assert "Freezer is warm" in message_text(standin.messages_in(ALERTS)[-1])
    notifier.notify("Freezer still warm (-5 °C)", "Freezer", ["discord:alerts"], key="freezer")
    thread_id = int(thread["id"])
    await eventually(lambda: standin.messages_in(thread_id), 8, "the second alert is not in it")
    assert "still warm" in message_text(standin.messages_in(thread_id)[-1])
    assert len(standin.threads_of(ALERTS)) == 1
    # Another incident: another thread.
    notifier.notify("Garage door open", "Garage", ["discord:alerts"], key="garage")
    await eventually(lambda: len(standin.threads_of(ALERTS)) == 2, 8)
    # Resolved: said in the thread, and the thread is archived.
    notifier.notify(
        "Freezer back to -18 °C", "Freezer", ["discord:alerts"], key="freezer", resolved=True
    )
    await eventually(lambda: thread["thread_metadata"]["archived"], 8, "not archived")
    assert "back to -18" in message_text(standin.messages_in(thread_id)[-1])
    # The same key later is a new incident: a new thread.
    notifier.notify("Freezer warm again", "Freezer", ["discord:alerts"], key="freezer")
    await eventually(lambda: len(standin.threads_of(ALERTS)) == 3, 8)


async def test_alerts_in_a_forum_channel_are_posts(home: Home) -> None:
    standin, notifier = home.standin, home.hub.notifier
    assert notifier is not None
    notifier.notify("Water on the floor", "Leak", ["discord:incidents"], key="leak", urgent=True)
    await eventually(lambda: standin.threads_of(INCIDENTS), 8, "no forum post was made")
    (post,) = standin.threads_of(INCIDENTS)
    post_id = int(post["id"])
    assert "Water on the floor" in message_text(standin.messages_in(post_id)[0])
    notifier.notify("Valve closed", "Leak", ["discord:incidents"], key="leak")
    await eventually(lambda: len(standin.messages_in(post_id)) == 2, 8)
    assert len(standin.threads_of(INCIDENTS)) == 1


async def test_an_alert_to_a_person_is_a_direct_message(home: Home) -> None:
    standin, notifier = home.standin, home.hub.notifier
    assert notifier is not None
    notifier.notify("Front door unlocked for 10 minutes", "Front door", ["discord:" + str(ALICE)])
    await eventually(lambda: standin.dm_channel(ALICE) is not None, 8, "no DM was opened")
    channel = standin.dm_channel(ALICE)
    assert channel is not None
    await eventually(lambda: standin.messages_in(channel), 8)
    assert "unlocked for 10 minutes" in message_text(standin.messages_in(channel)[-1])


async def test_mentions_and_direct_messages_go_through_the_same_path(home: Home) -> None:
    standin = home.standin
    reply = await standin.say(
        ALICE, "<@1200000000000000002> turn off the kitchen light", channel_id=GENERAL
    )
    assert "kitchen light" in message_text(reply).lower()
    await eventually(lambda: home.value("kitchen_light.light") == "off", 8)
    reply = await standin.say(ALICE, "turn on the kitchen light")  # a DM
    await eventually(lambda: home.value("kitchen_light.light") == "on", 8, message_text(reply))
    reply = await standin.say(
        STRANGER, "<@1200000000000000002> turn off the kitchen light", channel_id=GENERAL
    )
    assert "don't know you" in message_text(reply).lower()
    # A message that does not mention the bot is not for it.
    before = len(standin.messages)
    await standin.dispatch(
        "MESSAGE_CREATE",
        {**reply, "id": "1399999999999999999", "author": standin.users[ALICE], "content": "hi all"},
        GUILD,
    )
    await asyncio.sleep(0.3)
    assert len(standin.messages) == before
    assert home.value("kitchen_light.light") == "on"


async def test_bad_input_gets_a_clear_answer_and_touches_nothing(home: Home) -> None:
    standin = home.standin
    before = {e: home.value(e) for e in ("kitchen_light.light", "front_door_lock.lock")}
    inputs = [
        "",
        "x" * 4000,
        "allume la lumière 💡 ✨ ñ 漢字",
        "@everyone <@&1100000000000000010> turn off everything",
        "'; DROP TABLE audit; --",
        "turn off ${jndi:ldap://x} `rm -rf /`",
        "\u202e\u0000 unlock the front door",
        "frobnicate the quux",
    ]
    for text in inputs:
        answer = await standin.slash(BOB, "hub", {"text": text}, guild_id=GUILD)
        assert answer.text.strip(), f"no answer to {text[:40]!r}"
        assert len(answer.text) < 6000
    for _method, path, body in standin.log:
        if path.endswith("/callback") and body.get("type") == 4:
            # Nothing the bot says may ping anyone, whatever was typed.
            assert body["data"]["allowed_mentions"] == {"parse": []}, body
    await asyncio.sleep(0.3)
    assert {e: home.value(e) for e in before} == before
    # An option outside Discord's own bounds (a client that skipped them) is answered too.
    odd = await standin.slash(
        ALICE, "brightness", {"target": "kitchen_light.light", "percent": 900}, guild_id=GUILD
    )
    assert "could not be read" in odd.text.lower() or "100" in odd.text


async def test_a_dropped_gateway_connection_resumes_and_misses_nothing(home: Home) -> None:
    standin, hub = home.standin, home.hub
    assert standin.identifies == 1
    await standin.drop_connections()
    # Discord keeps what happens meanwhile and replays it on RESUME.
    interaction = await standin.interact(
        2,
        {
            "id": "1",
            "name": "off",
            "type": 1,
            "options": [{"name": "target", "type": 3, "value": "kitchen_light.light"}],
            "guild_id": str(GUILD),
        },
        ALICE,
        guild_id=GUILD,
    )
    answer = await standin.answer(interaction, 20)
    assert answer.message is not None
    await eventually(lambda: home.value("kitchen_light.light") == "off", 8, answer.text)
    assert standin.resumes == 1
    assert standin.identifies == 1
    await eventually(lambda: getattr(plugin_status(hub), "healthy", False), 8)


async def test_a_bad_token_marks_the_plugin_unhealthy_and_the_hub_keeps_working(
    tmp_path: Path, mqtt_url: str, standin: DiscordStandIn
) -> None:
    extra = PEOPLE_YAML + discord_yaml(standin, token="not-the-token")
    hub = await start_hub(write_config(tmp_path, mqtt_url, extra))
    try:
        await eventually(
            lambda: "refused the bot token" in getattr(plugin_status(hub), "last_error", ""), 10
        )
        status = plugin_status(hub)
        assert not getattr(status, "healthy", True)
        assert standin.identifies == 0
        # The hub is fine: it still routes commands and answers its command layer.
        assert hub.started
        assert hub.conversation is not None
        # And it retries with back-off.
        await eventually(lambda: getattr(plugin_status(hub), "restarts", 0) >= 2, 10)
    finally:
        await hub.stop()


async def test_unreachable_discord_marks_the_plugin_unhealthy(
    tmp_path: Path, mqtt_url: str
) -> None:
    gone = make_standin()
    await gone.start()
    yaml = discord_yaml(gone)
    await gone.stop()  # nothing listens there any more
    hub = await start_hub(write_config(tmp_path, mqtt_url, PEOPLE_YAML + yaml))
    try:
        await eventually(
            lambda: "cannot reach Discord" in getattr(plugin_status(hub), "last_error", ""), 10
        )
        assert not getattr(plugin_status(hub), "healthy", True)
    finally:
        await hub.stop()


async def test_sharded_client_connects_every_shard(tmp_path: Path, mqtt_url: str) -> None:
    standin = make_standin(shards=2)
    await standin.start()
    hub = await start_hub(
        write_config(tmp_path, mqtt_url, PEOPLE_YAML + discord_yaml(standin, shard_count=0))
    )
    try:
        await eventually(lambda: getattr(plugin_status(hub), "healthy", False), 20)
        assert standin.identifies == 2  # Discord recommended 2 shards
        answer = await standin.slash(ALICE, "hub", {"text": "status"}, guild_id=GUILD)
        assert answer.message is not None
    finally:
        await hub.stop()
        await standin.stop()


async def test_a_slow_command_is_deferred_then_answered(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every command counts as slow: the bot says "thinking..." first, then edits the answer in.
    monkeypatch.setattr(discord_bot, "DEFER_AFTER", 0.0)
    standin = home.standin
    answer = await standin.slash(ALICE, "off", {"target": "kitchen_light.light"}, guild_id=GUILD)
    assert answer.deferred
    assert answer.kinds == ["callback:5", "edit"]
    assert "kitchen light" in answer.text.lower()
    await eventually(lambda: home.value("kitchen_light.light") == "off", 8)
    # A refusal after a public "thinking..." goes to the asker alone; the placeholder goes.
    refused = await standin.slash(BOB, "hub", {"text": "unlock the front door"}, guild_id=GUILD)
    assert refused.kinds[:2] == ["callback:5", "followup"]
    await eventually(lambda: "delete" in refused.kinds, 5, "the placeholder stayed")
    assert refused.ephemeral
    assert "not allowed" in refused.text.lower()
