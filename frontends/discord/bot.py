"""The bot: discord.py's client, the slash commands, buttons and mentions, all into the hub.

Every way in (a slash command, a button press, a message mentioning the bot, a direct
message) becomes one :class:`hub.conversation.Request` for the command layer, as the person
who typed or pressed it; the :class:`hub.conversation.Reply` comes back as an embed with
buttons. Permissions are the command layer's: this module only says who is asking.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Literal

from frontends.discord._discord import app_commands, discord
from frontends.discord.render import (
    BUTTON_TEMPLATE,
    ButtonCommands,
    cut,
    reply_actions,
    reply_embed,
    reply_view,
)
from frontends.discord.settings import Settings
from hub.api import (
    CommandLayer,
    Identity,
    IdentityKind,
    Person,
    PluginContext,
    Reply,
    ReplyStatus,
    Request,
    Role,
)

FRONTEND = "discord"
# Discord wants an answer to an interaction within 3 s; a command still running after this
# long is deferred ("thinking...") and its reply edited in when it is done.
DEFER_AFTER = 2.5
CHOICE_MAX = 100  # an autocomplete choice's name and value
_ROLE_RANK = {Role.GUEST: 0, Role.MEMBER: 1, Role.ADMIN: 2}
_MENTION = re.compile(r"<@!?(\d+)>")
_LOGGER = logging.getLogger(__name__)

# The bot behind each client, for buttons: discord.py builds a pressed button from its
# custom_id alone and hands it only the interaction (whose ``client`` is the key here).
_BOTS: weakref.WeakKeyDictionary[discord.Client, DiscordBot] = weakref.WeakKeyDictionary()

User = discord.User | discord.Member
CompletionKind = Literal["target", "entity", "area", "scene", "rule", "command"]


def language_of(locale: discord.Locale | str | None) -> str | None:
    """A hub language code from a Discord locale (``en-US`` -> ``en``, ``pt-BR`` -> ``pt``)."""
    if locale is None:
        return None
    text = str(locale.value if isinstance(locale, discord.Locale) else locale)
    return text.split("-", maxsplit=1)[0].lower() or None


def strip_mentions(text: str, bot_id: int) -> str:
    """The message without mentions of the bot (the words the person addressed to it)."""
    return _MENTION.sub(lambda m: "" if int(m.group(1)) == bot_id else m.group(0), text).strip()


class HubButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=BUTTON_TEMPLATE
):
    """A reply's button: pressing it sends its command to the hub as whoever pressed it."""

    def __init__(self, kind: str, value: str) -> None:
        super().__init__(discord.ui.Button(custom_id=f"hub{kind}{value}"))
        self.kind = kind
        self.value = value

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[discord.Client],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> HubButton:
        """Rebuild the button from its custom_id (works for messages sent before a restart)."""
        return cls(match["kind"], match["value"])

    async def callback(self, interaction: discord.Interaction[discord.Client]) -> None:
        """Send the button's command through the command layer as the presser."""
        bot = _BOTS.get(interaction.client)
        if bot is not None:
            await bot.press(interaction, self.kind, self.value)


