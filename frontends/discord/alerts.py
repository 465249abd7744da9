"""Alerts on Discord: a channel message or a direct message, one thread per incident.

Addresses (what follows ``discord:`` in a rule's targets, or a person's Discord id):

- a channel name from the settings' ``channels`` (``alerts``) or a channel id: the alert is
  posted there. With an incident ``key`` it opens a thread (in a forum channel: a post), and
  later alerts with the same key go into that thread; ``resolved`` posts and archives it.
- a person (the router sets ``Delivery.person``) or a user id that is no channel: a direct
  message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import aiohttp

from frontends.discord._discord import discord
from frontends.discord.render import delivery_embed, reply_view, thread_name
from hub.api import Delivery, DeliveryResult

if TYPE_CHECKING:
    from frontends.discord.bot import DiscordBot

_LOGGER = logging.getLogger(__name__)
# Incident threads remembered (oldest forgotten first): enough for any household's incidents.
THREADS_MAX = 5000

Channel = discord.TextChannel | discord.ForumChannel | discord.Thread | discord.DMChannel


class DeliveryError(Exception):
    """A delivery that cannot be made, with the reason a person can act on."""


class DiscordAlerts:
    """The "discord" notification channel."""

    def __init__(self, bot: DiscordBot) -> None:
        self.bot = bot
        # (channel id, incident key) -> the incident's thread id.
        self.threads: dict[tuple[int, str], int] = {}
        # One delivery at a time may open a thread, so two alerts of one new incident arriving
        # together do not open two threads.
        self._lock = asyncio.Lock()

    async def deliver(self, delivery: Delivery) -> DeliveryResult:
        """Post one alert; a failure is returned (with why), never raised."""
        if not self.bot.client.is_ready():
            return DeliveryResult(False, "Discord is not connected")
        try:
            async with self._lock:
                return await self._deliver(delivery)
        except DeliveryError as exc:
            return DeliveryResult(False, str(exc))
        except discord.HTTPException as exc:
            return DeliveryResult(False, f"Discord refused the alert ({exc.status}): {exc.text}")
        except (discord.ClientException, aiohttp.ClientError, OSError) as exc:
            return DeliveryResult(False, f"could not reach Discord: {exc}")

    async def _deliver(self, delivery: Delivery) -> DeliveryResult:
        target = await self._target(delivery)
        embed = delivery_embed(delivery)
        view = reply_view(delivery.actions, self.bot.buttons)
        extra: dict[str, Any] = {"embed": embed}
        if view is not None:
            extra["view"] = view
        key = delivery.key
        if key is None or isinstance(target, discord.DMChannel | discord.Thread):
            if isinstance(target, discord.ForumChannel):
                # A forum holds only posts: an alert without an incident is a post of its own.
                post = await target.create_thread(name=thread_name(delivery), **extra)
                return DeliveryResult(True, "posted", str(post.message.id))
            message = await target.send(**extra)
            return DeliveryResult(True, "sent", str(message.id))

        thread = await self._thread(target.id, key)
        if thread is not None:
            message = await thread.send(**extra)
            if delivery.resolved:
                await self._archive(target.id, key, thread)
                return DeliveryResult(
                    True, f"sent to thread {thread.id}, archived", str(message.id)
                )
            return DeliveryResult(True, f"sent to thread {thread.id}", str(message.id))

        if isinstance(target, discord.ForumChannel):
            post = await target.create_thread(name=thread_name(delivery), **extra)
            thread, message = post.thread, post.message
        else:
            message = await target.send(**extra)
            thread = await message.create_thread(name=thread_name(delivery))
        if delivery.resolved:
            await thread.edit(archived=True)
            return DeliveryResult(True, f"opened thread {thread.id}, archived", str(message.id))
        self._remember(target.id, key, thread.id)
        return DeliveryResult(True, f"opened thread {thread.id}", str(message.id))

    def _remember(self, channel_id: int, key: str, thread_id: int) -> None:
        self.threads[(channel_id, key)] = thread_id
        while len(self.threads) > THREADS_MAX:
            del self.threads[next(iter(self.threads))]

    async def _archive(self, channel_id: int, key: str, thread: discord.Thread) -> None:
        self.threads.pop((channel_id, key), None)
        await thread.edit(archived=True)

    async def _thread(self, channel_id: int, key: str) -> discord.Thread | None:
        thread_id = self.threads.get((channel_id, key))
        if thread_id is None:
            return None
        client = self.bot.client
        found = client.get_channel(thread_id)
        if found is None:
            try:
                found = await client.fetch_channel(thread_id)
            except (discord.NotFound, discord.Forbidden):
                found = None
        if not isinstance(found, discord.Thread):
            self.threads.pop((channel_id, key), None)  # deleted: the incident gets a new one
            return None
        return found

    async def _target(self, delivery: Delivery) -> Channel:
        address = delivery.address.strip()
        settings = self.bot.settings
        if delivery.person is None and address in settings.channels:
            return await self._channel(settings.channels[address], address)
        if address.startswith("user:"):
            address = address.removeprefix("user:")
        if not address.isdigit():
            names = ", ".join(sorted(settings.channels)) or "none"
            raise DeliveryError(
                f"no Discord channel {address!r}: name one of frontends.discord.channels "
                f"({names}), or give a channel or user id"
            )
        if delivery.person is not None:
            return await self._direct(int(address))
        try:
            return await self._channel(int(address), address)
        except DeliveryError:
            return await self._direct(int(address))  # an id that is no channel: a user's

    async def _channel(self, channel_id: int, name: str) -> Channel:
        client = self.bot.client
        channel: Any = client.get_channel(channel_id)
        if channel is None:
            try:
                channel = await client.fetch_channel(channel_id)
            except (discord.NotFound, discord.Forbidden) as exc:
                raise DeliveryError(
                    f"Discord channel {name!r} ({channel_id}) is unknown or hidden from the bot: "
                    f"{exc.text}"
                ) from exc
        if not isinstance(channel, Channel):
            raise DeliveryError(
                f"Discord channel {name!r} ({channel_id}) is a {type(channel).__name__}, "
                "not a text or forum channel"
            )
        return channel

    async def _direct(self, user_id: int) -> discord.DMChannel:
        client = self.bot.client
        user = client.get_user(user_id)
        try:
            if user is None:
                user = await client.fetch_user(user_id)
            return await user.create_dm()
        except discord.NotFound as exc:
            raise DeliveryError(f"no Discord user {user_id}") from exc
