"""A local stand-in for Twilio, for tests and ``hub demo``: the REST API part and the webhooks.

It speaks the part of Twilio's wire protocol the SMS front-end uses, on loopback:

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with HTTP basic auth (account SID
  and auth token) and Twilio's form fields; answers 201 with Twilio's message JSON, or
  Twilio's error JSON (401 / 20003 for bad credentials, 400 / 21211 for a malformed ``To``,
  21614 for a number in ``invalid`` (not a mobile number), 21606
  for a ``From`` that is not the account's, 21602 / 21617 for a missing or too long body).
- ``GET /2010-04-01/Accounts/{AccountSid}.json``: the account, to check credentials.
- After a message is accepted it calls the message's ``StatusCallback`` with ``sent`` and then
  ``delivered`` (``undelivered`` with error 30003 for numbers in ``unreachable``), each signed
  with the auth token as Twilio signs them.
- :meth:`TwilioStandin.text_hub` plays an inbound SMS to the hub's webhook, signed for the
  public URL Twilio would call, and returns the messages of the TwiML the hub answered.

Run it alone with ``python -m frontends.sms.standin --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import re
import socket
import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BasicAuth, ClientError, ClientSession, ClientTimeout, web
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

DEMO_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
DEMO_AUTH_TOKEN = "standin-auth-token"  # noqa: S105 - the stand-in's own, not a secret
DEMO_NUMBER = "+15557654321"
API_VERSION = "2010-04-01"
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_MESSAGES = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
_ACCOUNT = re.compile(r"^/2010-04-01/Accounts/([^/]+)\.json$")


@dataclass
class SentMessage:
    """A message the hub asked Twilio to send."""

    sid: str
    to: str
    from_: str
    body: str
    status_callback: str | None
    statuses: list[str] = field(default_factory=list)  # statuses reported by callback


@dataclass(frozen=True)
class Callback:
    """A status callback the stand-in made, and what the hub answered."""

    url: str
    params: Mapping[str, str]
    http_status: int


@dataclass(frozen=True)
class HubAnswer:
    """What the hub answered a webhook: HTTP status, body, and the TwiML messages in it."""

    status: int
    text: str
    messages: tuple[str, ...]

    @property
    def message(self) -> str:
        """The messages joined by line breaks ('' for none)."""
        return "\n".join(self.messages)


def twiml_messages(document: str) -> tuple[str, ...]:
    """The texts of the ``<Message>`` elements of a TwiML ``<Response>``."""
    root = ET.fromstring(document)  # noqa: S314 - the hub's own answer, on loopback
    if root.tag != "Response":
        raise ValueError(f"TwiML must be a <Response>, got <{root.tag}>")
    texts = []
    for element in root.iter("Message"):
        body = element.find("Body")
        texts.append((body.text if body is not None else element.text) or "")
    return tuple(texts)


def _error(status: int, code: int, message: str) -> web.Response:
    # Twilio's legacy error document, which the twilio library turns into TwilioRestException.
    payload = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if status == 401 else None
    return web.json_response(payload, status=status, headers=headers)


class TwilioStandin:
    """Twilio's Messages API and webhooks, on a loopback port."""

    def __init__(
        self,
        account_sid: str = DEMO_ACCOUNT_SID,
        auth_token: str = DEMO_AUTH_TOKEN,
        numbers: tuple[str, ...] = (DEMO_NUMBER,),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        unreachable: frozenset[str] = frozenset(),
        invalid: frozenset[str] = frozenset(),
        callback_delay: float = 0.05,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.numbers = numbers
        self.unreachable = unreachable
        self.invalid = invalid
        self.callback_delay = callback_delay
        self.sent: list[SentMessage] = []
        self.callbacks: list[Callback] = []
        self.rejected: list[tuple[int, int]] = []  # (HTTP status, Twilio code) of refused calls
        #: The reverse proxy in front of the hub: a public URL prefix -> where it really goes.
        #: Requests are signed for the public URL and sent to the other.
        self.routes: dict[str, str] = {}
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The API base URL (the SMS front-end's ``api_base``)."""
        return f"http://{self._host}:{self._port}"

    def sign(self, url: str, params: Mapping[str, str]) -> str:
        """The ``X-Twilio-Signature`` Twilio would send for ``params`` posted to ``url``."""
        return str(RequestValidator(self.auth_token).compute_signature(url, dict(params)))

    # ----- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on the loopback port (a free one if 0)."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.create_server((self._host, self._port))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self._session = ClientSession(timeout=ClientTimeout(total=20))

    async def stop(self) -> None:
        """Finish pending callbacks quickly and close."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> TwilioStandin:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def settled(self, timeout: float = 5.0) -> None:
        """Wait until every status callback scheduled so far has been made."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ----- the REST API -----------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if request.method == "POST" and (match := _MESSAGES.match(path)):
            return await self._create_message(request, match.group(1))
        if request.method == "GET" and (match := _ACCOUNT.match(path)):
            return self._fetch_account(request, match.group(1))
        return _error(404, 20404, f"The requested resource {path} was not found")

    def _authenticated(self, request: web.Request, account_sid: str) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        try:
            auth = BasicAuth.decode(header)
        except ValueError:
            auth = None
        if (
            auth is None
            or auth.login != self.account_sid
            or auth.password != self.auth_token
            or account_sid != self.account_sid
        ):
            self.rejected.append((401, 20003))
            return _error(401, 20003, "Authenticate")
        return None

    def _fetch_account(self, request: web.Request, account_sid: str) -> web.Response:
        refused = self._authenticated(request, account_sid)
        if refused is not None:
            return refused
        now = email.utils.formatdate(usegmt=True)
        return web.json_response(
            {
                "sid": self.account_sid,
                "owner_account_sid": self.account_sid,
                "friendly_name": "Stand-in account",
                "status": "active",
                "type": "Full",
                "date_created": now,
                "date_updated": now,
                "uri": f"/{API_VERSION}/Accounts/{self.account_sid}.json",
                "subresource_uris": {},
            }
        )

    async def _create_message(self, request: web.Request, account_sid: str) -> web.Response:
        refused = self._authenticated(request, account_sid)
        if refused is not None:
            return refused
        form = await request.post()
        to, from_ = str(form.get("To", "")), str(form.get("From", ""))
        body, callback = str(form.get("Body", "")), form.get("StatusCallback")
        problem: tuple[int, str] | None = None
        if not to:
            problem = (21604, "A 'To' phone number is required.")
        elif not _E164.match(to):
            problem = (21211, f"The 'To' number {to} is not a valid phone number.")
        elif to in self.invalid:
            problem = (21614, f"'To' number {to} is not a valid mobile number")
        elif from_ not in self.numbers:
            problem = (
                21606,
                f"The From phone number {from_} is not a valid, SMS-capable inbound phone "
                "number or short code for your account.",
            )
        elif not body:
            problem = (21602, "Message body is required.")
        elif len(body) > 1600:
            problem = (21617, "The concatenated message body exceeds the 1600 character limit.")
        if problem is not None:
            self.rejected.append((400, problem[0]))
            return _error(400, *problem)
        message = SentMessage(
            sid="SM" + uuid.uuid4().hex,
            to=to,
            from_=from_,
            body=body,
            status_callback=str(callback) if callback else None,
        )
        self.sent.append(message)
        if message.status_callback:
            task = asyncio.get_running_loop().create_task(self._report(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response(self._message_json(message, "queued"), status=201)

    def _message_json(self, message: SentMessage, status: str) -> dict[str, Any]:
        now = email.utils.formatdate(usegmt=True)
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{message.sid}.json"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": message.body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": message.from_,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": message.sid,
            "status": status,
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": message.to,
            "uri": uri,
        }

    async def _report(self, message: SentMessage) -> None:
        final = "undelivered" if message.to in self.unreachable else "delivered"
        for status in ("sent", final):
            await asyncio.sleep(self.callback_delay)
            params = {
                "AccountSid": self.account_sid,
                "ApiVersion": API_VERSION,
                "From": message.from_,
                "To": message.to,
                "MessageSid": message.sid,
                "SmsSid": message.sid,
                "MessageStatus": status,
                "SmsStatus": status,
            }
            if status == "undelivered":
                params["ErrorCode"] = "30003"  # unreachable destination handset
            assert message.status_callback is not None
            answer = await self.post(message.status_callback, params)
            message.statuses.append(status)
            self.callbacks.append(Callback(message.status_callback, params, answer.status))

    # ----- webhooks to the hub ----------------------------------------------------------------

    async def post(
        self,
        url: str,
        params: Mapping[str, str],
        *,
        signed_url: str | None = None,
        signature: str | None = "",
        headers: Mapping[str, str] | None = None,
        raw: bytes | None = None,
    ) -> HubAnswer:
        """POST a form to ``url`` (through :attr:`routes`), signed like Twilio signs it.

        The signature is for ``signed_url`` (default: ``url``, as Twilio does).

        ``signature=None`` sends none; another text sends that text instead of the real one;
        ``raw`` sends those bytes as the body (still signed over ``params``).
        """
        if self._session is None:
            raise RuntimeError("the stand-in is not started")
        sent_headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature == "":
            signature = self.sign(signed_url or url, params)
        url = self.route(url)
        if signature is not None:
            sent_headers["X-Twilio-Signature"] = signature
        sent_headers.update(headers or {})
        data: Any = raw if raw is not None else dict(params)
        try:
            async with self._session.post(url, data=data, headers=sent_headers) as response:
                text = await response.text()
                status = response.status
        except ClientError as exc:
            return HubAnswer(0, f"cannot reach {url}: {exc}", ())
        messages: tuple[str, ...] = ()
        if status == 200 and text.lstrip().startswith("<?xml"):
            messages = twiml_messages(text)
        return HubAnswer(status, text, messages)

    def route(self, url: str) -> str:
        """Where a request for ``url`` really goes (see :attr:`routes`)."""
        for public, local in self.routes.items():
            if url == public or url.startswith(public.rstrip("/") + "/"):
                return local.rstrip("/") + url[len(public.rstrip("/")) :]
        return url

    def inbound_params(
        self, from_: str, body: str, *, to: str | None = None, sid: str | None = None
    ) -> dict[str, str]:
        """The form Twilio posts for an incoming SMS."""
        sid = sid or "SM" + uuid.uuid4().hex
        return {
            "ToCountry": "US",
            "ToState": "CA",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "ToCity": "",
            "FromZip": "",
            "SmsSid": sid,
            "FromState": "",
            "SmsStatus": "received",
            "FromCity": "",
            "Body": body,
            "FromCountry": "US",
            "To": to or self.numbers[0],
            "ToZip": "",
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "ApiVersion": API_VERSION,
        }

    async def text_hub(
        self, url: str, from_: str, body: str, *, signed_url: str | None = None
    ) -> HubAnswer:
        """Play an SMS from ``from_`` to the hub's webhook at ``url``, signed like Twilio.

        ``url`` is the public URL Twilio was told to call; :attr:`routes` say where it really
        goes (behind a reverse proxy that is not the address Twilio signs).
        """
        return await self.post(url, self.inbound_params(from_, body), signed_url=signed_url)


def demo_settings(standin: TwilioStandin, listen: str = "127.0.0.1:8124") -> dict[str, Any]:
    """The ``frontends: sms:`` settings for a hub that talks to ``standin`` (``hub demo``).

    The public URL is the hub's own address: with no proxy in between, Twilio (the stand-in)
    calls the hub directly.
    """
    return {
        "account_sid": standin.account_sid,
        "auth_token": standin.auth_token,
        "number": standin.numbers[0],
        "public_url": f"http://{listen}",
        "listen": listen,
        "api_base": standin.url,
    }


async def _main(args: argparse.Namespace) -> None:
    async with TwilioStandin(
        args.account_sid, args.auth_token, (args.number,), port=args.port
    ) as standin:
        public = args.public_url.rstrip("/")
        standin.routes[public] = args.hub
        print(f"Twilio stand-in at {standin.url} (account {standin.account_sid})")
        print(f"texts go to {public}/sms/inbound, which is {args.hub}/sms/inbound")
        print("type 'NUMBER TEXT', e.g. '+15550000001 status of the kitchen'")
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            sender, _, text = line.strip().partition(" ")
            if sender:
                answer = await standin.text_hub(f"{public}/sms/inbound", sender, text)
                if answer.status == 200:
                    print(answer.message or "(no answer)")
                else:
                    print(f"(HTTP {answer.status}) {answer.text[:300]}")
            for message in standin.sent:
                print(f"sent to {message.to}: {message.body} {message.statuses}")
            standin.sent.clear()


def main(argv: list[str] | None = None) -> None:
    """Run the stand-in until stdin closes; lines 'NUMBER TEXT' are texted to the hub."""
    parser = argparse.ArgumentParser(prog="python -m frontends.sms.standin", description=__doc__)
    parser.add_argument("--port", type=int, default=8125, help="the API's port (api_base)")
    parser.add_argument("--account-sid", default=DEMO_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEMO_AUTH_TOKEN)
    parser.add_argument("--number", default=DEMO_NUMBER, help="the account's Twilio number")
    parser.add_argument("--public-url", default="https://hub.example.com", help="as in hub.yaml")
    parser.add_argument(
        "--hub", default="http://127.0.0.1:8124", help="where the SMS front-end listens"
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
