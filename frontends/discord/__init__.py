"""Discord front-end: slash commands, buttons, mentions and alerts for the hub.

Enable it in ``hub.yaml`` (see README.md in this folder for setting up the bot)::

    frontends:
      discord:
        token: !secret discord_token
        guild_ids: ["123456789012345678"]     # slash commands appear at once there
        channels: {alerts: "234567890123456789"}
        roles: {Family: member, "345678901234567890": guest}
"""

from frontends.discord.plugin import DiscordFrontend, DiscordUnavailable
from frontends.discord.settings import Settings

__all__ = ["DiscordFrontend", "DiscordUnavailable", "Settings"]
