"""The e-mail front-end: notifications as plain-text + HTML e-mail over SMTP (aiosmtplib)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import html
import re
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Annotated, Literal

import aiosmtplib
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hub.api import Delivery, DeliveryResult, DemoStandIn, Duration, Plugin, PluginContext

# A practical address check (RFC 5322 allows more, mail servers accept less): one @, no
# spaces, no control characters, a dotted or bracketed domain.
_ADDRESS = re.compile(r"^[^@\s\x00-\x1f\x7f<>(),;:\"\[\]\\]{1,64}@[A-Za-z0-9.\-]{1,253}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_MAX_SUBJECT = 200

DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
# Authentication required / too weak / credentials invalid / encryption required.
_LOGIN_CODES = frozenset({530, 534, 535, 538})


def check_address(value: str) -> str:
    """An e-mail address safe to put in a header, or ValueError saying why not."""
    value = value.strip()
    if not _ADDRESS.match(value) or ".." in value or value.endswith("."):
        raise ValueError(f"not a valid e-mail address: {value[:80]!r}")
    return value


def header_text(value: str, limit: int = _MAX_SUBJECT) -> str:
    """One line for a header: CR, LF and other control characters become spaces."""
    text = " ".join(_CONTROL.sub(" ", value).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class EmailSettings(BaseModel):
    """``frontends: {email: ...}`` in hub.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] | None = None  # default by security
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: str | None = None  # write `password: !secret smtp_password`
    from_address: str
    from_name: str = "Home hub"
    subject_prefix: str = ""
    timeout: Annotated[Duration, Field(gt=0, le=300)] = 15.0
    # Trust this CA file (e.g. a self-signed server certificate); verify_certificate: false
    # turns checking off altogether (only for a server on your own LAN).
    ca_file: str | None = None
    verify_certificate: bool = True
    # While the server refuses us, log in again this often to find out when it is back.
    check_interval: Annotated[Duration, Field(ge=1, le=86400)] = 60.0

    @field_validator("from_address")
    @classmethod
    def _from(cls, value: str) -> str:
        return check_address(value)

    @field_validator("from_name", "subject_prefix")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("must be one line of text (no line breaks or control characters)")
        return value

    @model_validator(mode="after")
    def _login_pair(self) -> EmailSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        return self

    @property
    def resolved_port(self) -> int:
        """The port to connect to."""
        return self.port or DEFAULT_PORTS[self.security]


class SendError(Exception):
    """Sending failed; ``service`` is True when the server (not the recipient) is at fault."""

    def __init__(self, message: str, *, service: bool) -> None:
        super().__init__(message)
        self.service = service


def build_message(delivery: Delivery, settings: EmailSettings) -> EmailMessage:
    """The e-mail for one delivery: multipart/alternative, plain text and escaped HTML."""
    to = check_address(delivery.address)
    message = EmailMessage()
    title = delivery.title or delivery.text.split("\n", 1)[0]
    message["Subject"] = header_text(f"{settings.subject_prefix}{title}")
    sender = Address(
        display_name=header_text(settings.from_name, 80), addr_spec=settings.from_address
    )
    message["From"] = sender
    message["To"] = Address(addr_spec=to)
    message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    message["Message-ID"] = make_msgid(domain=settings.from_address.rsplit("@", 1)[1])
    message["X-Hub-Delivery"] = header_text(delivery.id, 100)
    if delivery.urgent:
        message["Importance"] = "high"
        message["X-Priority"] = "1"
    lines = [delivery.text]
    if delivery.actions:
        lines.append("")
        lines.extend(
            f"- {action.label}: reply with “{action.command}”" for action in delivery.actions
        )
    message.set_content("\n".join(lines) + "\n")
    message.add_alternative(_html(delivery, title), subtype="html")
    return message


def _html(delivery: Delivery, title: str) -> str:
    # Everything from the notification is escaped: its text is data, never markup.
    paragraphs = "".join(
        f"<p>{html.escape(part).replace(chr(10), '<br>')}</p>"
        for part in delivery.text.split("\n\n")
        if part.strip()
    )
    actions = ""
    if delivery.actions:
        items = "".join(
            f"<li>{html.escape(a.label)}: reply with <code>{html.escape(a.command)}</code></li>"
            for a in delivery.actions
        )
        actions = f"<ul>{items}</ul>"
    colour = "#b00020" if delivery.urgent else "#222"
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
        f'<h2 style="color:{colour}">{html.escape(title)}</h2>{paragraphs}{actions}'
        "</body></html>\n"
    )


