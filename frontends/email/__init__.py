"""The e-mail front-end: notifications by SMTP with STARTTLS or TLS, plain text and HTML."""

from frontends.email.plugin import EmailFrontend, EmailSettings, build_message

__all__ = ["EmailFrontend", "EmailSettings", "build_message"]
