"""`hub demo`'s SMS: the Twilio stand-in, driven from the demo's console."""

from __future__ import annotations

import socket
from typing import Any

from frontends.sms.standin import TwilioStandin, demo_settings

# A phone number the example hub.yaml does not list: the console's "stranger".
_STRANGER = "+15559990000"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SmsDemo:
    """The Twilio stand-in as a :class:`hub.api.DemoStandIn`."""

    name = "sms"

    def __init__(self) -> None:
        self.standin = TwilioStandin()
        self._listen = ""
        self._shown = 0

    async def start(self) -> dict[str, Any]:
        """Start the stand-in; the front-end's settings (its webhook on a free port)."""
        await self.standin.start()
        self._listen = f"127.0.0.1:{_free_port()}"
        settings = demo_settings(self.standin, listen=self._listen)
        # The demo's stranger may reach the command layer, so the console shows its refusal.
        settings["allow"] = [_STRANGER]
        return settings

    async def stop(self) -> None:
        """Stop the stand-in."""
        await self.standin.stop()

    def describe(self) -> list[str]:
        """Banner lines."""
        return [
            f"Twilio stand-in on {self.standin.url}; the hub's SMS webhook listens on "
            f"{self._listen} and checks every text's signature",
        ]

    async def say(self, address: str | None, text: str) -> str | None:
        """Text the hub from ``address`` (None: an unknown number), signed like Twilio."""
        answer = await self.standin.text_hub(
            f"http://{self._listen}/sms/inbound", address or _STRANGER, text
        )
        if answer.status != 200:
            return f"(HTTP {answer.status})"
        return answer.message or "(no answer)"

    def outbox(self) -> list[str]:
        """Texts the hub sent through the Twilio API."""
        new = self.standin.sent[self._shown :]
        self._shown = len(self.standin.sent)
        return [f"to {m.to}: {m.body}" for m in new]
