"""A real hub with the scripted household: Mosquitto, SQLite, the simulated home, scenes."""

from __future__ import annotations

import asyncio
import shutil
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hubtest import eventually, write_config

from hub.config import load_config
from hub.conversation import Identity, IdentityKind, Reply, Request
from hub.core import Hub
from hub.simulator import Simulator, build_home

REPO = Path(__file__).resolve().parents[2]

AREAS = """\
areas:
  - {id: kitchen, name: Kitchen}
  - {id: living_room, name: Living room}
  - {id: bedroom, name: Bedroom}
  - {id: bathroom, name: Bathroom}
  - {id: hallway, name: Hallway}
  - {id: office, name: Office}
  - {id: garage, name: Garage}
  - {id: garden, name: Garden}
"""

# More people than the script's, for the permission matrix and translations.
MORE_PEOPLE = """\
  - id: carol
    name: Carol
    role: member
    phones: ["+15550000003"]
    language: de
  - id: dave
    name: Dave
    role: member
    phones: ["+15550000004"]
    areas: [garage]
  - id: erin
    name: Erin
    role: guest
    phones: ["+15550000005"]
"""

RULES = """\
- id: movie_command
  description: Movie night on request
  triggers:
    - command: movie_night
  actions:
    - scene: movie
- id: kitchen_off
  description: Kitchen light off at night
  triggers:
    - time: "23:30"
  actions:
    - command: kitchen_light.light
      action: turn_off
"""

ENTITIES = (
    "kitchen_light.light",
    "living_room_light.light",
    "living_room_tv_plug.switch",
    "living_room_blinds.cover",
    "front_door_lock.lock",
    "garage_light.light",
)


@dataclass
class Home:
    """The running hub, its config file and a way to talk to it as someone."""

    hub: Hub
    config: Path

    async def ask(
        self, who: str, text: str = "", *, frontend: str = "sms", **request: object
    ) -> Reply:
        """Send ``text`` as person ``who`` (by their phone), or as a stranger."""
        layer = self.hub.conversation
        assert layer is not None
        phone = "+15559999999"
        person = layer.people.get(who)
        if person is not None:
            phone = person.address_on(IdentityKind.PHONE) or phone
        sender = Identity(IdentityKind.PHONE, phone)
        return await layer.handle(Request(frontend, sender, text, **request))  # type: ignore[arg-type]

    def state(self, entity_id: str) -> object:
        state = self.hub.registry.states.get(entity_id)
        return state.value if state else None


@pytest.fixture
async def home(tmp_path: Path, mqtt_url: str) -> AsyncIterator[Home]:
    from conversation.script import PEOPLE_YAML

    shutil.copytree(REPO / "scenes", tmp_path / "scenes")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "test.yaml").write_text(RULES)
    extra = AREAS + PEOPLE_YAML + MORE_PEOPLE
    config = write_config(tmp_path, mqtt_url, textwrap.dedent(extra))
    loaded = load_config(config)
    hub = Hub(loaded.config, config_path=loaded.path, source=loaded.source)
    await hub.start(start_plugins=False)
    prefix = loaded.config.hub.device_topic
    sim = Simulator(mqtt_url, build_home(36, seed=1), rate=0, prefix=prefix)
    await asyncio.to_thread(sim.start)
    try:
        await eventually(lambda: all(e in hub.registry.states for e in ENTITIES), 10)
        yield Home(hub, config)
    finally:
        await asyncio.to_thread(sim.stop)
        if hub.started:
            await hub.stop()
