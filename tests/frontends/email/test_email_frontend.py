"""The e-mail front-end in a real hub, against the aiosmtpd stand-in with STARTTLS/TLS and AUTH."""

from __future__ import annotations

import asyncio
import calendar
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hubtest import HubFactory, eventually, write_config
from mqttprobe import MqttProbe

from frontends.email.standin import SmtpStandIn
from hub.core import Hub

PEOPLE = """\
people:
  - id: alice
    name: Alice
    role: admin
    emails: [alice@example.com]
  - id: bob
    name: Bob
    role: member
    emails: [bob@example.com]
    notify: {quiet_hours: "22:00-07:00"}
"""


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A throwaway self-signed certificate for 127.0.0.1 (made with the openssl CLI)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.fixture
async def smtp(certificate: tuple[str, str]) -> AsyncIterator[SmtpStandIn]:
    """The stand-in with STARTTLS required and a login."""
    server = SmtpStandIn(
        security="starttls", certificate=certificate, username="hub", password="s3cret"
    )
    await server.start()
    yield server
    await server.stop()


def email_section(smtp: SmtpStandIn, cert: str, *, security: str = "starttls") -> str:
    return (
        "frontends:\n"
        "  email:\n"
        "    host: 127.0.0.1\n"
        f"    port: {smtp.port}\n"
        f"    security: {security}\n"
        "    username: hub\n"
        "    password: !secret smtp_password\n"
        "    from_address: hub@example.com\n"
        "    from_name: Our Home\n"
        f"    ca_file: {cert}\n"
        "    timeout: 3s\n"
        "    check_interval: 1s\n"
    )


async def start_hub(
    tmp_path: Path,
    mqtt_url: str,
    hub_factory: HubFactory,
    smtp: SmtpStandIn,
    cert: str,
    *,
    password: str = "s3cret",
    security: str = "starttls",
    extra: str = "",
    wait_healthy: bool = True,
) -> Hub:
    (tmp_path / "secrets.yaml").write_text(f"smtp_password: {password}\n")
    text = PEOPLE + email_section(smtp, cert, security=security) + extra
    path = write_config(tmp_path, mqtt_url, text)
    path.write_text(
        path.read_text().replace(
            "hub:\n", "hub:\n  location: {latitude: 52.5, longitude: 13.4, time_zone: UTC}\n", 1
        )
    )
    hub = await hub_factory(path)
    notifier = hub.notifier
    assert notifier is not None
    await eventually(lambda: "email" in notifier.channels, 5, "the e-mail channel is missing")
    if wait_healthy:
        await eventually(lambda: health(hub)["healthy"], 5, f"unhealthy: {health(hub)}")
    return hub


def health(hub: Hub) -> dict[str, object]:
    assert hub.plugins is not None
    return hub.plugins.health()["frontend:email"]


async def test_a_rule_notify_arrives_as_text_and_html_over_starttls_with_login(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, smtp: SmtpStandIn,
    certificate: tuple[str, str],
) -> None:  # fmt: skip
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "leak.yaml").write_text(
        "- id: leak\n"
        "  triggers:\n"
        "    - mqtt: emailtest/leak\n"
        "  actions:\n"
        '    - notify: "Water under the sink.\\n\\nLevel: {{ trigger.payload }}"\n'
        "      title: Leak in the kitchen\n"
        "      targets: [alice]\n"
    )
    hub = await start_hub(tmp_path, mqtt_url, hub_factory, smtp, certificate[0])
    with MqttProbe(mqtt_url) as probe:
        probe.publish("emailtest/leak", "3 mm", qos=1)
        [mail] = await smtp.wait_for(1)
    assert mail.tls
    assert mail.authenticated_as == "hub"
    assert mail.rcpt_tos == ("alice@example.com",)
    message = mail.message
    assert message["Subject"] == "Leak in the kitchen"
    assert message["From"] == "Our Home <hub@example.com>"
    assert message["To"] == "alice@example.com"
    assert message.get_content_type() == "multipart/alternative"
    assert mail.part("plain") == "Water under the sink.\n\nLevel: 3 mm\n"
    html = mail.part("html")
    assert "<h2" in html
    assert "Leak in the kitchen</h2>" in html
    assert "<p>Water under the sink.</p><p>Level: 3 mm</p>" in html
    notifier = hub.notifier
    assert notifier is not None
    await eventually(lambda: [r.status for r in notifier.recent] == ["sent"])
    [row] = await notifier.history()
    assert (row.channel, row.address, row.status) == ("email", "alice@example.com", "sent")
    assert row.external_id == str(message["Message-ID"]).strip("<>")


