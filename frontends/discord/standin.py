"""A local stand-in for Discord: enough of its REST API and gateway for the real discord.py.

The bot connects to it exactly as to Discord (``api_base`` and ``gateway`` in the settings
are the only difference): it logs in over REST (``GET /users/@me``), opens the gateway
websocket (HELLO, IDENTIFY, READY, GUILD_CREATE, heartbeats; RESUME after a dropped
connection, with the events it missed replayed), registers its slash commands, answers
interactions (``POST /interactions/{id}/{token}/callback``, then the follow-up webhooks) and
posts messages, threads and forum posts. A test or the demo plays the people's side:
:meth:`DiscordStandIn.slash`, :meth:`autocomplete`, :meth:`press` and :meth:`say` put an
INTERACTION_CREATE or MESSAGE_CREATE on the gateway and wait for what the bot answered.

It checks what Discord checks where it matters here: the bot token (401 on REST, close code
4004 on the gateway), one callback per interaction (400, code 40060), unknown channels and
users (404). Everything it receives is kept in :attr:`DiscordStandIn.log`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

TOKEN = "standin-bot-token"  # noqa: S105 - the stand-in's own, not a secret
APPLICATION_ID = 1200000000000000001
BOT_ID = 1200000000000000002
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME = 0, 1, 2, 6
OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 9, 10, 11
TEXT, DM, PUBLIC_THREAD, FORUM = 0, 1, 11, 15
EPHEMERAL = 1 << 6
LOADING = 1 << 7
BACKLOG_MAX = 1000


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _json(data: Any, status: int = 200) -> web.Response:
    # discord.py parses a body as JSON only when Content-Type is exactly application/json.
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


def _error(status: int, message: str, code: int = 0) -> web.Response:
    return _json({"message": message, "code": code}, status)


def message_text(message: Mapping[str, Any] | None) -> str:
    """What a message shows: its content and its embeds' titles, texts and fields."""
    if not message:
        return ""
    lines = [message.get("content") or ""]
    for embed in message.get("embeds") or ():
        lines.extend([embed.get("title") or "", embed.get("description") or ""])
        lines.extend(f"{f.get('name')}: {f.get('value')}" for f in embed.get("fields") or ())
    return "\n".join(line for line in lines if line)


