"""`hub demo`'s front-ends: the example hub.yaml's people talk through the local stand-ins."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from hubtest import eventually, write_config

from hub.config import load_config
from hub.core import Hub
from hub.demofrontends import DemoFrontends
from hub.simulator import Simulator, build_home

REPO = Path(__file__).resolve().parents[2]


def example_sections(*names: str) -> str:
    """Sections of the repository's example hub.yaml, as YAML text."""
    example = yaml.safe_load((REPO / "hub.yaml").read_text())
    return yaml.safe_dump({name: example[name] for name in names}, sort_keys=False)


@pytest.fixture
async def demo(tmp_path: Path, mqtt_url: str) -> AsyncIterator[tuple[Hub, DemoFrontends]]:
    shutil.copytree(REPO / "scenes", tmp_path / "scenes")
    (tmp_path / "rules").mkdir()
    extra = example_sections("areas", "people", "notifications") + "frontends: {}\n"
    loaded = load_config(write_config(tmp_path, mqtt_url, extra))
    frontends = DemoFrontends()
    config = await frontends.start(loaded.config)
    assert set(config.frontends) == {"discord", "sms", "email"}
    hub = Hub(config, config_path=loaded.path, source=loaded.source)
    sim = Simulator(mqtt_url, build_home(36, seed=1), rate=0, prefix=config.hub.device_topic)
    try:
        await hub.start()
        await asyncio.to_thread(sim.start)
        assert hub.plugins is not None
        await eventually(
            lambda: (
                all(
                    s.get("state") == "running"
                    for s in hub.plugins.health().values()  # type: ignore[union-attr]
                )
                and len(hub.plugins.health()) == 3
            ),  # type: ignore[union-attr]
            20,
            "the front-ends did not all start against their stand-ins",
        )
        await eventually(lambda: "front_door_lock.lock" in hub.registry.states, 10)
        frontends.attach(hub)
        yield hub, frontends
    finally:
        await asyncio.to_thread(sim.stop)
        if hub.started:
            await hub.stop()
        await frontends.stop()


async def test_the_demo_people_talk_through_discord_and_sms(
    demo: tuple[Hub, DemoFrontends],
) -> None:
    hub, frontends = demo

    def state(entity_id: str) -> object:
        found = hub.registry.states.get(entity_id)
        return found.value if found else None

    answer = await frontends.say("discord alice: turn on the kitchen light")
    assert answer.startswith("discord ◂")
    assert "Kitchen light" in answer
    await eventually(lambda: state("kitchen_light.light") == "on", 5)
    # Bob is a guest who reads German (example hub.yaml): no locks for him.
    answer = await frontends.say("sms bob: unlock the front door")
    assert "nicht erlaubt" in answer
    assert state("front_door_lock.lock") == "locked"
    assert "don't know you" in await frontends.say("sms stranger: status")
    assert "takes no words" in await frontends.say("email alice: hello")
    assert "nobody called" in await frontends.say("discord zoe: status")
    assert "FRONTEND PERSON: WORDS" in await frontends.say("turn it all off")


async def test_alerts_come_out_of_each_persons_channels(
    demo: tuple[Hub, DemoFrontends],
) -> None:
    hub, frontends = demo
    assert hub.notifier is not None
    # Urgent: Alice's quiet hours in the example hub.yaml (23:00-07:00) would otherwise hold
    # her copy for the morning digest whenever the suite runs at night.
    hub.notifier.notify("The washing machine is done", "Laundry", ["everyone"], urgent=True)
    out: dict[str, list[str]] = {name: [] for name in frontends.standins}

    def collected() -> bool:
        for name, standin in frontends.standins.items():
            out[name].extend(standin.outbox())
        return all(out.values())

    await eventually(collected, 10, f"not every channel delivered: {out}")
    # Alice hears on Discord (a direct message) and by e-mail, Bob by SMS (example hub.yaml).
    assert any("washing machine" in line.lower() for line in out["discord"])
    assert any("alice@example.com" in line and "Laundry" in line for line in out["email"])
    assert any(line.startswith("to +15550000002") for line in out["sms"])
