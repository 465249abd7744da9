"""The SMS front-end: Twilio's webhooks served by the hub, alerts sent through Twilio's API.

Inbound: Twilio POSTs each text to ``<public_url>/sms/inbound``. The request must carry a
valid ``X-Twilio-Signature`` for the public URL Twilio called (not the local one: behind a
reverse proxy they differ) and the form it sent; anything unsigned or forged gets 403 and
never reaches the command layer. Numbers that are neither a person's nor on ``allow`` get
no answer at all (every answer is an SMS someone pays for, and a refusal to a forged or
random number is exactly what SMS-pumping abuse wants). The text goes to the command layer
as a :class:`~hub.conversation.Request`; the reply comes back as TwiML, cut to
``max_segments``. A reply of just a number picks one of the choices of the last question.

Outbound: a notification channel named ``sms`` sends each delivery through Twilio's REST
client, asking Twilio to report what became of it at ``<public_url>/sms/status``; those
callbacks are signed too and recorded with the notification router.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

import aiohttp
import uvicorn
from litestar import Litestar, post
from litestar import Request as HttpRequest
from litestar import Response as HttpResponse
from litestar.exceptions import HTTPException
from twilio.base.exceptions import TwilioException, TwilioRestException  # type: ignore[import-untyped]
from twilio.http.async_http_client import AsyncTwilioHttpClient  # type: ignore[import-untyped]
from twilio.request_validator import (  # type: ignore[import-untyped]
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)
from twilio.rest import Client  # type: ignore[import-untyped]
from twilio.twiml.messaging_response import MessagingResponse  # type: ignore[import-untyped]

from frontends.sms.segments import fit
from frontends.sms.settings import E164, Settings
from hub.api import (
    Delivery,
    DeliveryResult,
    DemoStandIn,
    Identity,
    IdentityKind,
    Plugin,
    PluginContext,
    Reply,
    ReplyStatus,
    Request,
    normalise_address,
)

INBOUND_PATH = "/sms/inbound"
STATUS_PATH = "/sms/status"
#: Largest webhook body accepted: a 1600-character text of 4-byte characters, percent-encoded,
#: plus Twilio's other fields, fits well within it.
MAX_BODY = 32 * 1024
MAX_FIELDS = 100  # Twilio sends about 20 (more with media: MediaUrl0..9, MediaContentType0..9)
_FORM_TYPE = "application/x-www-form-urlencoded"
_MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")
_CHOICE = re.compile(r"^\s*(\d{1,2})\s*[.)]?\s*$")
_STATUSES = frozenset(
    {
        "accepted", "scheduled", "queued", "sending", "sent", "delivered", "undelivered",
        "failed", "read", "canceled", "receiving", "received", "partially_delivered",
    }
)  # fmt: skip
_FAILED_STATUSES = frozenset({"undelivered", "failed", "canceled"})
_SEEN_LIMIT = 2000  # message SIDs remembered against replays and Twilio's retries
_TWIML = "application/xml"
# Characters XML 1.0 cannot carry at all (C0 controls other than tab and line breaks, lone
# surrogates, U+FFFE/U+FFFF): an echoed control character must not break the TwiML.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_AUDITS_PER_MINUTE = 30  # refused requests are counted always, audited up to this
_AUTH_CODES = frozenset({20003, 20005, 20006})  # authenticate; account suspended; not active

_LOGGER = logging.getLogger(__name__)


class SmsError(Exception):
    """The SMS front-end cannot work (bad credentials, Twilio unreachable, port taken)."""


@dataclass(frozen=True, slots=True)
class StatusReport:
    """One status callback Twilio made about a message the hub sent."""

    delivery_id: str
    message_sid: str
    status: str
    error_code: str | None
    ok: bool


class _Rejected(Exception):
    """A webhook request that is refused: HTTP status, reason kind and a reason for the log."""

    def __init__(self, status: int, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.kind = kind
        self.reason = reason


class _Form(dict[str, str]):
    """Form fields (the first value of each), with every value for the signature check."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        super().__init__()
        self._all: dict[str, list[str]] = {}
        for name, value in pairs:
            self._all.setdefault(name, []).append(value)
            self.setdefault(name, value)

    def getall(self, name: str) -> list[str]:
        """Every value of ``name`` (RequestValidator signs repeated fields value by value)."""
        return self._all[name]


_Handler = Callable[[HttpRequest[Any, Any, Any], _Form], Awaitable[HttpResponse[str]]]