async def test_implicit_tls_works_too(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, certificate: tuple[str, str]
) -> None:
    server = SmtpStandIn(security="tls", certificate=certificate, username="hub", password="s3cret")
    await server.start()
    try:
        hub = await start_hub(
            tmp_path, mqtt_url, hub_factory, server, certificate[0], security="tls"
        )
        hub.notifier.notify("Hello over TLS", "TLS", ["alice"])  # type: ignore[union-attr]
        [mail] = await server.wait_for(1)
        assert mail.tls
        assert mail.message["Subject"] == "TLS"
    finally:
        await server.stop()


async def test_a_device_going_offline_sends_the_admin_an_email(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, smtp: SmtpStandIn,
    certificate: tuple[str, str],
) -> None:  # fmt: skip
    extra = "notifications:\n  events:\n    device_offline: {after: 0.3s}\n"
    hub = await start_hub(tmp_path, mqtt_url, hub_factory, smtp, certificate[0], extra=extra)
    prefix = hub.config.hub.device_topic
    with MqttProbe(mqtt_url) as probe:
        probe.publish(
            f"{prefix}/freezer/config",
            {"name": "Freezer", "entities": {"power": {"kind": "sensor", "unit": "W"}}},
            qos=1,
            retain=True,
        )
        probe.publish(f"{prefix}/freezer/availability", "online", qos=1, retain=True)
        await eventually(lambda: "freezer" in hub.registry.devices)
        await eventually(lambda: hub.registry.devices["freezer"].available)
        probe.publish(f"{prefix}/freezer/availability", "offline", qos=1, retain=True)
        [mail] = await smtp.wait_for(1)
    assert mail.rcpt_tos == ("alice@example.com",)  # the admin; Bob is a member
    assert mail.message["Subject"] == "Freezer is offline"
    assert "Freezer has been offline since" in mail.part("plain")


async def test_dedupe_and_rate_limit_hold_back_mails(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, smtp: SmtpStandIn,
    certificate: tuple[str, str],
) -> None:  # fmt: skip
    extra = "notifications:\n  rate_limit: {burst: 2, refill: 1h}\n"
    hub = await start_hub(tmp_path, mqtt_url, hub_factory, smtp, certificate[0], extra=extra)
    notifier = hub.notifier
    assert notifier is not None
    start = time.time()
    notifier.clock = lambda: start
    notifier.notify("Door open", "Door", ["alice"], key="door")
    notifier.notify("Door open", "Door", ["alice"], key="door")  # the same words again
    notifier.notify("Window open", "Window", ["alice"])
    notifier.notify("Garage open", "Garage", ["alice"])  # the bucket is empty now
    notifier.notify("Shed open", "Shed", ["alice"])
    await smtp.wait_for(2)
    await asyncio.sleep(1.0)
    assert [m.message["Subject"] for m in smtp.received] == ["Door", "Window"]
    statuses = sorted(r.status for r in await notifier.history())
    assert statuses == ["duplicate", "rate_limited", "rate_limited", "sent", "sent"]
    notifier.clock = lambda: start + 3600  # a token is back: the summary goes out
    await smtp.wait_for(3)
    assert smtp.received[2].message["Subject"] == "2 messages suppressed"


async def test_quiet_hours_hold_mail_until_morning_but_urgent_breaks_through(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, smtp: SmtpStandIn,
    certificate: tuple[str, str],
) -> None:  # fmt: skip
    hub = await start_hub(tmp_path, mqtt_url, hub_factory, smtp, certificate[0])
    notifier = hub.notifier
    assert notifier is not None
    night = float(calendar.timegm((2026, 12, 7, 23, 15, 0, 0, 0, 0)))
    notifier.clock = lambda: night
    notifier.notify("The washer is done", "Washer", ["bob"])
    notifier.notify("Smoke in the kitchen", "Smoke", ["bob"], urgent=True)
    [mail] = await smtp.wait_for(1)
    assert mail.message["Subject"] == "Smoke"
    assert mail.message["Importance"] == "high"
    await asyncio.sleep(1.0)
    assert len(smtp.received) == 1
    notifier.clock = lambda: night + 8 * 3600  # 07:15
    mails = await smtp.wait_for(2)
    assert mails[1].rcpt_tos == ("bob@example.com",)
    assert mails[1].message["Subject"] == "Washer"
    assert mails[1].part("plain") == "The washer is done\n"


