"""`hub demo`'s front-ends: each runs against a local stand-in of its outside service.

The stand-ins come from the front-ends themselves (``Plugin.demo_standin``), found through
their entry points like any plug-in, so the core still imports no front-end. The console lets
the person at the keyboard talk to the hub through them (``sms alice: status``) and prints
what the hub sends out through them (alerts, texts, mails).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import TYPE_CHECKING, Any

from hub.conversation.people import IdentityKind

if TYPE_CHECKING:
    from hub.api import DemoStandIn
    from hub.config import HubConfig
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

#: The front-ends the demo runs, and which of a person's addresses each one speaks as.
DEMO_FRONTENDS: dict[str, IdentityKind | None] = {
    "discord": IdentityKind.DISCORD,
    "sms": IdentityKind.PHONE,
    "email": None,  # e-mail only carries alerts out
}


class DemoFrontends:
    """Starts the stand-ins, points the front-ends at them, runs the console."""

    def __init__(self, names: tuple[str, ...] = tuple(DEMO_FRONTENDS)) -> None:
        self.names = names
        self.standins: dict[str, DemoStandIn] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._hub: Hub | None = None

    async def start(self, config: HubConfig) -> HubConfig:
        """Start a stand-in per front-end; return ``config`` with the front-ends on them."""
        from hub.config import PluginSection
        from hub.plugins import PluginLoadError, load_plugin_class

        frontends = dict(config.frontends)
        for name in self.names:
            try:
                standin = load_plugin_class("frontend", name).demo_standin()
                if standin is None:
                    continue
                settings = await standin.start()
            except (PluginLoadError, OSError) as exc:
                _LOGGER.warning("demo: no %s stand-in: %s", name, exc)
                continue
            self.standins[name] = standin
            frontends[name] = PluginSection.model_validate({"enabled": True, **settings})
        return config.model_copy(update={"frontends": frontends})

    def banner(self) -> list[str]:
        """Lines for the demo's banner."""
        if not self.standins:
            return []
        lines = ["front-ends (against local stand-ins; nothing leaves this machine)"]
        for standin in self.standins.values():
            lines.extend(f"  {standin.name:<8} {line}" for line in standin.describe())
        talkers = [n for n in self.standins if DEMO_FRONTENDS.get(n) is not None]
        if talkers and sys.stdin.isatty():
            lines += [
                "  talk to the hub here: FRONTEND PERSON: WORDS, e.g.",
                f"    {talkers[0]} alice: turn on the kitchen light",
                f"    {talkers[-1]} bob: unlock the front door",
                f"    {talkers[-1]} stranger: status",
            ]
        return lines

    def attach(self, hub: Hub) -> None:
        """Start printing what goes out, and reading the console when it is a terminal."""
        self._hub = hub
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._print_outbox()))
        if sys.stdin.isatty() and any(DEMO_FRONTENDS.get(n) for n in self.standins):
            # add_reader, not a thread blocked in input(): Ctrl-C must not wait for Enter.
            loop.add_reader(sys.stdin.fileno(), self._on_console_line)

    async def stop(self) -> None:
        """Stop the console and the stand-ins."""
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(sys.stdin.fileno())
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for standin in self.standins.values():
            with contextlib.suppress(Exception):
                await standin.stop()

    async def _print_outbox(self) -> None:
        while True:
            await asyncio.sleep(0.3)
            for name, standin in self.standins.items():
                for line in standin.outbox():
                    print(f"{name} ▸ {line}", flush=True)

    def _on_console_line(self) -> None:
        line = sys.stdin.readline()
        if not line:  # end of input: stop listening, keep the demo running
            asyncio.get_running_loop().remove_reader(sys.stdin.fileno())
            return
        if line.strip():
            self._tasks.append(asyncio.get_running_loop().create_task(self.say(line.strip())))

    async def say(self, line: str) -> str:
        """Handle one console line ``[FRONTEND] PERSON: WORDS``; print and return the answer."""
        answer = await self._answer(line)
        print(answer, flush=True)
        return answer

    async def _answer(self, line: str) -> str:
        head, colon, words = line.partition(":")
        parts = head.split()
        talkers = [n for n in self.standins if DEMO_FRONTENDS.get(n) is not None]
        if not colon or not words.strip() or not parts or len(parts) > 2 or not talkers:
            return f"write FRONTEND PERSON: WORDS (front-ends: {', '.join(talkers) or 'none'})"
        frontend, person_id = (parts[0], parts[1]) if len(parts) == 2 else (talkers[0], parts[0])
        standin = self.standins.get(frontend)
        kind = DEMO_FRONTENDS.get(frontend)
        if standin is None:
            return f"no front-end {frontend!r} to talk through; use one of {', '.join(talkers)}"
        if kind is None:
            return f"{frontend} takes no words: it only carries alerts out"
        address: str | None = None
        if person_id != "stranger":
            layer = self._hub.conversation if self._hub is not None else None
            person = layer.people.get(person_id) if layer is not None else None
            if person is None:
                return f"nobody called {person_id!r} in people: (or say 'stranger')"
            address = person.address_on(kind)
            if address is None:
                return f"{person_id} has no {kind.value} address in people:"
        reply = await standin.say(address, words.strip())
        return f"{frontend} ◂ {reply}" if reply is not None else f"{frontend} takes no words"
