"""`hub demo`'s e-mail: a local SMTP server that shows what the hub sends."""

from __future__ import annotations

from typing import Any

from frontends.email.standin import SmtpStandIn


class EmailDemo:
    """The SMTP stand-in as a :class:`hub.api.DemoStandIn` (it only receives)."""

    name = "email"

    def __init__(self) -> None:
        self.standin = SmtpStandIn()  # loopback, no login: the tests cover TLS and AUTH
        self._shown = 0

    async def start(self) -> dict[str, Any]:
        """Start the SMTP server; the front-end's settings for it."""
        await self.standin.start()
        return {
            "host": "127.0.0.1",
            "port": self.standin.port,
            "security": "none",  # loopback only; production uses starttls or tls
            "from_address": "hub@demo.invalid",
            "from_name": "Demo hub",
        }

    async def stop(self) -> None:
        """Stop the SMTP server."""
        await self.standin.stop()

    def describe(self) -> list[str]:
        """Banner lines."""
        return [f"SMTP stand-in on 127.0.0.1:{self.standin.port} (mails are printed here)"]

    async def say(self, address: str | None, text: str) -> str | None:
        """E-mail only carries alerts out: nothing to say through it."""
        return None

    def outbox(self) -> list[str]:
        """Mails the hub sent."""
        new = self.standin.received[self._shown :]
        self._shown = len(self.standin.received)
        return [
            f"to {', '.join(m.rcpt_tos)}: {m.message['Subject']}: "
            + m.part("plain").strip().replace("\n", " / ")
            for m in new
        ]