class DiscordBot:
    """One discord.py client with the hub's slash commands, buttons and mention handler."""

    def __init__(self, context: PluginContext, settings: Settings) -> None:
        self.context = context
        self.settings = settings
        self.buttons = ButtonCommands()
        # Discord role id or name (case-folded) -> hub role, from the settings (frozen).
        self._roles = {key.casefold(): role for key, role in settings.roles.items()}
        options: dict[str, Any] = {
            "intents": discord.Intents.default(),  # no privileged intent is needed
            # Replies echo what people typed: never let that ping @everyone or a role.
            "allowed_mentions": discord.AllowedMentions.none(),
        }
        self.client: discord.Client
        if settings.shard_count is None:
            self.client = discord.Client(**options)
        else:
            # 0: ask Discord how many shards (GET /gateway/bot), as discord.py does for None.
            self.client = discord.AutoShardedClient(
                shard_count=settings.shard_count or None, **options
            )
        self.tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(self.client)
        self.tree.error(self._on_command_error)
        self._define_commands()
        self.client.add_dynamic_items(HubButton)
        self.client.event(self.on_message)
        self.client.event(self.on_ready)
        self.client.event(self.on_resumed)
        self.client.event(self.on_disconnect)
        _BOTS[self.client] = self

    # ----- connection health (discord.py reconnects and resumes by itself) ------------------

    async def on_ready(self) -> None:
        """Connected (again) with a new session."""
        self.context.report_health(True)

    async def on_resumed(self) -> None:
        """Connected again, the session resumed: nothing was missed."""
        self.context.report_health(True)

    async def on_disconnect(self) -> None:
        """The gateway connection dropped; discord.py reconnects with back-off."""
        self.context.report_health(
            False, "lost the connection to Discord's gateway; discord.py is reconnecting"
        )

    # ----- who is asking ------------------------------------------------------------------

    @property
    def layer(self) -> CommandLayer:
        """The hub's command layer."""
        return self.context.conversation

    def mapped_role(self, user: User) -> Role | None:
        """The highest hub role a member's Discord roles map to (None: no mapped role)."""
        roles = self._roles
        if not roles or not isinstance(user, discord.Member):
            return None
        found: Role | None = None
        for discord_role in user.roles:
            role = roles.get(str(discord_role.id)) or roles.get(discord_role.name.casefold())
            if role is not None and (found is None or _ROLE_RANK[role] > _ROLE_RANK[found]):
                found = role
        return found

    def person_of(self, user: User, locale: discord.Locale | str | None = None) -> Person | None:
        """The person behind a Discord user: listed in ``people:``, else by a mapped role."""
        identity = Identity(IdentityKind.DISCORD, str(user.id))
        person = self.layer.person_for(identity)
        if person is not None:
            return person
        role = self.mapped_role(user)
        if role is None:
            return None  # nobody: the command layer refuses and audits the attempt
        return Person(
            id=f"discord-{user.id}",
            name=user.display_name,
            role=role,
            identities=(identity,),
            language=language_of(locale) or "en",
            transient=True,
        )

    def request(
        self,
        user: User,
        *,
        locale: discord.Locale | str | None = None,
        where: str | None = None,
        text: str = "",
        intent: str | None = None,
        slots: Mapping[str, Any] | None = None,
    ) -> Request:
        """A request from ``user`` for the command layer."""
        return Request(
            frontend=FRONTEND,
            sender=Identity(IdentityKind.DISCORD, str(user.id)),
            text=text,
            intent=intent,
            slots=dict(slots or {}),
            person=self.person_of(user, locale),
            channel=where,
        )

    @staticmethod
    def where(interaction_or_message: discord.Interaction[Any] | discord.Message) -> str:
        """Where a request came from, for the audit (``guild/channel`` or ``dm/channel``)."""
        guild = interaction_or_message.guild
        channel = interaction_or_message.channel
        channel_id = channel.id if channel is not None else 0
        return f"{guild.id if guild else 'dm'}/{channel_id}"

    # ----- answering ------------------------------------------------------------------------

    async def handle(self, request: Request) -> Reply:
        """The command layer's reply (an internal error becomes a reply saying so)."""
        try:
            return await self.layer.handle(request)
        except Exception:
            _LOGGER.exception("the command layer failed on a Discord request")
            return Reply(
                ReplyStatus.FAILED,
                "The hub could not answer that: something went wrong inside it (it was logged).",
            )

    async def answer(self, interaction: discord.Interaction[Any], request: Request) -> None:
        """Run a request from an interaction and reply to it (deferring if it takes long)."""
        task = asyncio.ensure_future(self.handle(request))
        try:
            reply = await asyncio.wait_for(asyncio.shield(task), DEFER_AFTER)
        except TimeoutError:
            await self._defer(interaction)
            reply = await task
        await self.send_reply(interaction, reply)

    async def _defer(self, interaction: discord.Interaction[Any]) -> None:
        try:
            await interaction.response.defer(thinking=True)
        except discord.HTTPException as exc:
            _LOGGER.warning("could not defer a Discord interaction: %s", exc)

    async def send_reply(self, interaction: discord.Interaction[Any], reply: Reply) -> None:
        """Render a reply as an embed with buttons; refusals only the asker sees."""
        embed = reply_embed(reply)
        view = reply_view(reply_actions(reply), self.buttons)
        private = reply.status is ReplyStatus.REFUSED
        try:
            if not interaction.response.is_done():
                await interaction.response.send_message(
                    embed=embed, view=view or discord.utils.MISSING, ephemeral=private
                )
            elif private:
                # Deferred in public: the refusal goes to the asker alone, the "thinking"
                # message goes away.
                await interaction.followup.send(
                    embed=embed, view=view or discord.utils.MISSING, ephemeral=True
                )
                await interaction.delete_original_response()
            else:
                await interaction.edit_original_response(embed=embed, view=view)
        except discord.HTTPException as exc:
            _LOGGER.warning("could not answer a Discord interaction: %s", exc)

    async def press(self, interaction: discord.Interaction[Any], kind: str, value: str) -> None:
        """A button was pressed: its command goes through the command layer as the presser."""
        command = self.buttons.command(kind, value)
        if command is None:
            await self.send_reply(
                interaction,
                Reply(ReplyStatus.INVALID, "This button has expired: ask the hub again."),
            )
            return
        request = self.request(
            interaction.user,
            locale=interaction.locale,
            where=self.where(interaction),
            text=command,
        )
        await self.answer(interaction, request)

    async def on_message(self, message: discord.Message) -> None:
        """Answer a direct message or a message that mentions the bot."""
        me = self.client.user
        if not self.settings.answer_mentions or me is None or message.author.bot:
            return
        direct = message.guild is None
        if not direct and me.id not in message.raw_mentions:
            return
        text = strip_mentions(message.content, me.id)
        request = self.request(message.author, where=self.where(message), text=text)
        reply = await self.handle(request)
        view = reply_view(reply_actions(reply), self.buttons)
        try:
            await message.reply(
                embed=reply_embed(reply), view=view or discord.utils.MISSING, mention_author=False
            )
        except discord.HTTPException as exc:
            _LOGGER.warning("could not answer a Discord message: %s", exc)

    async def _on_command_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        # Options Discord should have checked but did not (or a command this hub no longer
        # has): say so instead of leaving the person with "the application did not respond".
        _LOGGER.info("a Discord command could not be read: %s", error)
        reply = Reply(ReplyStatus.INVALID, cut(f"That command could not be read: {error}", 1000))
        await self.send_reply(interaction, reply)

    # ----- slash commands -------------------------------------------------------------------

    def completer(
        self, kind: CompletionKind
    ) -> Callable[
        [discord.Interaction[Any], str], Coroutine[Any, Any, list[app_commands.Choice[str]]]
    ]:
        """An autocomplete callback for names of ``kind`` the asker may use."""

        async def complete(
            interaction: discord.Interaction[Any], current: str
        ) -> list[app_commands.Choice[str]]:
            person = self.person_of(interaction.user, interaction.locale)
            if person is None:
                return []  # strangers learn nothing about the house
            try:
                found = self.layer.complete(kind, current[:CHOICE_MAX], person, limit=25)
            except Exception:
                _LOGGER.exception("autocomplete of %s failed", kind)
                return []
            return [
                app_commands.Choice(name=cut(c.label, CHOICE_MAX), value=c.value[:CHOICE_MAX])
                for c in found[:25]
                if c.value and len(c.value) <= CHOICE_MAX
            ]

        return complete

    def _structured(
        self, interaction: discord.Interaction[Any], intent: str, **slots: Any
    ) -> Awaitable[None]:
        request = self.request(
            interaction.user,
            locale=interaction.locale,
            where=self.where(interaction),
            intent=intent,
            slots={k: v for k, v in slots.items() if v is not None},
        )
        return self.answer(interaction, request)

    def _define_commands(self) -> None:
        tree = self.tree
        bot = self

        @tree.command(name="hub", description="Ask the hub in plain words")
        @app_commands.describe(text="e.g. turn on the kitchen light, scene movie, energy today")
        async def hub_(interaction: discord.Interaction[Any], text: str) -> None:
            request = bot.request(
                interaction.user,
                locale=interaction.locale,
                where=bot.where(interaction),
                text=text,
            )
            await bot.answer(interaction, request)

        @tree.command(name="on", description="Turn something on")
        @app_commands.describe(target="a device, light, group or area")
        @app_commands.autocomplete(target=self.completer("target"))
        async def on(interaction: discord.Interaction[Any], target: str) -> None:
            await bot._structured(interaction, "turn_on", target=target)

        @tree.command(name="off", description="Turn something off")
        @app_commands.describe(target="a device, light, group or area")
        @app_commands.autocomplete(target=self.completer("target"))
        async def off(interaction: discord.Interaction[Any], target: str) -> None:
            await bot._structured(interaction, "turn_off", target=target)

        @tree.command(name="toggle", description="Switch something over")
        @app_commands.describe(target="a device, light, group or area")
        @app_commands.autocomplete(target=self.completer("target"))
        async def toggle(interaction: discord.Interaction[Any], target: str) -> None:
            await bot._structured(interaction, "toggle", target=target)

        @tree.command(name="brightness", description="Set a light's brightness")
        @app_commands.describe(target="a light, group or area", percent="0 to 100")
        @app_commands.autocomplete(target=self.completer("target"))
        async def brightness(
            interaction: discord.Interaction[Any],
            target: str,
            percent: app_commands.Range[int, 0, 100],
        ) -> None:
            await bot._structured(interaction, "set_brightness", target=target, brightness=percent)

        @tree.command(name="scene", description="Apply a scene")
        @app_commands.describe(name="the scene")
        @app_commands.autocomplete(name=self.completer("scene"))
        async def scene(interaction: discord.Interaction[Any], name: str) -> None:
            await bot._structured(interaction, "scene", scene=name)

        @tree.command(name="status", description="How a device, an area or the house is")
        @app_commands.describe(target="leave empty for the whole house")
        @app_commands.autocomplete(target=self.completer("target"))
        async def status(interaction: discord.Interaction[Any], target: str | None = None) -> None:
            await bot._structured(interaction, "status", target=target)

        @tree.command(name="why", description="Why something is in its state")
        @app_commands.describe(target="a device or entity")
        @app_commands.autocomplete(target=self.completer("target"))
        async def why(interaction: discord.Interaction[Any], target: str) -> None:
            await bot._structured(interaction, "why", target=target)

        @tree.command(name="energy", description="Energy used today or this week")
        @app_commands.describe(period="today or this week")
        async def energy(
            interaction: discord.Interaction[Any], period: Literal["today", "week"] = "today"
        ) -> None:
            await bot._structured(interaction, "energy", period=period)

        rule = app_commands.Group(name="rule", description="Turn a rule on or off")

        @rule.command(name="enable", description="Enable a rule")
        @app_commands.describe(name="the rule")
        @app_commands.autocomplete(name=self.completer("rule"))
        async def rule_enable(interaction: discord.Interaction[Any], name: str) -> None:
            await bot._structured(interaction, "rule_enable", rule=name)

        @rule.command(name="disable", description="Disable a rule")
        @app_commands.describe(name="the rule")
        @app_commands.autocomplete(name=self.completer("rule"))
        async def rule_disable(interaction: discord.Interaction[Any], name: str) -> None:
            await bot._structured(interaction, "rule_disable", rule=name)

        tree.add_command(rule)

        @tree.command(name="run", description="Run a named command that a rule defines")
        @app_commands.describe(command="the command")
        @app_commands.autocomplete(command=self.completer("command"))
        async def run(interaction: discord.Interaction[Any], command: str) -> None:
            await bot._structured(interaction, "run", command=command)

    async def sync_commands(self) -> None:
        """Register the slash commands with Discord: per configured server, else globally."""
        if not self.settings.guild_ids:
            await self.tree.sync()
            return
        for guild_id in self.settings.guild_ids:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
