"""`hub demo`'s Discord: the local stand-in, driven from the demo's console."""

from __future__ import annotations

from typing import Any

from frontends.discord.standin import (
    DEMO_CHANNELS,
    DEMO_GUILD,
    DEMO_USERS,
    DiscordStandIn,
    demo_settings,
    demo_standin,
    message_text,
)

# A Discord user the example hub.yaml does not list: the console's "stranger".
_STRANGER = next(uid for uid, name in DEMO_USERS.items() if name == "mallory")


class DiscordDemo:
    """The Discord stand-in as a :class:`hub.api.DemoStandIn`."""

    name = "discord"

    def __init__(self) -> None:
        self.standin: DiscordStandIn = demo_standin()
        self._shown: set[int] = set()

    async def start(self) -> dict[str, Any]:
        """Start the stand-in; the front-end's settings for it."""
        await self.standin.start(0)
        return demo_settings(self.standin)

    async def stop(self) -> None:
        """Stop the stand-in."""
        await self.standin.stop()

    def describe(self) -> list[str]:
        """Banner lines."""
        return [
            f"Discord stand-in on 127.0.0.1:{self.standin.port} (the real discord.py bot is "
            "connected to it); alerts go to #alerts, incidents to the #incidents forum",
        ]

    async def say(self, address: str | None, text: str) -> str | None:
        """Run ``/hub text:...`` as the Discord user ``address`` (None: a stranger)."""
        user_id = int(address) if address and address.isdigit() else _STRANGER
        if user_id not in self.standin.users:
            user_id = _STRANGER  # the stand-in's server only has the demo household's members
        if self.standin.connected == 0:
            return "(the bot is not connected to the stand-in yet)"
        try:
            answer = await self.standin.slash(user_id, "hub", {"text": text}, guild_id=DEMO_GUILD)
        except TimeoutError:
            return "(no answer within 10 s)"
        buttons = "  ".join(f"[{b['label']}]" for b in answer.buttons)
        private = " (only you can see this)" if answer.ephemeral else ""
        return (answer.text or "(no text)") + private + (f"\n{buttons}" if buttons else "")

    def outbox(self) -> list[str]:
        """Messages the bot posted outside interaction answers (alerts, threads, DMs)."""
        general = DEMO_CHANNELS["general"][0]
        names = {cid: name for name, (cid, _) in DEMO_CHANNELS.items()}
        lines = []
        for message_id, message in list(self.standin.messages.items()):
            if message_id in self._shown:
                continue
            self._shown.add(message_id)
            channel_id = int(message["channel_id"])
            author = int(message["author"]["id"])
            if channel_id == general or str(author) != str(self._bot_id()):
                continue
            if message.get("interaction") or message.get("message_reference"):
                continue
            channel = self.standin.channels.get(channel_id, {})
            parent = channel.get("parent_id")
            where = names.get(channel_id) or (
                f"{names.get(int(parent), parent)} > {channel.get('name')}"
                if parent
                else f"DM {channel_id}"
            )
            lines.append(f"#{where}: {message_text(message)}")
        return lines

    def _bot_id(self) -> int:
        return next(uid for uid, user in self.standin.users.items() if user.get("bot"))
