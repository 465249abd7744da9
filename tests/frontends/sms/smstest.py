"""Helpers for the SMS front-end suites: a hub with the front-end against the Twilio stand-in."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubtest import eventually, write_config

from frontends.sms import SmsFrontend
from frontends.sms.standin import HubAnswer, TwilioStandin
from hub.conversation import Reply, Request
from hub.core import Hub

REPO = Path(__file__).resolve().parents[3]
#: The public base URL Twilio is told to call; the hub listens elsewhere (a reverse proxy).
PUBLIC_URL = "https://hub.example.com/home"
PHONES = {"alice": "+15550000001", "bob": "+15550000002", "stranger": "+15550000099"}
#: Someone on neither the people's list nor the allow-list.
OUTSIDER = "+15559990000"
UNREACHABLE = "+15550000777"  # the stand-in reports messages to it undelivered
AREAS = "".join(
    f"  - {{id: {area}, name: {area.replace('_', ' ').capitalize()}}}\n"
    for area in (
        "kitchen", "living_room", "bedroom", "bathroom", "hallway", "office", "garage", "garden",
    )
)  # fmt: skip


def sms_yaml(standin: TwilioStandin, **overrides: Any) -> str:
    """The ``frontends: sms:`` section for a hub that talks to ``standin``."""
    settings: dict[str, Any] = {
        "account_sid": standin.account_sid,
        "auth_token": standin.auth_token,
        "number": standin.numbers[0],
        "public_url": PUBLIC_URL,
        "listen": "127.0.0.1:0",
        "api_base": standin.url,
        "allow": [PHONES["stranger"]],
        "flood_messages": 8,
        "flood_window": "30s",
        "api_timeout": "5s",
    }
    settings.update(overrides)
    lines = "".join(f"    {key}: {json.dumps(value)}\n" for key, value in settings.items())
    return f"frontends:\n  sms:\n{lines}"


def hub_config(tmp_path: Path, mqtt_url: str, standin: TwilioStandin, **overrides: Any) -> Path:
    """A hub.yaml with the scripted household's people, the demo areas and scenes, and SMS."""
    from conversation.script import PEOPLE_YAML

    scenes = tmp_path / "scenes"
    if not scenes.exists():
        shutil.copytree(REPO / "scenes", scenes)
    extra = f"areas:\n{AREAS}{PEOPLE_YAML}{sms_yaml(standin, **overrides)}"
    return write_config(tmp_path, mqtt_url, extra)


@dataclass
class Recorder:
    """Wraps the command layer's ``handle`` to see what reached it (and still runs it)."""

    requests: list[Request] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)


@dataclass
class SmsSetup:
    """A running hub with the SMS front-end, the stand-in, and what reached the layer."""

    hub: Hub
    plugin: SmsFrontend
    standin: TwilioStandin
    layer: Recorder

    @property
    def inbound_url(self) -> str:
        """Where the hub really listens for texts (the reverse proxy's upstream)."""
        return f"http://127.0.0.1:{self.plugin.port}/sms/inbound"

    @property
    def status_url(self) -> str:
        """Where the hub really listens for status callbacks."""
        return f"http://127.0.0.1:{self.plugin.port}/sms/status"

    async def text(self, sender: str, body: str) -> HubAnswer:
        """Text the hub from ``sender`` (a person id or a number) through the stand-in."""
        number = PHONES.get(sender, sender)
        return await self.standin.text_hub(f"{PUBLIC_URL}/sms/inbound", number, body)

    def state(self, entity_id: str) -> object:
        """An entity's current value (None before its first report)."""
        state = self.hub.registry.states.get(entity_id)
        return None if state is None else state.value

    def health(self) -> dict[str, Any]:
        """The front-end's health as the hub reports it."""
        assert self.hub.plugins is not None
        return self.hub.plugins.health()["frontend:sms"]


async def running_plugin(hub: Hub, timeout: float = 10.0) -> SmsFrontend:
    """The SMS front-end once it runs (it registers itself as the ``sms`` channel)."""

    def find() -> SmsFrontend | None:
        channel = hub.notifier.channels.get("sms") if hub.notifier else None
        return channel if isinstance(channel, SmsFrontend) and channel.port else None

    plugin = await eventually(find, timeout, "the SMS front-end did not start")
    assert isinstance(plugin, SmsFrontend)
    return plugin


def record_layer(hub: Hub) -> Recorder:
    """Record every request that reaches the hub's command layer, and its reply."""
    layer = hub.conversation
    assert layer is not None, "the hub has no command layer"
    recorder = Recorder()
    handle = layer.handle

    async def recording(request: Request) -> Reply:
        recorder.requests.append(request)
        reply = await handle(request)
        recorder.replies.append(reply)
        return reply

    layer.handle = recording  # type: ignore[method-assign]
    return recorder