class _TwilioHttp(AsyncTwilioHttpClient):  # type: ignore[misc]
    """twilio's own aiohttp client, sending the credentials as an Authorization header.

    twilio builds an ``aiohttp.BasicAuth`` from them, which aiohttp 3.14 deprecates (and 4.0
    drops); the header is what BasicAuth would have sent.
    """

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Any:
        """Send one API request (``auth`` as a basic Authorization header)."""
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            headers = {**(headers or {}), "Authorization": f"Basic {token}"}
        return await super().request(
            method, url, params, data, headers, None, timeout, allow_redirects
        )


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the hub's event loop: the hub, not uvicorn, owns SIGINT and SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's own handlers would replace the hub's and re-raise the signal after its
        # shutdown; this version of uvicorn has no setting to leave them alone.
        yield


def twiml(text: str) -> str:
    """A TwiML answer with one message (none for an empty text: Twilio then sends nothing)."""
    response = MessagingResponse()
    if text:
        response.message(text)  # the builder escapes &, < and > in the text
    return str(response)


def clean(text: str) -> str:
    """``text`` without the characters XML cannot carry."""
    return _NOT_XML.sub("", text)


class SmsFrontend(Plugin):
    """People text the hub through Twilio; alerts reach them the same way."""

    @classmethod
    def demo_standin(cls) -> DemoStandIn:
        """`hub demo` runs this front-end against a local stand-in of its service."""
        from frontends.sms.demo import SmsDemo

        return SmsDemo()

    settings_model = Settings

    def __init__(self, context: PluginContext, settings: Settings) -> None:
        super().__init__(context, settings)
        self.settings: Settings = settings
        self.port: int | None = None  # the webhook server's port once listening
        self.reports: deque[StatusReport] = deque(maxlen=200)  # recent status callbacks
        self._validator = RequestValidator(settings.auth_token)
        self._http: _TwilioHttp | None = None
        self._client: Client | None = None
        self._server: _EmbeddedServer | None = None
        self._serving: asyncio.Task[None] | None = None
        self._failure: asyncio.Future[str] | None = None
        self._allowed_extra = frozenset(settings.allow)
        self._recent: dict[str, deque[float]] = {}  # number -> times of its recent messages
        self._choices: dict[str, tuple[float, tuple[str, ...]]] = {}  # number -> (until, commands)
        self._seen: OrderedDict[str, str | None] = OrderedDict()  # sid -> TwiML sent for it
        self._audited: dict[str, tuple[float, int]] = {}  # kind -> (window start, count)

    # ----- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the credentials with Twilio, serve the webhooks, register the sms channel."""
        loop = asyncio.get_running_loop()
        self._failure = loop.create_future()
        # The async HTTP client (aiohttp) runs in the hub's loop: no thread per message, and
        # a slow Twilio never blocks the loop.
        self._http = _TwilioHttp()
        self._client = Client(
            self.settings.account_sid, self.settings.auth_token, http_client=self._http
        )
        if self.settings.api_base is not None:
            # Every API domain is a Domain whose base_url prefixes each request; the Api
            # domain (api.twilio.com) is the only one this front-end uses.
            self._client.api.base_url = self.settings.api_base
        await self._check_credentials()
        await self._serve()
        self.context.register_channel("sms", self)
        self.context.logger.info(
            "SMS: webhooks at %s%s and %s%s (listening on %s:%s); alerts from %s",
            self.settings.public_url,
            INBOUND_PATH,
            self.settings.public_url,
            STATUS_PATH,
            self.settings.listen_host,
            self.port,
            self.settings.number,
        )

    async def run(self) -> None:
        """Serve until the webhook server ends or Twilio rejects the credentials."""
        assert self._failure is not None
        assert self._serving is not None
        done, _ = await asyncio.wait(
            (self._failure, self._serving), return_when=asyncio.FIRST_COMPLETED
        )
        if self._failure in done:
            raise SmsError(self._failure.result())
        raise SmsError("the webhook server stopped")

    async def stop(self) -> None:
        """Stop the webhook server and close the HTTP client."""
        server, serving = self._server, self._serving
        if server is not None and serving is not None:
            server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(serving), 5)
            except TimeoutError:
                server.force_exit = True
                serving.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await serving
            except Exception as exc:  # run() has reported it already
                self.context.logger.debug("the SMS webhook server ended with %r", exc)
        self._server = self._serving = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _check_credentials(self) -> None:
        assert self._client is not None
        sid = self.settings.account_sid
        try:
            async with asyncio.timeout(self.settings.api_timeout):
                await self._client.api.v2010.accounts(sid).fetch_async()
        except TwilioRestException as exc:
            if exc.status in (401, 403) or exc.code in _AUTH_CODES:
                raise SmsError(
                    f"Twilio rejected account_sid {sid} with this auth_token: {_describe(exc)}; "
                    "check both in the Twilio console"
                ) from exc
            raise SmsError(f"Twilio would not confirm the account: {_describe(exc)}") from exc
        except TimeoutError as exc:
            raise SmsError(
                f"Twilio at {self._api_base} did not answer within {self.settings.api_timeout:g} s"
            ) from exc
        except (aiohttp.ClientError, OSError, TwilioException, ValueError) as exc:
            raise SmsError(f"cannot reach Twilio at {self._api_base}: {exc}") from exc

    @property
    def _api_base(self) -> str:
        return self.settings.api_base or "https://api.twilio.com"

    async def _serve(self) -> None:
        host, port = self.settings.listen_host, self.settings.listen_port
        loop = asyncio.get_running_loop()
        try:
            found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            # Bound here rather than by uvicorn: a taken port is a clear error, not uvicorn's
            # sys.exit(), and port 0 (tests) tells us the port it got.
            sock = socket.create_server((host, port), family=found[0][0])
        except OSError as exc:
            raise SmsError(f"cannot listen on {self.settings.listen} for webhooks: {exc}") from exc
        self.port = sock.getsockname()[1]
        try:
            config = uvicorn.Config(
                self._app(),
                lifespan="off",
                log_config=None,  # the hub configures logging; uvicorn must not reconfigure it
                access_log=False,
                server_header=False,
                proxy_headers=False,  # the signature, not a forwarded header, says who called
                limit_concurrency=64,
                timeout_graceful_shutdown=3,
            )
        except Exception:
            sock.close()
            raise
        self._server = server = _EmbeddedServer(config)

        async def serve() -> None:
            try:
                await server.serve(sockets=[sock])
            except SystemExit as exc:  # uvicorn exits on start-up errors; the hub must not
                raise SmsError(f"the webhook server failed to start (exit {exc.code})") from None
            finally:
                sock.close()

        self._serving = loop.create_task(serve(), name="sms webhooks")
        while not server.started:
            if self._serving.done():
                self._serving.result()  # raises why it stopped
                raise SmsError("the webhook server stopped while starting")
            await asyncio.sleep(0.01)

    def _app(self) -> Litestar:
        @post(INBOUND_PATH, status_code=200)
        async def inbound(request: HttpRequest[Any, Any, Any]) -> HttpResponse[str]:
            return await self._guarded(request, INBOUND_PATH, self._inbound)

        @post(STATUS_PATH, status_code=200)
        async def status(request: HttpRequest[Any, Any, Any]) -> HttpResponse[str]:
            return await self._guarded(request, STATUS_PATH, self._status)

        return Litestar(
            route_handlers=[inbound, status],
            request_max_body_size=MAX_BODY,
            openapi_config=None,
            logging_config=None,
            debug=False,
        )

    # ----- webhooks ---------------------------------------------------------------------------

    async def _guarded(
        self, request: HttpRequest[Any, Any, Any], path: str, handler: _Handler
    ) -> HttpResponse[str]:
        try:
            form = await self._verified_form(request, path)
            return await handler(request, form)
        except _Rejected as exc:
            client = request.client.host if request.client else "?"
            self._refused(path, exc.kind, f"{exc.reason} (from {client})")
            # A forger learns nothing (not even the URL the hub expects); the log says it all.
            answer = "not signed by Twilio for this hub" if exc.status == 403 else exc.reason
            return HttpResponse(
                answer, status_code=exc.status, media_type="text/plain; charset=utf-8"
            )
        except HTTPException:
            raise  # Litestar's own answers
        except Exception:
            self.context.logger.exception("SMS webhook %s failed", path)
            return HttpResponse(
                "internal error", status_code=500, media_type="text/plain; charset=utf-8"
            )

    def _refused(self, path: str, kind: str, reason: str, sender: str = "") -> None:
        """Count, log and audit a refused webhook request (audited at most 30 a minute a kind)."""
        self.context.reject(path.lstrip("/"), f"{sender} {reason}".strip(), kind=kind)
        now = time.monotonic()
        start, count = self._audited.get(kind, (now, 0))
        if now - start > 60:
            start, count = now, 0
        self._audited[kind] = (start, count + 1)
        if count < _AUDITS_PER_MINUTE:
            self.context.audit(kind, "refused", reason, target=sender, params={"path": path})

    async def _verified_form(self, request: HttpRequest[Any, Any, Any], path: str) -> _Form:
        """The request's form, once its type, size, encoding and Twilio signature check out."""
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != _FORM_TYPE:
            raise _Rejected(415, "sms_malformed", f"Content-Type must be {_FORM_TYPE}")
        try:
            raw = await request.body()
        except HTTPException as exc:  # Litestar stops reading beyond MAX_BODY
            if exc.status_code != 413:
                raise
            raise _Rejected(413, "sms_malformed", f"the body is over {MAX_BODY} bytes") from None
        try:
            pairs = parse_qsl(
                raw.decode("utf-8"),
                keep_blank_values=True,
                strict_parsing=False,
                max_num_fields=MAX_FIELDS,
            )
        except UnicodeDecodeError:
            raise _Rejected(400, "sms_malformed", "the form is not UTF-8") from None
        except ValueError:
            raise _Rejected(400, "sms_malformed", f"more than {MAX_FIELDS} form fields") from None
        form = _Form(pairs)
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            raise _Rejected(403, "sms_unsigned", f"no {SIGNATURE_HEADER} header")
        query = request.scope.get("query_string", b"").decode("latin-1")
        # Twilio signs the URL it called: the public one, whatever the proxy made of it.
        url = f"{self.settings.public_url}{path}" + (f"?{query}" if query else "")
        algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
        if not self._validator.validate(url, form, signature, algorithm):
            raise _Rejected(403, "sms_forged", f"{SIGNATURE_HEADER} does not match {url}")
        if form.get("AccountSid") != self.settings.account_sid:
            raise _Rejected(403, "sms_forged", "signed for another Twilio account")
        return form

    async def _inbound(self, request: HttpRequest[Any, Any, Any], form: _Form) -> HttpResponse[str]:
        sid = form.get("MessageSid") or form.get("SmsSid") or ""
        if not _MESSAGE_SID.match(sid):
            raise _Rejected(400, "sms_malformed", "MessageSid is missing or malformed")
        sender = normalise_address(IdentityKind.PHONE, form.get("From", ""))
        if not E164.match(sender):
            raise _Rejected(400, "sms_malformed", "From is not a phone number")
        body = form.get("Body")
        if body is None:
            raise _Rejected(400, "sms_malformed", "Body is missing")
        if sid in self._seen:
            # A replayed or retried request: answer as before, never run a command twice.
            self._refused(INBOUND_PATH, "sms_replay", f"message {sid} again", sender)
            return _twiml_response(self._seen[sid] or twiml(""))
        self._remember(sid, None)
        if not self._allowed(sender):
            self._refused(INBOUND_PATH, "sms_not_allowed", "not on the allow-list", sender)
            return self._answer(sid, "")
        if self._flooding(sender):
            limit = f"over {self.settings.flood_messages} texts in {self.settings.flood_window:g} s"
            self._refused(INBOUND_PATH, "sms_flood", limit, sender)
            return self._answer(sid, "")
        reply = await self._handle(sender, body, to=form.get("To"))
        return self._answer(sid, self.render(reply, sender))

    async def _handle(self, sender: str, body: str, *, to: str | None) -> Reply:
        if len(body) > self.settings.max_text:
            self._choices.pop(sender, None)
            reason = f"a text of {len(body)} characters (at most {self.settings.max_text})"
            self._refused(INBOUND_PATH, "sms_too_long", reason, sender)
            return Reply(
                ReplyStatus.INVALID,
                f"That message is too long ({len(body)} characters); "
                f"send at most {self.settings.max_text}.",
            )
        text = self._choice(sender, body)
        request = Request(
            frontend="sms",
            sender=Identity(IdentityKind.PHONE, sender),
            text=text,
            channel=to,
        )
        return await self.context.conversation.handle(request)

    def render(self, reply: Reply, sender: str | None = None) -> str:
        """The reply as one SMS text; remembers its choices for ``sender``'s next message."""
        head = "\n".join(
            [clean(reply.text), *(clean(f"{f.name}: {f.value}") for f in reply.fields)]
        ).strip()
        tail = "\n".join(f"{n}. {clean(c.label)}" for n, c in enumerate(reply.choices, 1))
        if sender is not None:
            if reply.choices:
                until = time.monotonic() + self.settings.choice_timeout
                self._choices[sender] = (until, tuple(c.command for c in reply.choices))
            else:
                self._choices.pop(sender, None)
        return fit(head, tail, self.settings.max_segments)

    def _answer(self, sid: str, text: str) -> HttpResponse[str]:
        document = twiml(text)
        self._remember(sid, document)
        return _twiml_response(document)

    def _remember(self, sid: str, document: str | None) -> None:
        self._seen[sid] = document
        self._seen.move_to_end(sid)
        while len(self._seen) > _SEEN_LIMIT:
            self._seen.popitem(last=False)

    def _allowed(self, number: str) -> bool:
        if number in self._allowed_extra:
            return True
        person = self.context.conversation.person_for(Identity(IdentityKind.PHONE, number))
        return person is not None

    def _flooding(self, number: str) -> bool:
        """Count a message from ``number``; True if it is over the flood limit."""
        now = time.monotonic()
        window = self.settings.flood_window
        if len(self._recent) > 1000:  # forget numbers that have been quiet for a window
            for stale in [n for n, times in self._recent.items() if now - times[-1] > window]:
                del self._recent[stale]
        times = self._recent.setdefault(number, deque())
        while times and now - times[0] > window:
            times.popleft()
        times.append(now)
        return len(times) > self.settings.flood_messages

    def _choice(self, number: str, body: str) -> str:
        """``body``, or the command of the choice it picks from the last question asked."""
        match = _CHOICE.match(body)
        pending = self._choices.get(number)
        if match is None or pending is None:
            return body
        until, commands = pending
        index = int(match.group(1))
        if time.monotonic() > until or not 1 <= index <= len(commands):
            return body
        return commands[index - 1]

    async def _status(self, request: HttpRequest[Any, Any, Any], form: _Form) -> HttpResponse[str]:
        sid = form.get("MessageSid") or form.get("SmsSid") or ""
        if not _MESSAGE_SID.match(sid):
            raise _Rejected(400, "sms_malformed", "MessageSid is missing or malformed")
        status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
        if status not in _STATUSES:
            raise _Rejected(400, "sms_malformed", f"unknown MessageStatus {status[:40]!r}")
        error = form.get("ErrorCode") or None
        key = f"{sid}/{status}"
        if key in self._seen:
            return HttpResponse("", status_code=204)
        self._remember(key, "")
        delivery_id = request.query_params.get("delivery", "")[:255] or sid
        ok = status not in _FAILED_STATUSES
        detail = status + (f" (Twilio error {error[:12]})" if error else "")
        self.reports.append(StatusReport(delivery_id, sid, status, error, ok))
        try:
            self.context.delivery_status(delivery_id, ok, detail)
        except NotImplementedError:
            self.context.logger.warning(
                "SMS %s: %s (the notification router cannot record statuses yet)", sid, detail
            )
        return HttpResponse("", status_code=204)

    # ----- outbound ---------------------------------------------------------------------------

    async def deliver(self, delivery: Delivery) -> DeliveryResult:
        """Send one delivery as an SMS; a failure is returned, never raised."""
        if self._client is None:
            return DeliveryResult(False, "the SMS front-end is not started")
        to = normalise_address(IdentityKind.PHONE, delivery.address.removeprefix("sms:"))
        if not E164.match(to):
            return DeliveryResult(False, f"{delivery.address!r} is not an E.164 phone number")
        text = clean(delivery.text)
        title = clean(delivery.title)
        head = f"{title}: {text}" if title and title not in text else text
        body = fit(head, "", self.settings.max_segments)
        if not body:
            return DeliveryResult(False, "nothing to send: the delivery has no text")
        callback = f"{self.settings.public_url}{STATUS_PATH}?delivery={quote(delivery.id, safe='')}"
        try:
            async with asyncio.timeout(self.settings.api_timeout):
                message = await self._client.messages.create_async(
                    to=to, from_=self.settings.number, body=body, status_callback=callback
                )
        except TwilioRestException as exc:
            detail = _describe(exc)
            if exc.status == 401 or exc.code in _AUTH_CODES:
                self._fail(f"Twilio rejected the credentials while sending: {detail}")
            return DeliveryResult(False, detail)
        except TimeoutError:
            return DeliveryResult(
                False, f"Twilio did not answer within {self.settings.api_timeout:g} s"
            )
        except (aiohttp.ClientError, OSError, TwilioException, ValueError) as exc:
            return DeliveryResult(False, f"cannot reach Twilio at {self._api_base}: {exc}")
        return DeliveryResult(True, f"accepted by Twilio ({message.status})", message.sid)

    def _fail(self, message: str) -> None:
        """Mark the front-end broken: run() raises, the supervisor restarts it with back-off."""
        if self._failure is not None and not self._failure.done():
            self._failure.set_result(message)


def _twiml_response(document: str) -> HttpResponse[str]:
    return HttpResponse(document, status_code=200, media_type=_TWIML)


def _describe(exc: TwilioRestException) -> str:
    """A one-line account of a Twilio API error (its __str__ may add terminal colours)."""
    return f"Twilio error {exc.code} (HTTP {exc.status}): {exc.msg}"
