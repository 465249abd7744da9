"""A rule engine on a sandbox hub and a simulated clock, driven like the real thing."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

from hub.core import Hub
from hub.events import CustomEvent
from hub.model import Context, Origin
from hub.rules.clock import SimulatedClock
from hub.rules.engine import RuleEngine
from hub.rules.loader import load_rules
from hub.rules.model import RuleSet
from hub.rules.sandbox import VIRTUAL, VirtualDevices, sandbox_hub, set_state
from hub.rules.schedule import Location

START = "2026-01-05T12:00:00"  # a Monday
AMSTERDAM = Location(52.37, 4.90, 0.0, "Europe/Amsterdam")


def write_rules(folder: Path, text: str, name: str = "rules.yaml") -> Path:
    """Write a rule file (dedented) and return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text))
    return folder


class Harness:
    """One engine over virtual devices; every effect and trace is kept for assertions."""

    def __init__(
        self,
        ruleset: RuleSet,
        *,
        start: str = START,
        tz: str = "UTC",
        store: Any = None,
        hub: Hub | None = None,
        location: Location | None = None,
    ) -> None:
        from datetime import datetime
        from zoneinfo import ZoneInfo

        self.hub = hub or sandbox_hub()
        self.hub.commands.register_dialect(VIRTUAL, VirtualDevices(self.hub))
        moment = datetime.fromisoformat(start).replace(tzinfo=ZoneInfo(tz))
        self.clock = SimulatedClock(moment.timestamp(), tz=tz)
        self.engine = RuleEngine(self.hub, self.clock, store=store, location=location)
        self.engine.keep_traces_in_memory = True
        self.engine.record_effects = True
        self.engine.load(ruleset)

    @classmethod
    def from_yaml(cls, tmp_path: Path, text: str, **kwargs: Any) -> Harness:
        """Load rules written as YAML."""
        return cls(load_rules([write_rules(tmp_path / "rules", text)]), **kwargs)

    async def start(self) -> Harness:
        await self.engine.start()
        await self.clock.run_until_idle()
        return self

    async def stop(self) -> None:
        await self.engine.stop()

    def given_states(self, states: dict[str, Any]) -> None:
        for entity_id, body in states.items():
            set_state(self.hub, entity_id, body, now=self.clock.time())

    async def set(self, entity_id: str, body: Any) -> None:
        """A device reports a new state."""
        device_id = entity_id.split(".", maxsplit=1)[0]
        set_state(
            self.hub, entity_id, body, Context(Origin.DEVICE, device_id), now=self.clock.time()
        )
        await self.clock.run_until_idle()

    async def advance(self, seconds: float) -> None:
        await self.clock.advance(seconds)

    async def idle(self) -> None:
        await self.clock.run_until_idle()
        for _ in range(5):
            await asyncio.sleep(0)

    async def mqtt(self, topic: str, payload: str) -> None:
        self.engine.handle_mqtt(topic, payload.encode(), self.clock.time())
        await self.idle()

    async def command(self, name: str) -> None:
        self.engine.fire_command(name, Context(Origin.PERSON, "alice", via="discord"))
        await self.idle()

    async def event(self, event_type: str, **data: Any) -> None:
        self.hub.bus.publish(CustomEvent(event_type, data))
        await self.idle()

    @property
    def commands(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (e["target"], e["action"], e["params"])
            for k, e in self.engine.effects
            if k == "command"
        ]

    @property
    def notifications(self) -> list[str]:
        return [e["message"] for k, e in self.engine.effects if k == "notification"]

    def traces(self, rule_id: str) -> list[dict[str, Any]]:
        return [t for t in self.engine.traces_finished if t["rule_id"] == rule_id]

    def value(self, entity_id: str) -> Any:
        state = self.hub.registry.states.get(entity_id)
        return None if state is None else state.value
