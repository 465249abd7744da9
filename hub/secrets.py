"""Secret redaction: values registered here never reach a log line in clear."""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import urlsplit

REDACTED = "***"
MIN_SECRET_LENGTH = 4

_lock = threading.Lock()
_secrets: set[str] = set()
# Rebuilt on every registration; registrations happen at start-up, redaction on every log line.
_pattern: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Remember ``value`` so that :func:`redact` hides it (values under 4 characters are not)."""
    global _pattern  # noqa: PLW0603 - one process-wide registry is the point
    if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # Longest first, so a secret that contains another is hidden whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(item) for item in ordered))


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``***``."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(REDACTED, text)


def redact_url(url: str) -> str:
    """Return ``url`` with the password of ``scheme://user:pass@host`` replaced by ``***``."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return redact(url)
    # urlsplit splits user info at the last '@', so a password may itself contain '@'.
    userinfo, at, hostport = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return redact(url)
    user = userinfo.split(":", 1)[0]
    return redact(url.replace(netloc, f"{user}:{REDACTED}@{hostport}", 1))


class RedactingFilter(logging.Filter):
    """A logging filter that hides registered secrets in a record's message, args and traceback.

    Attach it to handlers: a logger's own filters do not see records from child loggers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        if _pattern is None:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # A broken format string: redact the raw parts; logging will report the error.
            record.msg = redact(str(record.msg))
            return True
        clean = redact(message)
        if clean != message:
            # Freeze the formatted text so no formatter can re-expand the raw args.
            record.msg = clean
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