class EmailFrontend(Plugin):
    """Registers the ``email`` notification channel and sends through an SMTP server."""

    @classmethod
    def demo_standin(cls) -> DemoStandIn:
        """`hub demo` runs this front-end against a local stand-in of its service."""
        from frontends.email.demo import EmailDemo

        return EmailDemo()

    settings_model = EmailSettings

    def __init__(self, context: PluginContext, settings: EmailSettings) -> None:
        super().__init__(context, settings)
        self.settings: EmailSettings = settings
        self.healthy: bool | None = None  # None: not tried yet
        self.problem = ""
        self._wake = asyncio.Event()

    async def start(self) -> None:
        """Register the channel (the server is checked by ``run``, which keeps checking)."""
        self.context.register_channel("email", self)

    async def run(self) -> None:
        """Log in once now, and again every ``check_interval`` while the server refuses us."""
        while True:
            if self.healthy is not True:
                try:
                    await self._check()
                except SendError as exc:
                    self._unhealthy(str(exc))
                else:
                    self._healthy()
            self._wake.clear()
            interval = self.settings.check_interval
            # Healthy: nothing to do until a send fails (which wakes us). Unhealthy: retry.
            timeout = None if self.healthy else interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def deliver(self, delivery: Delivery) -> DeliveryResult:
        """Send one delivery; never raises (ok=False with the reason)."""
        try:
            message = build_message(delivery, self.settings)
        except ValueError as exc:
            return DeliveryResult(False, f"not sent: {exc}")
        try:
            await self._session(message)
        except SendError as exc:
            if exc.service:
                self._unhealthy(str(exc))
            return DeliveryResult(False, str(exc))
        self._healthy()
        return DeliveryResult(True, "sent", external_id=str(message["Message-ID"]).strip("<>"))

    # ----- SMTP --------------------------------------------------------------------------------

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        context: ssl.SSLContext | None = None
        if s.security != "none":
            context = ssl.create_default_context(cafile=s.ca_file)
            if not s.verify_certificate:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        return aiosmtplib.SMTP(
            hostname=s.host,
            port=s.resolved_port,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            tls_context=context,
            timeout=s.timeout,
        )

    @property
    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.resolved_port}"

    async def _session(self, message: EmailMessage | None) -> None:
        """Connect, log in, and send ``message`` if given; SendError saying what went wrong."""
        s = self.settings
        client = self._client()
        try:
            await client.connect()
            if s.username is not None and s.password is not None:
                await client.login(s.username, s.password)
            if message is not None:
                await client.send_message(message)
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise SendError(
                f"SMTP login refused for user {s.username!r} by {self._where}: "
                f"{exc.code} {exc.message}",
                service=True,
            ) from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            raise SendError(
                f"recipient refused by {self._where}: {refused}", service=False
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            # A permanent refusal is about this message, except those about our login.
            service = exc.code < 500 or exc.code in _LOGIN_CODES
            raise SendError(
                f"{self._where} answered {exc.code} {exc.message}", service=service
            ) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            cause = exc.__cause__ or exc.__context__
            reason = str(exc).rstrip(": ") or type(exc).__name__
            if cause is not None and str(cause) and str(cause) not in reason:
                reason = f"{reason} ({cause})"
            raise SendError(
                f"cannot reach the SMTP server {self._where}: {reason}", service=True
            ) from exc
        finally:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    client.close()

    async def _check(self) -> None:
        await self._session(None)

    # ----- health ------------------------------------------------------------------------------

    def _unhealthy(self, problem: str) -> None:
        if self.healthy is not False or problem != self.problem:
            self.context.logger.error("e-mail: %s", problem)
        self.healthy, self.problem = False, problem
        self.context.report_health(False, problem)
        self._wake.set()

    def _healthy(self) -> None:
        if self.healthy is False:
            self.context.logger.info("e-mail: %s accepts us again", self._where)
        if self.healthy is not True:
            self.context.report_health(True)
        self.healthy, self.problem = True, ""
