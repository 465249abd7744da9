"""A local SMTP server (aiosmtpd) that keeps or prints the mail it receives.

For ``hub demo`` and the tests: the e-mail front-end talks to it exactly as to a real server
(same client, same STARTTLS/TLS and AUTH), only the host and port differ. Run it alone with
``python -m frontends.email.standin --port 2525`` and point ``frontends.email.host/port`` at it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import sys
import warnings
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One message the stand-in accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    authenticated_as: str | None
    tls: bool

    def part(self, subtype: str) -> str:
        """The text of the ``text/<subtype>`` part (e.g. "plain", "html"); "" when missing."""
        found = self.message.get_body(preferencelist=(subtype,))
        text = found.get_content() if found is not None else ""
        return str(text).replace("\r\n", "\n")  # as written, not as the wire carries it


def _on_tls(server: SMTP) -> bool:
    # aiosmtpd fills session.ssl for STARTTLS only; implicit TLS shows on the transport.
    transport = getattr(server, "transport", None)
    return transport is not None and transport.get_extra_info("ssl_object") is not None


class _Handler:
    def __init__(self, standin: SmtpStandIn) -> None:
        self.standin = standin

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        message = message_from_bytes(content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data if session.authenticated else None
        mail = ReceivedMail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            message=message,
            authenticated_as=login if isinstance(login, str) else None,
            tls=session.ssl is not None or _on_tls(server),
        )
        self.standin.received.append(mail)
        self.standin.new_mail.set()
        if self.standin.echo:
            print(f"--- mail from {mail.mail_from} to {', '.join(mail.rcpt_tos)}")
            print(f"Subject: {message['Subject']}")
            print(mail.part("plain").rstrip())
            sys.stdout.flush()
        return "250 Message accepted for delivery"


class SmtpStandIn:
    """An SMTP server on loopback, in the running event loop."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        security: Literal["starttls", "tls", "none"] = "none",
        certificate: tuple[str, str] | None = None,  # (cert file, key file) for TLS
        username: str | None = None,
        password: str | None = None,
        echo: bool = False,
    ) -> None:
        if security != "none" and certificate is None:
            raise ValueError(f"security {security!r} needs a certificate and key")
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.echo = echo
        self.received: list[ReceivedMail] = []
        self.new_mail = asyncio.Event()
        self.refused_logins = 0
        self._tls: ssl.SSLContext | None = None
        if certificate is not None:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(*certificate)
        self._server: asyncio.Server | None = None

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.username
            and data.password.decode() == self.password
        )
        if not ok:
            self.refused_logins += 1
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, handled=False, auth_data=self.username)

    def _protocol(self) -> SMTP:
        auth = self.username is not None
        with warnings.catch_warnings():
            # aiosmtpd warns of AUTH without STARTTLS; with implicit TLS the session is TLS.
            warnings.simplefilter("ignore", UserWarning)
            return self._make_protocol(auth)

    def _make_protocol(self, auth: bool) -> SMTP:
        return SMTP(
            _Handler(self),
            hostname="standin.local",
            tls_context=self._tls if self.security == "starttls" else None,
            require_starttls=self.security == "starttls",
            auth_required=auth,
            # Implicit TLS is TLS too; aiosmtpd only knows STARTTLS sessions as such.
            auth_require_tls=self.security == "starttls",
            authenticator=self._authenticate if auth else None,
        )

    async def start(self) -> None:
        """Listen (``port`` 0 picks a free one; read it back from :attr:`port`)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol,
            self.host,
            self.port,
            ssl=self._tls if self.security == "tls" else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMail]:
        """Wait until at least ``count`` messages have arrived; return them all."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.received) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(
                    f"{len(self.received)} of {count} e-mails arrived in {timeout} s"
                )
            self.new_mail.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.new_mail.wait(), remaining)
        return list(self.received)


def main(argv: list[str] | None = None) -> int:
    """``python -m frontends.email.standin``: print every e-mail received."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--security", choices=("none", "starttls", "tls"), default="none")
    parser.add_argument("--cert", help="certificate file (for starttls/tls)")
    parser.add_argument("--key", help="key file (for starttls/tls)")
    parser.add_argument("--username")
    parser.add_argument("--password")
    args = parser.parse_args(argv)
    certificate = (args.cert, args.key) if args.cert and args.key else None

    async def serve() -> None:
        standin = SmtpStandIn(
            host=args.host,
            port=args.port,
            security=args.security,
            certificate=certificate,
            username=args.username,
            password=args.password,
            echo=True,
        )
        await standin.start()
        print(f"SMTP stand-in listening on {standin.host}:{standin.port} ({args.security})")
        sys.stdout.flush()
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
