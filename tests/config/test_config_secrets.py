"""Secret redaction in text, URLs and real log records."""

import io
import logging
import uuid
from collections.abc import Iterator

import pytest

from hub.secrets import RedactingFilter, redact, redact_url, register_secret


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A real logger whose handler writes through a RedactingFilter into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"test.redaction.{uuid.uuid4().hex}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def test_redact_replaces_registered_values() -> None:
    secret = _unique("pw")
    register_secret(secret)
    assert redact(f"login with {secret} now") == "login with *** now"
    assert redact("nothing secret here") == "nothing secret here"


def test_short_values_are_not_registered() -> None:
    register_secret("abc")
    assert redact("abc abcd") == "abc abcd"


def test_a_longer_secret_containing_a_shorter_one_is_hidden_whole() -> None:
    short = _unique("tok")
    register_secret(short)
    register_secret(short + "-extended")
    assert redact(f"x {short}-extended y") == "x *** y"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mqtt://hub:s3cret@broker:1883", "mqtt://hub:***@broker:1883"),
        ("postgresql://app:p%40ss@db.lan/hub", "postgresql://app:***@db.lan/hub"),
        ("postgresql+asyncpg://app:p@ss@db/hub", "postgresql+asyncpg://app:***@db/hub"),
        ("mqtt://justuser@broker", "mqtt://justuser@broker"),
        ("mqtts://broker.lan:8883", "mqtts://broker.lan:8883"),
        ("sqlite+aiosqlite:///hub.db", "sqlite+aiosqlite:///hub.db"),
    ],
)
def test_redact_url_hides_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_filter_redacts_message_and_args_in_a_real_log_call(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    secret = _unique("discord-token")
    register_secret(secret)
    logger.info("connecting with token %s to %s", secret, "gateway")
    logger.warning(f"inline {secret}")
    output = stream.getvalue()
    assert secret not in output
    assert "INFO connecting with token *** to gateway" in output
    assert "WARNING inline ***" in output


def test_filter_redacts_tracebacks(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    secret = _unique("api-key")
    register_secret(secret)
    try:
        raise RuntimeError(f"server refused key {secret}")
    except RuntimeError:
        logger.exception("call failed")
    output = stream.getvalue()
    assert "call failed" in output
    assert "server refused key ***" in output
    assert secret not in output