async def test_a_refused_login_marks_the_plugin_unhealthy_records_the_failure_and_recovers(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, smtp: SmtpStandIn,
    certificate: tuple[str, str],
) -> None:  # fmt: skip
    extra = "notifications:\n  retries: 1\n  retry_delay: 100ms\n"
    hub = await start_hub(
        tmp_path, mqtt_url, hub_factory, smtp, certificate[0], password="wrong", extra=extra,
        wait_healthy=False,
    )  # fmt: skip
    await eventually(lambda: health(hub)["state"] == "degraded", 5, str(health(hub)))
    status = health(hub)
    assert status["healthy"] is False
    assert "SMTP login refused for user 'hub' by 127.0.0.1" in str(status["last_error"])
    notifier = hub.notifier
    assert notifier is not None
    notifier.notify("Door open", "Door", ["alice"])

    async def failed() -> list[str]:
        return [r.detail for r in await notifier.history() if r.status == "failed"]

    await eventually(lambda: any(r.status == "failed" for r in notifier.recent), 5)
    [detail] = await failed()
    assert "SMTP login refused" in detail
    assert smtp.received == []
    # The hub keeps working: the command layer, rules and MQTT are untouched.
    with MqttProbe(mqtt_url) as probe:
        probe.subscribe(f"{hub.base_topic}/status")
        probe.wait_for(f"{hub.base_topic}/status", lambda p: p == b"online")
    # The server takes the password the hub has (say the admin fixed it there): the plug-in
    # finds out on its own next check and is healthy again; mail flows.
    smtp.password = "wrong"
    await eventually(lambda: health(hub)["healthy"], 5, str(health(hub)))
    notifier.notify("Door open again", "Door again", ["alice"])
    [mail] = await smtp.wait_for(1)
    assert mail.message["Subject"] == "Door again"


async def test_an_unreachable_server_is_reported_and_the_hub_carries_on(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, certificate: tuple[str, str]
) -> None:
    server = SmtpStandIn(
        security="starttls", certificate=certificate, username="hub", password="s3cret"
    )
    await server.start()
    await server.stop()  # its port is free now: nobody answers there
    hub = await start_hub(
        tmp_path, mqtt_url, hub_factory, server, certificate[0], wait_healthy=False,
        extra="notifications:\n  retries: 0\n",
    )  # fmt: skip
    await eventually(lambda: health(hub)["state"] == "degraded", 5, str(health(hub)))
    assert "cannot reach the SMTP server 127.0.0.1" in str(health(hub)["last_error"])
    assert hub.started


async def test_header_and_html_injection_is_neutralised(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, smtp: SmtpStandIn,
    certificate: tuple[str, str],
) -> None:  # fmt: skip
    extra = "notifications:\n  retries: 0\n"
    hub = await start_hub(tmp_path, mqtt_url, hub_factory, smtp, certificate[0], extra=extra)
    notifier = hub.notifier
    assert notifier is not None
    notifier.notify(
        "<script>alert(1)</script> & <b>bold</b>\r\nBcc: evil@example.com",
        "Alert\r\nBcc: evil@example.com\r\nX-Injected: yes",
        ["alice"],
    )
    [mail] = await smtp.wait_for(1)
    message = mail.message
    assert mail.rcpt_tos == ("alice@example.com",)
    assert message["Bcc"] is None
    assert message["X-Injected"] is None
    assert message["Subject"] == "Alert Bcc: evil@example.com X-Injected: yes"
    html = mail.part("html")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    # An address with a second recipient smuggled in is refused, not sent anywhere.
    with pytest.raises(ValueError, match="address"):
        notifier.notify("x", "y", ["email:alice@example.com\r\nBcc: evil@example.com"])
    notifier.notify("x", "y", ["email:evil@example.com>, <other@example.com"])

    async def failed() -> list[str]:
        return [r.detail for r in await notifier.history() if r.status == "failed"]

    await eventually(lambda: any(r.status == "failed" for r in notifier.recent), 5)
    assert any("not a valid e-mail address" in detail for detail in await failed())
    await asyncio.sleep(0.3)
    assert len(smtp.received) == 1