def message_buttons(message: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The buttons of a message (label, custom_id, style), row by row."""
    found: list[dict[str, Any]] = []
    for row in (message or {}).get("components") or ():
        found.extend(c for c in row.get("components") or () if c.get("type") == 2)
    return found


@dataclass(frozen=True)
class StandInGuild:
    """A server the bot is in: its roles (name -> id) and channels (name -> (id, type))."""

    id: int
    name: str = "Home"
    roles: Mapping[str, int] = field(default_factory=dict)
    channels: Mapping[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class Answer:
    """What the bot answered an interaction."""

    interaction_id: int
    kinds: list[str] = field(default_factory=list)  # "callback:4", "edit", "followup", ...
    message: dict[str, Any] | None = None  # the answer's message as the person sees it
    ephemeral: bool = False
    deferred: bool = False
    choices: list[dict[str, Any]] | None = None  # autocomplete

    @property
    def text(self) -> str:
        """The answer's visible text."""
        return message_text(self.message)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """The answer's buttons."""
        return message_buttons(self.message)


@dataclass
class _Interaction:
    id: int
    token: str
    payload: dict[str, Any]
    answer: Answer
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    acknowledged: bool = False


@dataclass
class _Session:
    id: str
    shard: tuple[int, int]
    ws: web.WebSocketResponse | None = None
    seq: int = 0
    backlog: list[tuple[int, str, Any]] = field(default_factory=list)

    async def dispatch(self, event: str, data: Any) -> None:
        self.seq += 1
        self.backlog.append((self.seq, event, data))
        del self.backlog[:-BACKLOG_MAX]
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_str(json.dumps({"op": 0, "s": self.seq, "t": event, "d": data}))


class DiscordStandIn:
    """Discord's REST API and gateway on 127.0.0.1, for one bot and a few people."""

    def __init__(
        self,
        guilds: Sequence[StandInGuild] = (),
        users: Mapping[int, str] | None = None,
        *,
        token: str = TOKEN,
        members: Mapping[int, Sequence[int]] | None = None,
        heartbeat_interval: float = 41.25,
        shards: int = 1,
    ) -> None:
        self.token = token
        self.guilds = {g.id: g for g in guilds}
        self.users: dict[int, dict[str, Any]] = {BOT_ID: self._user(BOT_ID, "hub", bot=True)}
        for user_id, name in (users or {}).items():
            self.users[user_id] = self._user(user_id, name)
        self.member_roles: dict[int, list[int]] = {k: list(v) for k, v in (members or {}).items()}
        self.heartbeat_interval = heartbeat_interval
        self.recommended_shards = shards
        self.log: list[tuple[str, str, Any]] = []  # (method, path, body) of every REST call
        self.commands: dict[int | None, list[dict[str, Any]]] = {}  # guild id (None: global)
        self.channels: dict[int, dict[str, Any]] = {}
        self.messages: dict[int, dict[str, Any]] = {}
        self.identifies = 0
        self.resumes = 0
        self._ids = itertools.count(1300000000000000000)
        self._interactions: dict[int, _Interaction] = {}
        self._by_token: dict[str, _Interaction] = {}
        self._sessions: dict[str, _Session] = {}
        self._sockets: set[web.WebSocketResponse] = set()
        self._dms: dict[int, int] = {}  # user id -> DM channel id
        self._runner: web.AppRunner | None = None
        self.port = 0
        for guild in guilds:
            for name, (channel_id, kind) in guild.channels.items():
                self.channels[channel_id] = self._channel(channel_id, name, kind, guild.id)

    # ----- addresses ----------------------------------------------------------------------

    @property
    def api_base(self) -> str:
        """The REST base URL for the bot's ``api_base`` setting."""
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        """The gateway URL for the bot's ``gateway`` setting."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1 (``port`` 0: a free one)."""
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        await self.drop_connections(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def drop_connections(self, code: int = 4000) -> None:
        """Close every gateway connection, as Discord does now and then (the bot resumes)."""
        for ws in list(self._sockets):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.close(code=code, message=b"stand-in closed the connection")

    @property
    def connected(self) -> int:
        """Gateway connections that have identified or resumed and are open."""
        return sum(1 for s in self._sessions.values() if s.ws is not None and not s.ws.closed)

    # ----- payloads -------------------------------------------------------------------------

    def _next(self) -> int:
        return next(self._ids)

    @staticmethod
    def _user(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
        return {
            "id": str(user_id),
            "username": name,
            "global_name": name,
            "discriminator": "0",
            "avatar": None,
            "bot": bot,
            "public_flags": 0,
        }

    def _channel(self, channel_id: int, name: str, kind: int, guild_id: int) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(channel_id),
            "type": kind,
            "guild_id": str(guild_id),
            "name": name,
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        if kind == FORUM:
            data.update(
                available_tags=[],
                default_reaction_emoji=None,
                default_sort_order=None,
                default_forum_layout=0,
                default_thread_rate_limit_per_user=0,
            )
        return data

    def _guild(self, guild: StandInGuild) -> dict[str, Any]:
        roles = [
            {
                "id": str(role_id),
                "name": name,
                "color": 0,
                "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
                "hoist": False,
                "position": position,
                "permissions": "0",
                "managed": False,
                "mentionable": False,
                "flags": 0,
            }
            for position, (name, role_id) in enumerate(
                {"@everyone": guild.id, **guild.roles}.items()
            )
        ]
        channels = [c for c in self.channels.values() if c.get("guild_id") == str(guild.id)]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "owner_id": str(next(iter(self.users))),
            "roles": roles,
            "channels": [c for c in channels if c["type"] != PUBLIC_THREAD],
            "threads": [c for c in channels if c["type"] == PUBLIC_THREAD],
            "members": [self._member(BOT_ID, guild.id)],
            "member_count": len(self.users),
            "emojis": [],
            "stickers": [],
            "features": [],
            "large": False,
            "unavailable": False,
            "joined_at": _now(),
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "system_channel_flags": 0,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "afk_timeout": 300,
        }

    def _member(self, user_id: int, guild_id: int) -> dict[str, Any]:
        guild = self.guilds.get(guild_id)
        known = set(guild.roles.values()) if guild else set()
        return {
            "user": self.users[user_id],
            "roles": [str(r) for r in self.member_roles.get(user_id, ()) if r in known],
            "joined_at": _now(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "permissions": "0",
        }

    def _message(
        self, channel_id: int, body: Mapping[str, Any], author: int = BOT_ID
    ) -> dict[str, Any]:
        channel = self.channels.get(channel_id, {})
        message: dict[str, Any] = {
            "id": str(self._next()),
            "channel_id": str(channel_id),
            "author": self.users.get(author, self._user(author, str(author))),
            "content": body.get("content") or "",
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": list(body.get("embeds") or ()),
            "components": list(body.get("components") or ()),
            "pinned": False,
            "type": 0,
            "flags": int(body.get("flags") or 0),
        }
        if channel.get("guild_id"):
            message["guild_id"] = channel["guild_id"]
        self.messages[int(message["id"])] = message
        return message

    def _thread(
        self, thread_id: int, parent: dict[str, Any], name: str, auto_archive: int = 1440
    ) -> dict[str, Any]:
        thread = self._channel(thread_id, name, PUBLIC_THREAD, int(parent["guild_id"]))
        thread.update(
            parent_id=parent["id"],
            owner_id=str(BOT_ID),
            message_count=0,
            member_count=1,
            total_message_sent=0,
            thread_metadata={
                "archived": False,
                "auto_archive_duration": auto_archive,
                "archive_timestamp": _now(),
                "locked": False,
            },
        )
        self.channels[thread_id] = thread
        return thread

    def threads_of(self, channel_id: int) -> list[dict[str, Any]]:
        """The threads (or forum posts) opened in a channel, oldest first."""
        return [c for c in self.channels.values() if c.get("parent_id") == str(channel_id)]

    def messages_in(self, channel_id: int) -> list[dict[str, Any]]:
        """The messages posted in a channel or thread, oldest first."""
        return [m for m in self.messages.values() if m["channel_id"] == str(channel_id)]

    def dm_channel(self, user_id: int) -> int | None:
        """The direct-message channel with a user, once the bot opened one."""
        return self._dms.get(user_id)

    # ----- the people's side -------------------------------------------------------------------

    async def dispatch(self, event: str, data: Any, guild_id: int | None = None) -> None:
        """Send a gateway event to the session (shard) that owns ``guild_id``."""
        for session in self._sessions.values():
            shard_id, count = session.shard
            owner = 0 if guild_id is None else (guild_id >> 22) % count
            if owner == shard_id:
                await session.dispatch(event, data)

    async def interact(
        self,
        kind: int,
        data: dict[str, Any],
        user_id: int,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
        message: dict[str, Any] | None = None,
        locale: str = "en-US",
    ) -> int:
        """Put an INTERACTION_CREATE on the gateway; return the interaction's id."""
        interaction_id = self._next()
        token = secrets.token_urlsafe(24)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(APPLICATION_ID),
            "type": kind,
            "data": data,
            "token": token,
            "version": 1,
            "attachment_size_limit": 8 * 1024 * 1024,
            "locale": locale,
            "app_permissions": "0",
            "entitlements": [],
            "authorizing_integration_owners": {},
        }
        if guild_id is not None:
            if channel_id is None:
                channel_id = next(
                    int(c["id"])
                    for c in self.channels.values()
                    if c.get("guild_id") == str(guild_id) and c["type"] == TEXT
                )
            payload.update(
                guild_id=str(guild_id),
                guild_locale="en-US",
                member=self._member(user_id, guild_id),
                channel=self.channels[channel_id],
                channel_id=str(channel_id),
                context=0,
            )
        else:
            dm = self._open_dm(user_id)
            payload.update(user=self.users[user_id], channel=dm, channel_id=dm["id"], context=1)
        if message is not None:
            payload["message"] = message
        record = _Interaction(interaction_id, token, payload, Answer(interaction_id))
        self._interactions[interaction_id] = record
        self._by_token[token] = record
        await self.dispatch("INTERACTION_CREATE", payload, guild_id)
        return interaction_id

    async def answer(self, interaction_id: int, timeout: float = 10.0) -> Answer:
        """Wait for the bot's final answer to an interaction (after any defer)."""
        record = self._interactions[interaction_id]
        await asyncio.wait_for(record.answered.wait(), timeout)
        return record.answer

    def _options(self, options: Mapping[str, Any], focused: str | None) -> list[dict[str, Any]]:
        out = []
        for name, value in options.items():
            kind = 5 if isinstance(value, bool) else 4 if isinstance(value, int) else 3
            option: dict[str, Any] = {"name": name, "type": kind, "value": value}
            if name == focused:
                option["focused"] = True
            out.append(option)
        return out

    def _command_data(
        self, name: str, options: Mapping[str, Any], guild_id: int | None, focused: str | None
    ) -> dict[str, Any]:
        # "rule enable" is the subcommand "enable" of the command "rule".
        top, _, sub = name.partition(" ")
        registered = self.commands.get(guild_id) or self.commands.get(None) or []
        command_id = next((c["id"] for c in registered if c["name"] == top), str(self._next()))
        opts = self._options(options, focused)
        if sub:
            opts = [{"name": sub, "type": 1, "options": opts}]
        data: dict[str, Any] = {"id": command_id, "name": top, "type": 1, "options": opts}
        if guild_id is not None and guild_id in self.commands:
            data["guild_id"] = str(guild_id)
        return data

    async def slash(
        self,
        user_id: int,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
        locale: str = "en-US",
        timeout: float = 10.0,
    ) -> Answer:
        """Run ``/name option:value ...`` as a user and return the bot's answer."""
        data = self._command_data(name, options or {}, guild_id, None)
        interaction_id = await self.interact(
            2, data, user_id, guild_id=guild_id, channel_id=channel_id, locale=locale
        )
        return await self.answer(interaction_id, timeout)

    async def autocomplete(
        self,
        user_id: int,
        name: str,
        options: Mapping[str, Any],
        focused: str,
        *,
        guild_id: int | None = None,
        timeout: float = 10.0,
    ) -> list[dict[str, Any]]:
        """Type into option ``focused`` of ``/name``; return the choices the bot offered."""
        data = self._command_data(name, options, guild_id, focused)
        interaction_id = await self.interact(4, data, user_id, guild_id=guild_id)
        answer = await self.answer(interaction_id, timeout)
        return answer.choices or []

    async def press(
        self,
        user_id: int,
        message: Mapping[str, Any],
        custom_id: str,
        *,
        guild_id: int | None = None,
        timeout: float = 10.0,
    ) -> Answer:
        """Press a button of a message the bot sent, as a user; return the bot's answer."""
        data = {"custom_id": custom_id, "component_type": 2}
        channel_id = int(message["channel_id"])
        interaction_id = await self.interact(
            3,
            data,
            user_id,
            guild_id=guild_id,
            channel_id=channel_id if guild_id is not None else None,
            message=dict(message),
        )
        return await self.answer(interaction_id, timeout)

    async def say(
        self, user_id: int, content: str, *, channel_id: int | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Post a message as a user (``channel_id`` None: a DM); return the bot's reply."""
        if channel_id is None:
            channel_id = int(self._open_dm(user_id)["id"])
        before = set(self.messages)
        message = self._message(channel_id, {"content": content}, author=user_id)
        bot_mention = f"<@{BOT_ID}>"
        if bot_mention in content:
            message["mentions"] = [self.users[BOT_ID]]
        guild_id = self.channels.get(channel_id, {}).get("guild_id")
        if guild_id:
            message["member"] = {
                k: v for k, v in self._member(user_id, int(guild_id)).items() if k != "user"
            }
        await self.dispatch("MESSAGE_CREATE", message, int(guild_id) if guild_id else None)

        def reply() -> dict[str, Any] | None:
            for message_id, sent in self.messages.items():
                reference = sent.get("message_reference") or {}
                if message_id not in before and str(reference.get("message_id")) == message["id"]:
                    return sent
            return None

        deadline = asyncio.get_running_loop().time() + timeout
        while (found := reply()) is None:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"the bot did not reply to {content!r}")
            await asyncio.sleep(0.01)
        return found

    # ----- gateway ------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        session: _Session | None = None
        try:
            await ws.send_str(
                json.dumps(
                    {
                        "op": OP_HELLO,
                        "d": {"heartbeat_interval": int(self.heartbeat_interval * 1000)},
                        "s": None,
                        "t": None,
                    }
                )
            )
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                payload = json.loads(msg.data)
                op, data = payload.get("op"), payload.get("d")
                if op == OP_HEARTBEAT:
                    await ws.send_str(json.dumps({"op": OP_HEARTBEAT_ACK}))
                elif op == OP_IDENTIFY:
                    if data.get("token") != self.token:
                        await ws.close(code=4004, message=b"Authentication failed.")
                        break
                    session = await self._identify(ws, data)
                elif op == OP_RESUME:
                    session = await self._resume(ws, data)
        finally:
            self._sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> _Session:
        self.identifies += 1
        shard_id, count = data.get("shard") or (0, 1)
        session = _Session(secrets.token_hex(16), (int(shard_id), int(count)), ws)
        self._sessions[session.id] = session
        mine = [g for g in self.guilds.values() if (g.id >> 22) % count == shard_id]
        await session.dispatch(
            "READY",
            {
                "v": 10,
                "user": self.users[BOT_ID],
                "guilds": [{"id": str(g.id), "unavailable": True} for g in mine],
                "session_id": session.id,
                "resume_gateway_url": self.gateway_url,
                "shard": [shard_id, count],
                "application": {"id": str(APPLICATION_ID), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "user_settings": {},
            },
        )
        for guild in mine:
            await session.dispatch("GUILD_CREATE", self._guild(guild))
        return session

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> _Session | None:
        session = self._sessions.get(data.get("session_id") or "")
        if session is None or data.get("token") != self.token:
            await ws.send_str(json.dumps({"op": OP_INVALID_SESSION, "d": False}))
            return None
        self.resumes += 1
        session.ws = ws
        seq = int(data.get("seq") or 0)
        for number, event, payload in list(session.backlog):
            if number > seq:  # what the bot missed while it was away
                await ws.send_str(json.dumps({"op": 0, "s": number, "t": event, "d": payload}))
        await session.dispatch("RESUMED", {})
        return session

    # ----- REST ---------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        body: Any = None
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return _error(400, "400: Bad Request (body is not JSON)", 50109)
        self.log.append((request.method, path, body))
        parts = path.strip("/").split("/")
        # Interaction callbacks and webhooks are authorised by their token, not the bot's.
        if parts[0] == "interactions":
            return await self._callback(parts, body)
        if parts[0] == "webhooks":
            return self._webhook(request.method, parts, body)
        if request.headers.get("Authorization") != f"Bot {self.token}":
            return _error(401, "401: Unauthorized")
        return self._api(request.method, parts, body or {})

    def _api(self, method: str, parts: list[str], body: Any) -> web.Response:
        route = (method, *parts)
        match route:
            case ("GET", "users", "@me"):
                return _json(self.users[BOT_ID])
            case ("GET", "oauth2", "applications", "@me"):
                return _json(self._application())
            case ("GET", "gateway", "bot"):
                return _json(
                    {
                        "url": self.gateway_url,
                        "shards": self.recommended_shards,
                        "session_start_limit": {
                            "total": 1000,
                            "remaining": 999,
                            "reset_after": 0,
                            "max_concurrency": 1,
                        },
                    }
                )
            case ("GET", "gateway"):
                return _json({"url": self.gateway_url})
            case ("PUT", "applications", _, "commands"):
                return _json(self._register(None, body))
            case ("PUT", "applications", _, "guilds", guild, "commands"):
                return _json(self._register(int(guild), body))
            case ("GET", "users", user_id) if user_id.isdigit():
                user = self.users.get(int(user_id))
                return _json(user) if user else _error(404, "Unknown User", 10013)
            case ("POST", "users", "@me", "channels"):
                recipient = int(body.get("recipient_id", 0))
                if recipient not in self.users:
                    return _error(400, "Invalid Recipient(s)", 50033)
                return _json(self._open_dm(recipient))
            case ("GET", "channels", channel_id):
                channel = self.channels.get(int(channel_id))
                return _json(channel) if channel else _error(404, "Unknown Channel", 10003)
            case ("PATCH", "channels", channel_id):
                return self._edit_channel(int(channel_id), body)
            case ("POST", "channels", channel_id, "messages"):
                return self._post(int(channel_id), body)
            case ("POST", "channels", channel_id, "messages", message_id, "threads"):
                return self._thread_from_message(int(channel_id), int(message_id), body)
            case ("POST", "channels", channel_id, "threads"):
                return self._forum_post(int(channel_id), body)
        return _error(404, f"404: Not Found ({method} /{'/'.join(parts)} is not in the stand-in)")

    def _application(self) -> dict[str, Any]:
        return {
            "id": str(APPLICATION_ID),
            "name": "hub",
            "icon": None,
            "description": "",
            "rpc_origins": [],
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": self.users[BOT_ID],
            "summary": "",
            "verify_key": "0" * 64,
            "flags": 0,
            "team": None,
            "interactions_endpoint_url": None,
        }

    def _register(self, guild_id: int | None, body: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if guild_id is not None and guild_id not in self.guilds:
            raise web.HTTPForbidden(
                body=json.dumps({"message": "Missing Access", "code": 50001}),
                content_type="application/json",
            )
        registered = []
        for command in body:
            entry = {
                "id": str(self._next()),
                "application_id": str(APPLICATION_ID),
                "version": str(self._next()),
                "type": 1,
                "options": [],
                "default_member_permissions": None,
                "dm_permission": True,
                "nsfw": False,
                **command,
            }
            if guild_id is not None:
                entry["guild_id"] = str(guild_id)
            registered.append(entry)
        self.commands[guild_id] = registered
        return registered

    def _open_dm(self, user_id: int) -> dict[str, Any]:
        channel_id = self._dms.get(user_id)
        if channel_id is None:
            channel_id = self._dms[user_id] = self._next()
            self.channels[channel_id] = {
                "id": str(channel_id),
                "type": DM,
                "recipients": [self.users[user_id]],
                "last_message_id": None,
                "flags": 0,
            }
        return self.channels[channel_id]

    def _post(self, channel_id: int, body: dict[str, Any]) -> web.Response:
        channel = self.channels.get(channel_id)
        if channel is None:
            return _error(404, "Unknown Channel", 10003)
        if channel["type"] == FORUM:
            return _error(400, "Cannot send messages in a forum channel; create a post", 50008)
        metadata = channel.get("thread_metadata")
        if metadata is not None:
            if metadata["locked"]:
                return _error(400, "Thread is locked", 50083)
            metadata["archived"] = False  # posting in an archived thread unarchives it
        message = self._message(channel_id, body)
        if body.get("message_reference"):
            message["message_reference"] = body["message_reference"]
        return _json(message)

    def _thread_from_message(
        self, channel_id: int, message_id: int, body: dict[str, Any]
    ) -> web.Response:
        channel = self.channels.get(channel_id)
        if channel is None or message_id not in self.messages:
            return _error(404, "Unknown Message", 10008)
        name = str(body.get("name") or "")
        if not 1 <= len(name) <= 100:
            return _error(400, "Invalid Form Body (name: 1 to 100 characters)", 50035)
        # As on Discord, a thread started from a message has that message's id.
        thread = self._thread(
            message_id, channel, name, int(body.get("auto_archive_duration") or 1440)
        )
        return _json(thread)

    def _forum_post(self, channel_id: int, body: dict[str, Any]) -> web.Response:
        channel = self.channels.get(channel_id)
        if channel is None:
            return _error(404, "Unknown Channel", 10003)
        name = str(body.get("name") or "")
        if not 1 <= len(name) <= 100:
            return _error(400, "Invalid Form Body (name: 1 to 100 characters)", 50035)
        thread_id = self._next()
        thread = self._thread(
            thread_id, channel, name, int(body.get("auto_archive_duration") or 1440)
        )
        if channel["type"] == FORUM:
            message = self._message(thread_id, body.get("message") or {})
            message["id"] = str(thread_id)  # a forum post's first message has the post's id
            self.messages[thread_id] = self.messages.pop(int(message["id"]), message)
            return _json({**thread, "message": message})
        return _json(thread)

    def _edit_channel(self, channel_id: int, body: dict[str, Any]) -> web.Response:
        channel = self.channels.get(channel_id)
        if channel is None:
            return _error(404, "Unknown Channel", 10003)
        metadata = channel.get("thread_metadata")
        if metadata is not None:
            for key in ("archived", "locked", "auto_archive_duration"):
                if key in body:
                    metadata[key] = body[key]
        if "name" in body:
            channel["name"] = body["name"]
        return _json(channel)

    # ----- interactions -------------------------------------------------------------------------

    async def _callback(self, parts: list[str], body: dict[str, Any]) -> web.Response:
        if len(parts) != 4 or parts[3] != "callback" or not parts[1].isdigit():
            return _error(404, "404: Not Found")
        record = self._interactions.get(int(parts[1]))
        if record is None or record.token != parts[2]:
            return _error(404, "Unknown interaction", 10062)
        if record.acknowledged:
            return _error(400, "Interaction has already been acknowledged.", 40060)
        record.acknowledged = True
        kind = int(body.get("type", 0))
        data = body.get("data") or {}
        answer = record.answer
        answer.kinds.append(f"callback:{kind}")
        resource: dict[str, Any] = {"type": kind}
        channel_id = int(record.payload["channel_id"])
        if kind == 4:  # a message
            answer.message = self._message(channel_id, data)
            asker = record.payload.get("member", {}).get("user") or record.payload.get("user")
            answer.message["interaction_metadata"] = {
                "id": str(record.id),
                "type": record.payload["type"],
                "user": asker,
                "authorizing_integration_owners": {},
            }
            answer.ephemeral = bool(answer.message["flags"] & EPHEMERAL)
            resource["message"] = answer.message
            record.answered.set()
        elif kind == 5:  # "thinking...": the answer follows as an edit
            answer.deferred = True
            answer.message = self._message(
                channel_id, {"flags": int(data.get("flags") or 0) | LOADING}
            )
            answer.ephemeral = bool(answer.message["flags"] & EPHEMERAL)
            resource["message"] = answer.message
        elif kind == 6:  # deferred update of the pressed message
            answer.deferred = True
        elif kind == 7:  # the pressed message, updated
            pressed = record.payload.get("message") or {}
            answer.message = {**pressed, **data}
            resource["message"] = answer.message
            record.answered.set()
        elif kind == 8:  # autocomplete choices
            answer.choices = list(data.get("choices") or ())
            record.answered.set()
        message = answer.message
        return _json(
            {
                "interaction": {
                    "id": str(record.id),
                    "type": record.payload["type"],
                    "response_message_id": message["id"] if message else None,
                    "response_message_loading": kind == 5,
                    "response_message_ephemeral": answer.ephemeral,
                },
                "resource": resource,
            }
        )

    def _webhook(self, method: str, parts: list[str], body: dict[str, Any] | None) -> web.Response:
        # /webhooks/{application id}/{token}[/messages/{message id | @original}]
        record = self._by_token.get(parts[2]) if len(parts) >= 3 else None
        if record is None:
            return _error(404, "Unknown Webhook", 10015)
        answer = record.answer
        body = body or {}
        if len(parts) == 3 and method == "POST":
            answer.kinds.append("followup")
            channel_id = int(record.payload["channel_id"])
            message = self._message(channel_id, body)
            answer.message = message
            answer.ephemeral = bool(message["flags"] & EPHEMERAL)
            record.answered.set()
            return _json(message)
        if len(parts) == 5 and parts[3] == "messages" and parts[4] == "@original":
            original = answer.message if answer.kinds and answer.kinds[0] != "followup" else None
            if method == "GET":
                return _json(original) if original else _error(404, "Unknown Message", 10008)
            if method == "PATCH":
                if original is None:
                    return _error(404, "Unknown Message", 10008)
                answer.kinds.append("edit")
                original.update(
                    {k: v for k, v in body.items() if k in ("content", "embeds", "components")}
                )
                original["flags"] = original["flags"] & ~LOADING
                original["edited_timestamp"] = _now()
                record.answered.set()
                return _json(original)
            if method == "DELETE":
                answer.kinds.append("delete")
                return web.Response(status=204)
        return _error(404, "404: Not Found")


# ----- the demo household and running the stand-in alone ---------------------------------------

DEMO_GUILD = 1100000000000000001
DEMO_CHANNELS = {
    "general": (1100000000000000100, TEXT),
    "alerts": (1100000000000000101, TEXT),
    "incidents": (1100000000000000102, FORUM),
}
DEMO_ROLES = {"Family": 1100000000000000010, "Visitors": 1100000000000000011}
# The demo people's Discord ids (as in the example hub.yaml's people: section).
DEMO_USERS = {100000000000000001: "alice", 100000000000000002: "bob", 100000000000000009: "mallory"}


def demo_standin() -> DiscordStandIn:
    """The stand-in with the demo household's server, channels, roles and people."""
    guild = StandInGuild(DEMO_GUILD, "Home", roles=DEMO_ROLES, channels=DEMO_CHANNELS)
    return DiscordStandIn([guild], DEMO_USERS)


def demo_settings(standin: DiscordStandIn) -> dict[str, Any]:
    """The front-end's settings (``frontends.discord`` in hub.yaml) for this stand-in."""
    return {
        "token": standin.token,
        "guild_ids": [str(DEMO_GUILD)],
        "channels": {
            name: str(channel_id)
            for name, (channel_id, kind) in DEMO_CHANNELS.items()
            if name != "general"
        },
        "roles": {"Family": "member", "Visitors": "guest"},
        "api_base": standin.api_base,
        "gateway": standin.gateway_url,
    }


async def _console(standin: DiscordStandIn) -> None:
    """Read ``name: words`` lines and send each as ``/hub text:words`` from that person."""
    by_name = {u["username"]: user_id for user_id, u in standin.users.items() if user_id != BOT_ID}
    while True:
        try:
            line = await asyncio.to_thread(input, "discord> ")
        except EOFError:
            return
        name, _, words = line.partition(":")
        user_id = by_name.get(name.strip().lower())
        if user_id is None or not words.strip():
            print(f"write 'name: words', name one of {', '.join(by_name)}")
            continue
        if standin.connected == 0:
            print("the bot is not connected yet")
            continue
        try:
            answer = await standin.slash(
                user_id, "hub", {"text": words.strip()}, guild_id=DEMO_GUILD
            )
        except TimeoutError:
            print("(no answer within 10 s)")
            continue
        shown = answer.text or "(no text)"
        private = " (only you can see this)" if answer.ephemeral else ""
        buttons = ", ".join(f"[{b['label']}]" for b in answer.buttons)
        print(f"{shown}{private}" + (f"\n{buttons}" if buttons else ""))


async def _main(port: int) -> None:
    standin = demo_standin()
    await standin.start(port)
    print("Discord stand-in listening; hub.yaml:")
    print("frontends:\n  discord:")
    for key, value in demo_settings(standin).items():
        print(f"    {key}: {json.dumps(value)}")
    try:
        await _console(standin)
    finally:
        await standin.stop()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        description="A local stand-in for Discord: run it, point the hub at it, then type "
        "'alice: turn on the kitchen light' to send /hub as that person."
    )
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any)")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args().port))
