"""The Discord front-end plug-in: connects the bot, keeps it supervised, offers alerts."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
import yarl

from frontends.discord._discord import discord
from frontends.discord.alerts import DiscordAlerts
from frontends.discord.bot import DiscordBot
from frontends.discord.settings import Settings
from hub.api import DemoStandIn, Plugin, PluginContext


class DiscordUnavailable(Exception):
    """Discord refused the bot or could not be reached (the supervisor retries)."""


def point_at(api_base: str, gateway: str) -> None:
    """Send discord.py's REST calls and gateway connections to these addresses.

    discord.py keeps both as class attributes (process-wide); the defaults are Discord's own,
    and only a local stand-in changes them. Set on every start, so it is never left stale.
    """
    discord.http.Route.BASE = api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)


class DiscordFrontend(Plugin):
    """Slash commands, buttons, mentions and alerts on Discord (see README.md here)."""

    @classmethod
    def demo_standin(cls) -> DemoStandIn:
        """`hub demo` runs this front-end against a local stand-in of its service."""
        from frontends.discord.demo import DiscordDemo

        return DiscordDemo()

    settings_model = Settings

    def __init__(self, context: PluginContext, settings: Any) -> None:
        super().__init__(context, settings)
        self.bot: DiscordBot | None = None
        self.alerts: DiscordAlerts | None = None
        self._connection: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Log in, sync the slash commands, connect, and wait for Discord's READY."""
        settings: Settings = self.settings
        point_at(settings.api_base, settings.gateway)
        # The hub never joins voice channels: discord.py's "voice will NOT be supported"
        # warnings on every start would only worry people.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        bot = self.bot = DiscordBot(self.context, settings)
        client = bot.client
        try:
            await client.login(settings.token)
        except discord.LoginFailure as exc:
            raise DiscordUnavailable(
                "Discord refused the bot token (401 Unauthorized): set frontends.discord.token "
                "to the token on the Bot page of your application in the Developer Portal"
            ) from exc
        except discord.HTTPException as exc:
            raise DiscordUnavailable(
                f"Discord answered the login with {exc.status}: {exc.text}"
            ) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise DiscordUnavailable(
                f"cannot reach Discord's API at {settings.api_base}: {exc}"
            ) from exc
        try:
            await bot.sync_commands()
        except discord.HTTPException as exc:
            # The bot still answers mentions and sends alerts; only new slash commands wait.
            self.context.logger.error(
                "Discord refused the slash commands (%s: %s): invite the bot with the "
                "'applications.commands' scope and check frontends.discord.guild_ids",
                exc.status,
                exc.text,
            )
        self.alerts = DiscordAlerts(bot)
        self.context.register_channel("discord", self.alerts)
        # discord.py's own loop: reconnects with back-off and RESUMEs the session.
        self._connection = asyncio.create_task(client.connect(reconnect=True), name="discord")
        ready = asyncio.create_task(client.wait_until_ready())
        done, _ = await asyncio.wait(
            {self._connection, ready},
            timeout=settings.connect_timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if ready in done:
            return
        ready.cancel()
        if self._connection in done:
            error = self._connection.exception()
            raise DiscordUnavailable(f"Discord's gateway closed the connection: {error}")
        raise DiscordUnavailable(
            f"Discord's gateway did not say READY within {settings.connect_timeout:g} s "
            f"(gateway {settings.gateway})"
        )

    async def run(self) -> None:
        """Wait on the connection; it ends only if Discord closes it for good."""
        if self._connection is None:
            raise DiscordUnavailable("the Discord front-end was not started")
        try:
            await self._connection
        except discord.PrivilegedIntentsRequired as exc:
            raise DiscordUnavailable(f"Discord closed the gateway: {exc}") from exc
        except discord.ConnectionClosed as exc:
            raise DiscordUnavailable(
                f"Discord closed the gateway with code {exc.code}: {exc.reason or 'no reason'}"
            ) from exc
        raise DiscordUnavailable("the Discord connection ended")

    async def stop(self) -> None:
        """Close the connection and discord.py's HTTP session."""
        if self.bot is not None:
            await self.bot.client.close()
        if self._connection is not None:
            self._connection.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._connection
