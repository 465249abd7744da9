"""The scripted conversation by SMS: signed texts from the people's phones, a real home."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conversation.script import SCRIPT, run_script
from hubtest import HubFactory, eventually
from smstest import (
    PHONES,
    PUBLIC_URL,
    SmsSetup,
    hub_config,
    record_layer,
    running_plugin,
)

from frontends.sms.segments import segments
from frontends.sms.standin import TwilioStandin
from hub.conversation import ReplyStatus
from hub.simulator import Simulator, build_home

ENTITIES = (
    "kitchen_light.light",
    "living_room_light.light",
    "living_room_tv_plug.switch",
    "front_door_lock.lock",
    "bedroom_light.light",
)


@pytest.fixture
async def home(
    tmp_path: Path, mqtt_url: str, standin: TwilioStandin, hub_factory: HubFactory
) -> AsyncIterator[SmsSetup]:
    """The SMS setup with the simulated home's devices obeying commands."""
    hub = await hub_factory(hub_config(tmp_path, mqtt_url, standin))
    plugin = await running_plugin(hub)
    standin.routes[PUBLIC_URL] = f"http://127.0.0.1:{plugin.port}"
    sim = Simulator(mqtt_url, build_home(36, seed=1), rate=0, prefix=hub.config.hub.device_topic)
    await asyncio.to_thread(sim.start)
    try:
        await eventually(lambda: all(e in hub.registry.states for e in ENTITIES), 10)
        yield SmsSetup(hub, plugin, standin, record_layer(hub))
    finally:
        await asyncio.to_thread(sim.stop)


async def test_the_scripted_conversation_by_sms(home: SmsSetup) -> None:
    async def say(sender: str, text: str) -> str:
        answer = await home.text(sender, text)
        assert answer.status == 200, answer.text
        assert len(answer.messages) == 1, answer.text
        return answer.message

    replies = await run_script(say, home.hub)
    assert len(replies) == len(SCRIPT)
    # Every text reached the command layer as an SMS request from the sender's phone ...
    senders = [r.sender.address if r.sender else None for r in home.layer.requests]
    assert senders == [PHONES[step.sender] for step in SCRIPT]
    assert {r.frontend for r in home.layer.requests} == {"sms"}
    # ... and the guest's and the stranger's attempts were refused there, not here.
    statuses = [r.status for r in home.layer.replies]
    assert statuses[-2:] == [ReplyStatus.REFUSED, ReplyStatus.REFUSED]
    # The answers fit in two SMS segments.
    assert all(segments(reply) <= 2 for reply in replies)
    # The state the kitchen light is in was caused by Alice, by SMS.
    state = home.hub.registry.states["kitchen_light.light"]
    assert any("alice" in c.describe() and "sms" in c.describe() for c in state.context.chain())


async def test_a_question_is_answered_by_texting_the_number_of_a_choice(home: SmsSetup) -> None:
    asked = await home.text("alice", "turn on the light")
    lines = asked.message.splitlines()
    numbered = {line.partition(". ")[2]: line.partition(". ")[0] for line in lines if ". " in line}
    assert "Bedroom light" in numbered, asked.message
    assert home.layer.replies[-1].status is ReplyStatus.ASK
    # Someone else's number does not pick from Alice's question.
    other = await home.text("bob", numbered["Bedroom light"])
    assert home.layer.requests[-1].text == numbered["Bedroom light"]
    assert home.layer.replies[-1].status is not ReplyStatus.DONE, other.message
    assert home.state("bedroom_light.light") != "on"
    # Alice's own answer picks the choice: its command reaches the layer.
    chosen = await home.text("alice", f" {numbered['Bedroom light']} ")
    assert home.layer.replies[-1].status is ReplyStatus.DONE, chosen.message
    assert "Bedroom light" in chosen.message
    await eventually(lambda: home.state("bedroom_light.light") == "on", 8)
    # The question is answered: the same number now means nothing special.
    again = await home.text("alice", numbered["Bedroom light"])
    assert home.layer.requests[-1].text.strip() == numbered["Bedroom light"]
    assert (
        "Bedroom light" not in again.message
        or home.layer.replies[-1].status is not ReplyStatus.DONE
    )
