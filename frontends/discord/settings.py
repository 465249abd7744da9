"""Settings of the Discord front-end (``frontends: {discord: {...}}`` in hub.yaml)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from hub.api import Role

DEFAULT_API_BASE = "https://discord.com/api/v10"
DEFAULT_GATEWAY = "wss://gateway.discord.gg/"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _snowflake(value: object) -> int:
    """A Discord id: written as a number or as quoted digits (YAML loses nothing either way)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a Discord id (digits), got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise ValueError(
            f"expected a Discord id (digits, e.g. '123456789012345678'), got {value!r}; "
            "turn on Developer Mode in Discord and use 'Copy ID'"
        )
    if not 0 < number < 2**64:
        raise ValueError(f"a Discord id is a positive 64-bit number, got {value!r}")
    return number


Snowflake = Annotated[int, BeforeValidator(_snowflake)]


def _role_key(value: object) -> object:
    # A role id written without quotes arrives as a number; keys are compared as text.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


RoleKey = Annotated[str, BeforeValidator(_role_key)]


class Settings(BaseModel):
    """How the hub connects to Discord and where its alerts go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The bot token (use ``!secret discord_token``; never commit it).
    token: Annotated[str, Field(min_length=1)]
    #: Servers whose slash commands are synced at start (instant); none: global commands,
    #: which Discord may take up to an hour to show.
    guild_ids: tuple[Snowflake, ...] = ()
    #: Alert channels by the name rules use (``discord:alerts``) -> text or forum channel id.
    channels: dict[str, Snowflake] = Field(default_factory=dict)
    #: Discord role id or name -> hub role, for members not listed under ``people:``.
    roles: dict[RoleKey, Role] = Field(default_factory=dict)
    #: Shards to run through discord.py's AutoShardedClient; 0: let Discord say how many.
    #: Unset: one connection, no sharding.
    shard_count: Annotated[int, Field(ge=0, le=1024)] | None = None
    #: Answer messages that mention the bot and direct messages (as well as slash commands).
    answer_mentions: bool = True
    #: Seconds to wait for Discord's READY before the front-end counts as failed (and retries).
    connect_timeout: Annotated[float, Field(gt=0, le=600)] = 60.0
    #: Only to point the bot at a local stand-in (see ``frontends/discord/standin.py``).
    api_base: str = DEFAULT_API_BASE
    gateway: str = DEFAULT_GATEWAY

    @field_validator("channels")
    @classmethod
    def _check_channels(cls, value: dict[str, int]) -> dict[str, int]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(
                    f"channel name {name!r} must be 1 to 64 lowercase letters, digits, '_' or "
                    "'-' (it is what rules write after 'discord:')"
                )
        return value

    @field_validator("roles")
    @classmethod
    def _check_roles(cls, value: dict[str, Role]) -> dict[str, Role]:
        for key in value:
            if not key.strip():
                raise ValueError("a Discord role in 'roles' must be a role id or a role name")
        return value

    @field_validator("api_base")
    @classmethod
    def _check_api_base(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
            raise ValueError(f"api_base must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("gateway")
    @classmethod
    def _check_gateway(cls, value: str) -> str:
        if not re.match(r"^wss?://[^/\s]+(/\S*)?$", value):
            raise ValueError(f"gateway must be a ws:// or wss:// URL, got {value!r}")
        return value
