"""Settings of the SMS front-end (``frontends: {sms: {...}}`` in hub.yaml)."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from hub.api import Duration

_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
#: E.164: a plus, a country code that does not start with 0, at most 15 digits in all.
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def check_phone(value: str) -> str:
    """Return ``value`` if it is an E.164 phone number (``+15551234567``), else raise."""
    if not isinstance(value, str) or not E164.match(value):
        raise ValueError(
            f"{value!r} is not a phone number in E.164 form: '+', the country code and the "
            "number, digits only (e.g. '+15551234567')"
        )
    return value


Phone = Annotated[str, BeforeValidator(check_phone)]


def _check_http_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an http:// or https:// URL with a host, got {value!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"{what} must not have a query or fragment, got {value!r}")
    if parts.username or parts.password:
        raise ValueError(f"{what} must not carry a user name or password")
    return value.rstrip("/")


class Settings(BaseModel):
    """How the hub reaches Twilio and how Twilio reaches the hub."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The Twilio account (``AC`` and 32 hex digits), from the Twilio console.
    account_sid: str
    #: The account's auth token (use ``!secret``): authenticates API calls and signs webhooks.
    auth_token: str = Field(min_length=1, repr=False)
    #: The Twilio phone number alerts are sent from (E.164).
    number: Phone
    #: The public base URL Twilio calls (e.g. ``https://hub.example.com``); the webhook paths
    #: ``/sms/inbound`` and ``/sms/status`` are appended. Signatures are checked against it.
    public_url: str
    #: Where the webhook server listens (``host:port``); put a TLS reverse proxy in front.
    listen: str = "127.0.0.1:8124"
    #: Twilio's API base URL; only set it to point at a stand-in (``hub demo``, tests).
    api_base: str | None = None
    #: Numbers that may text the hub besides the people's own (they reach the command layer,
    #: which answers someone it does not know with a refusal). Others get no answer at all.
    allow: tuple[Phone, ...] = ()
    #: Longest answer, in SMS segments (a segment is 153 GSM characters or 67 others).
    max_segments: int = Field(default=2, ge=1, le=10)
    #: Longest message accepted from a person, in characters (Twilio's own limit is 1600).
    max_text: int = Field(default=1600, ge=1, le=1600)
    #: At most ``flood_messages`` messages per number within ``flood_window``; more are dropped.
    flood_messages: int = Field(default=10, ge=1, le=1000)
    flood_window: Duration = Field(default=60.0, gt=0)
    #: How long a numbered choice ("1", "2") answers the last question asked.
    choice_timeout: Duration = Field(default=300.0, gt=0)
    #: How long a Twilio API call may take before the delivery counts as failed.
    api_timeout: Duration = Field(default=15.0, gt=0, le=120)

    @field_validator("account_sid")
    @classmethod
    def _check_sid(cls, value: str) -> str:
        if not _ACCOUNT_SID.match(value):
            raise ValueError(
                "account_sid must be 'AC' and 32 hexadecimal digits, as the Twilio console shows it"
            )
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        return _check_http_url(value, "public_url")

    @field_validator("api_base")
    @classmethod
    def _check_api_base(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value, "api_base")

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"listen must be 'host:port' (e.g. '127.0.0.1:8124'), got {value!r}")
        return value

    @property
    def listen_host(self) -> str:
        """The host part of ``listen`` (brackets of an IPv6 address removed)."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        """The port part of ``listen`` (0: any free port, for tests)."""
        return int(self.listen.rpartition(":")[2])
