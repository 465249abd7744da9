"""Alerts by SMS: twilio's REST client against the stand-in, status callbacks, bad credentials."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from hubtest import HubFactory, eventually
from smstest import (
    PHONES,
    PUBLIC_URL,
    UNREACHABLE,
    SmsSetup,
    hub_config,
    running_plugin,
)

from frontends.sms.standin import TwilioStandin
from hub.broker import free_port
from hub.notify import Delivery


def records(sms: SmsSetup) -> list[Any]:
    """The notification router's recent delivery records."""
    assert sms.hub.notifier is not None
    return list(sms.hub.notifier.recent)


def delivery(address: str, text: str = "The front door opened", **extra: Any) -> Delivery:
    """A delivery as the router hands it to the sms channel."""
    return Delivery(id=f"d-{address}", channel="sms", address=address, title="", text=text, **extra)


async def test_a_notification_reaches_the_person_by_sms_and_its_fate_is_recorded(
    sms: SmsSetup,
) -> None:
    assert sms.hub.notifier is not None
    sms.hub.notifier.notify("The front door opened", title="Front door", targets=["alice"])
    await eventually(lambda: len(sms.standin.sent) == 1, 5, "no SMS reached the stand-in")
    [message] = sms.standin.sent
    assert message.to == PHONES["alice"]
    assert message.from_ == sms.plugin.settings.number
    assert "The front door opened" in message.body
    assert message.status_callback is not None
    assert message.status_callback.startswith(f"{PUBLIC_URL}/sms/status?delivery=")
    await sms.standin.settled()
    # Both callbacks reached the hub through the "proxy" and were accepted.
    assert [c.http_status for c in sms.standin.callbacks] == [204, 204]
    assert [r.status for r in sms.plugin.reports] == ["sent", "delivered"]
    [item] = [r for r in records(sms) if r.channel == "sms"]
    assert {r.delivery_id for r in sms.plugin.reports} == {item.id}

    def latest() -> Any:
        return next(r for r in records(sms) if r.id == item.id)

    await eventually(lambda: latest().detail == "delivered", 5, f"not recorded: {latest()}")
    assert latest().status == "delivered"
    assert latest().external_id == message.sid


async def test_an_unreachable_phone_is_reported_undelivered(sms: SmsSetup) -> None:
    result = await sms.plugin.deliver(delivery(UNREACHABLE))
    assert result.ok, result
    assert result.external_id == sms.standin.sent[0].sid
    await sms.standin.settled()
    assert [(r.status, r.ok, r.error_code) for r in sms.plugin.reports] == [
        ("sent", True, None),
        ("undelivered", False, "30003"),
    ]


async def test_bad_numbers_are_failed_deliveries_and_the_channel_keeps_working(
    sms: SmsSetup,
) -> None:
    not_e164 = await sms.plugin.deliver(delivery("0612345678"))
    assert not not_e164.ok
    assert "E.164" in not_e164.detail
    # Twilio's own refusal (error 21614: not a mobile number) comes back as the detail.
    landline = await sms.plugin.deliver(delivery("+15550000666"))
    assert not landline.ok
    assert "21614" in landline.detail
    assert "not a valid mobile number" in landline.detail
    assert sms.standin.rejected == [(400, 21614)]
    assert sms.health()["healthy"]
    ok = await sms.plugin.deliver(delivery("sms:+15550000003"))
    assert ok.ok
    assert sms.standin.sent[-1].to == "+15550000003"


async def test_alerts_are_cut_to_the_segment_limit(sms: SmsSetup) -> None:
    result = await sms.plugin.deliver(delivery(PHONES["bob"], "Power spike. " * 100))
    assert result.ok
    body = sms.standin.sent[-1].body
    assert len(body) <= 2 * 153
    assert body.endswith("...")


async def test_bad_credentials_mark_the_front_end_unhealthy_and_the_hub_runs_on(
    tmp_path: Path, mqtt_url: str, standin: TwilioStandin, hub_factory: HubFactory
) -> None:
    port = free_port()
    hub = await hub_factory(
        hub_config(tmp_path, mqtt_url, standin, auth_token="wrong", listen=f"127.0.0.1:{port}")
    )
    assert hub.plugins is not None

    def status() -> dict[str, Any]:
        assert hub.plugins is not None
        return hub.plugins.health()["frontend:sms"]

    await eventually(lambda: status()["last_error"], 5, "no error reported")
    health = status()
    assert not health["healthy"]
    assert "Twilio rejected account_sid" in health["last_error"]
    assert "20003" in health["last_error"]
    assert (401, 20003) in standin.rejected
    # No webhook is served with credentials Twilio refuses, and no channel is registered.
    assert hub.notifier is not None
    assert "sms" not in hub.notifier.channels
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    # The hub itself keeps working.
    assert hub.started
    assert hub.conversation is not None


async def test_credentials_revoked_while_running_make_it_unhealthy(sms: SmsSetup) -> None:
    sms.standin.auth_token = "rotated"  # someone rotated the token in the Twilio console
    result = await sms.plugin.deliver(delivery(PHONES["alice"]))
    assert not result.ok
    assert "20003" in result.detail
    await eventually(lambda: not sms.health()["healthy"], 5, "still healthy")
    assert "rejected the credentials" in sms.health()["last_error"]
    assert sms.hub.started
    # The supervisor retries; once the token is right again it recovers on its own and texts
    # are answered again (on a new port here: the test's listen port is 0).
    sms.standin.auth_token = sms.plugin.settings.auth_token
    await eventually(lambda: sms.health()["healthy"], 15, "did not recover")
    restarted = await running_plugin(sms.hub)
    assert restarted is not sms.plugin
    assert sms.health()["restarts"] >= 1
    sms.standin.routes[PUBLIC_URL] = f"http://127.0.0.1:{restarted.port}"
    answer = await sms.standin.text_hub(
        f"{PUBLIC_URL}/sms/inbound", PHONES["alice"], "status of the kitchen"
    )
    assert answer.messages


async def test_a_taken_port_is_a_clear_error(
    tmp_path: Path, mqtt_url: str, standin: TwilioStandin, hub_factory: HubFactory
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        hub = await hub_factory(hub_config(tmp_path, mqtt_url, standin, listen=f"127.0.0.1:{port}"))
        assert hub.plugins is not None
        await eventually(lambda: hub.plugins and hub.plugins.health()["frontend:sms"]["last_error"])
        error = hub.plugins.health()["frontend:sms"]["last_error"]
        assert f"cannot listen on 127.0.0.1:{port} for webhooks" in error


async def test_twilio_unreachable_is_a_clear_error(
    tmp_path: Path, mqtt_url: str, standin: TwilioStandin, hub_factory: HubFactory
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    hub = await hub_factory(hub_config(tmp_path, mqtt_url, standin, api_base=closed))
    assert hub.plugins is not None
    await eventually(lambda: hub.plugins and hub.plugins.health()["frontend:sms"]["last_error"])
    error = hub.plugins.health()["frontend:sms"]["last_error"]
    assert f"cannot reach Twilio at {closed}" in error
