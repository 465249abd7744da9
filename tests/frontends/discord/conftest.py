"""Fixtures for the Discord suites: the local Discord stand-in, a hub with the front-end.

The bot is the real discord.py client inside a real hub (real Mosquitto, real SQLite, the
simulated home); only Discord itself is the stand-in in ``frontends/discord/standin.py``,
which speaks Discord's REST API and gateway on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve()
REPO = _HERE.parents[3]
# The scripted conversation (tests/conversation/script.py) is shared by every front-end.
sys.path.insert(0, str(REPO / "tests" / "conversation"))

from hubtest import eventually, write_config  # noqa: E402

from frontends.discord.standin import FORUM, TEXT, DiscordStandIn, StandInGuild  # noqa: E402
from hub.config import load_config  # noqa: E402
from hub.core import Hub  # noqa: E402
from hub.simulator import Simulator, build_home  # noqa: E402

GUILD = 1100000000000000001
GENERAL = 1100000000000000100
ALERTS = 1100000000000000101
INCIDENTS = 1100000000000000102  # a forum channel
FAMILY_ROLE = 1100000000000000010
VISITOR_ROLE = 1100000000000000011
# The people of tests/conversation/script.py (their Discord ids are in its PEOPLE_YAML).
ALICE = 100000000000000001
BOB = 100000000000000002
STRANGER = 100000000000000009
COUSIN = 100000000000000005  # not in people:, holds the Family role (-> member)
VISITOR = 100000000000000006  # not in people:, holds the Visitors role (-> guest)
IDS = {"alice": ALICE, "bob": BOB, "stranger": STRANGER}
ENTITIES = (
    "kitchen_light.light",
    "front_door_lock.lock",
    "living_room_tv_plug.switch",
    "living_room_light.light",
)
PLUGIN = "frontend:discord"
# The simulated home's areas, as in the example hub.yaml ("status of the kitchen" names one).
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


def make_standin(shards: int = 1) -> DiscordStandIn:
    """Discord with the household's server, its channels, roles and people."""
    guild = StandInGuild(
        GUILD,
        "Home",
        roles={"Family": FAMILY_ROLE, "Visitors": VISITOR_ROLE},
        channels={
            "general": (GENERAL, TEXT),
            "alerts": (ALERTS, TEXT),
            "incidents": (INCIDENTS, FORUM),
        },
    )
    users = {ALICE: "alice", BOB: "bob", STRANGER: "mallory", COUSIN: "cousin", VISITOR: "visitor"}
    members = {COUSIN: [FAMILY_ROLE], VISITOR: [VISITOR_ROLE], STRANGER: []}
    return DiscordStandIn([guild], users, members=members, shards=shards)


def discord_yaml(standin: DiscordStandIn, **overrides: object) -> str:
    """The front-end's section of hub.yaml, pointed at the stand-in."""
    settings: dict[str, object] = {
        "token": standin.token,
        "guild_ids": [str(GUILD)],
        "channels": {"alerts": str(ALERTS), "incidents": str(INCIDENTS)},
        "roles": {"Family": "member", str(VISITOR_ROLE): "guest"},
        "api_base": standin.api_base,
        "gateway": standin.gateway_url,
        "connect_timeout": 15,
    }
    settings.update(overrides)
    import json

    # JSON is YAML: one line per setting keeps the section readable in a failing test's output.
    lines = [f"    {key}: {json.dumps(value)}" for key, value in settings.items()]
    return "frontends:\n  discord:\n" + "\n".join(lines) + "\n"


@pytest.fixture
async def standin() -> AsyncIterator[DiscordStandIn]:
    """The Discord stand-in, listening on 127.0.0.1."""
    server = make_standin()
    await server.start()
    yield server
    await server.stop()


@dataclass
class Home:
    """A hub with the Discord front-end, the simulated home and the stand-in."""

    hub: Hub
    standin: DiscordStandIn

    def value(self, entity_id: str) -> object:
        """An entity's current value."""
        state = self.hub.registry.states.get(entity_id)
        return state.value if state else None


async def start_hub(config: Path) -> Hub:
    """Start a hub from a config file."""
    loaded = load_config(config)
    hub = Hub(loaded.config, config_path=loaded.path, source=loaded.source)
    await hub.start()
    return hub


def plugin_status(hub: Hub) -> object:
    """The Discord front-end's status in the plug-in manager."""
    assert hub.plugins is not None
    return hub.plugins.status.get(PLUGIN)


@pytest.fixture
async def home(tmp_path: Path, mqtt_url: str, standin: DiscordStandIn) -> AsyncIterator[Home]:
    """A running hub with people, the Discord front-end connected and the simulated home."""
    from script import PEOPLE_YAML

    shutil.copytree(REPO / "scenes", tmp_path / "scenes")
    extra = AREAS + PEOPLE_YAML + "notifications:\n  dedupe_window: 0\n" + discord_yaml(standin)
    hub = await start_hub(write_config(tmp_path, mqtt_url, extra))
    sim = Simulator(mqtt_url, build_home(36, seed=1), rate=0, prefix=hub.config.hub.device_topic)
    try:
        await asyncio.to_thread(sim.start)
        await eventually(lambda: all(e in hub.registry.states for e in ENTITIES), 15)
        await eventually(
            lambda: getattr(plugin_status(hub), "healthy", False),
            20,
            f"the Discord front-end did not connect: {plugin_status(hub)}",
        )
        yield Home(hub, standin)
    finally:
        await asyncio.to_thread(sim.stop)
        if hub.started:
            await hub.stop()
