"""The notification router in a real hub: routing, hub events, dedupe, limits, quiet hours."""

from __future__ import annotations

import asyncio
import calendar
import json
from pathlib import Path
from types import ModuleType

import pytest
from hubtest import HubFactory, eventually, write_config
from mqttprobe import MqttProbe

from hub.cli import main
from hub.commands import Command
from hub.core import Hub
from hub.events import CustomEvent
from hub.model import Context, Origin
from hub.storage.notifications import DeliveryRecord

PEOPLE = """\
people:
  - id: alice
    name: Alice
    role: admin
    emails: [alice@example.com]
    phones: ["+15550000001"]
    notify: {channels: [email]}
  - id: carol
    name: Carol
    role: admin
    emails: [carol@example.com]
    phones: ["+15550000003"]
  - id: bob
    name: Bob
    role: member
    emails: [bob@example.com]
    notify: {quiet_hours: "22:00-07:00"}
  - id: dave
    name: Dave
    role: member
    emails: [dave@example.com]
    notify: {quiet_hours: "22:00-07:00", urgent_overrides_quiet: false}
"""


def config(tmp_path: Path, mqtt_url: str, notifications: str = "", recorder: str = "{}") -> Path:
    """hub.yaml with the people above, the recording channel and a time zone."""
    extra = f"{PEOPLE}frontends:\n  recorder: {recorder}\n"
    if notifications:
        extra += "notifications:\n" + notifications
    path = write_config(tmp_path, mqtt_url, extra)
    text = path.read_text().replace(
        "hub:\n", "hub:\n  location: {latitude: 52.5, longitude: 13.4, time_zone: UTC}\n", 1
    )
    path.write_text(text)
    return path


class Clock:
    """A clock the test moves (the router reads it for windows, buckets and quiet hours)."""

    def __init__(self, iso: str) -> None:
        self.now = float(calendar.timegm(_parse(iso)))

    def __call__(self) -> float:
        return self.now

    def at(self, iso: str) -> None:
        self.now = float(calendar.timegm(_parse(iso)))


def _parse(iso: str) -> tuple[int, ...]:
    import time

    return tuple(time.strptime(iso, "%Y-%m-%dT%H:%M"))


async def started(hub_factory: HubFactory, path: Path) -> Hub:
    hub: Hub = await hub_factory(path)
    notifier = hub.notifier
    assert notifier is not None
    await eventually(lambda: "email" in notifier.channels, 5, "recorder did not start")
    return hub


def sent_to(recorder: ModuleType) -> list[tuple[str, str, str]]:
    return [(d.channel, d.address, d.title) for d in recorder.DELIVERED]


async def history(hub: Hub) -> list[DeliveryRecord]:
    assert hub.notifier is not None
    return await hub.notifier.history(100)


async def test_a_rule_notify_reaches_admins_by_their_channel_preferences(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, recorder: ModuleType
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "leak.yaml").write_text(
        "- id: leak\n"
        "  triggers:\n"
        "    - mqtt: leaktest/sink\n"
        "  actions:\n"
        "    - notify: 'Water under the sink: {{ trigger.payload }}'\n"
        "      title: Leak\n"
        "      targets: [role:admin, 'sms:+15559999999', nobody]\n"
    )
    hub = await started(hub_factory, config(tmp_path, mqtt_url))
    with MqttProbe(mqtt_url) as probe:
        probe.publish("leaktest/sink", "3 mm", qos=1)
        await eventually(lambda: len(recorder.DELIVERED) >= 4, 5, str(sent_to(recorder)))
    await asyncio.sleep(0.2)
    # Alice prefers e-mail only; Carol has no preference: every channel she has an address on.
    assert sorted(sent_to(recorder)) == [
        ("email", "alice@example.com", "Leak"),
        ("email", "carol@example.com", "Leak"),
        ("sms", "+15550000003", "Leak"),
        ("sms", "+15559999999", "Leak"),
    ]
    assert all(d.text == "Water under the sink: 3 mm" for d in recorder.DELIVERED)
    by_address = {d.address: d for d in recorder.DELIVERED}
    assert by_address["alice@example.com"].person is not None
    assert by_address["+15559999999"].person is None  # a channel target, not a person
    # The rule's run is the delivery's context: "why did I get this?"
    context = by_address["alice@example.com"].context
    assert context is not None
    assert any(c.origin is Origin.RULE for c in context.chain())

    rows = await history(hub)
    sent = {(r.channel, r.address): r for r in rows if r.status == "sent"}
    assert len(sent) == 4
    assert sent[("email", "alice@example.com")].external_id.startswith("ext-")  # type: ignore[union-attr]
    assert sent[("email", "alice@example.com")].person == "alice"
    # The unknown person is recorded, not silently dropped.
    undeliverable = [r for r in rows if r.status == "undeliverable"]
    assert [r.address for r in undeliverable] == ["nobody"]
    assert "unknown person 'nobody'" in undeliverable[0].detail


async def test_a_device_offline_long_enough_is_told_to_admins_once_and_flapping_is_not(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, recorder: ModuleType
) -> None:
    notifications = "  events:\n    device_offline: {after: 0.6s}\n"
    path = config(tmp_path, mqtt_url, notifications)
    hub = await started(hub_factory, path)
    prefix = hub.config.hub.device_topic
    device = f"{prefix}/cellar_pump"
    with MqttProbe(mqtt_url) as probe:
        probe.publish(
            f"{device}/config",
            {"name": "Cellar pump", "entities": {"switch": {"kind": "switch"}}},
            qos=1,
            retain=True,
        )
        probe.publish(f"{device}/availability", "online", qos=1, retain=True)
        await eventually(lambda: hub.registry.devices.get("cellar_pump") is not None)
        await eventually(lambda: hub.registry.devices["cellar_pump"].available)
        # Flapping: offline for less than `after`, several times.
        for _ in range(3):
            probe.publish(f"{device}/availability", "offline", qos=1)
            await asyncio.sleep(0.15)
            probe.publish(f"{device}/availability", "online", qos=1)
            await asyncio.sleep(0.15)
        await asyncio.sleep(0.8)
        assert recorder.DELIVERED == []
        # Really offline: one report per admin channel.
        probe.publish(f"{device}/availability", "offline", qos=1, retain=True)
        await eventually(lambda: len(recorder.DELIVERED) >= 3, 5)
        await asyncio.sleep(0.8)
        assert sorted(sent_to(recorder)) == [
            ("email", "alice@example.com", "Cellar pump is offline"),
            ("email", "carol@example.com", "Cellar pump is offline"),
            ("sms", "+15550000003", "Cellar pump is offline"),
        ]
        assert all(d.key == "device_offline:cellar_pump" for d in recorder.DELIVERED)
        # Back online: the incident is resolved, on the same key.
        recorder.DELIVERED.clear()
        probe.publish(f"{device}/availability", "online", qos=1, retain=True)
        await eventually(lambda: len(recorder.DELIVERED) >= 3, 5)
        assert {d.title for d in recorder.DELIVERED} == {"Cellar pump is back online"}
        assert all(d.resolved and d.key == "device_offline:cellar_pump" for d in recorder.DELIVERED)


async def test_a_failed_command_is_told_when_a_person_or_rule_asked_not_a_plugin(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, recorder: ModuleType
) -> None:
    notifications = (
        "  events:\n    device_offline: {enabled: false}\n    command_failed: {targets: [alice]}\n"
    )
    hub = await started(hub_factory, config(tmp_path, mqtt_url, notifications))
    prefix = hub.config.hub.device_topic
    with MqttProbe(mqtt_url) as probe:
        probe.publish(
            f"{prefix}/garage_plug/config",
            {"name": "Garage plug", "entities": {"switch": {"kind": "switch"}}},
            qos=1,
            retain=True,
        )
        probe.publish(f"{prefix}/garage_plug/availability", "offline", qos=1, retain=True)
        await eventually(lambda: hub.registry.devices.get("garage_plug") is not None)
    plugin_context = Context(Origin.PLUGIN, "zeroconf")
    await hub.commands.execute(Command("garage_plug.switch", "turn_on", plugin_context))
    await asyncio.sleep(0.5)
    assert recorder.DELIVERED == []  # a plug-in's own command: nobody is told

    person = Context(Origin.PERSON, "bob", via="discord")
    results = await hub.commands.execute(Command("garage_plug.switch", "turn_on", person))
    assert not results[0].ok
    await eventually(lambda: len(recorder.DELIVERED) == 1, 5)
    delivery = recorder.DELIVERED[0]
    assert (delivery.channel, delivery.address) == ("email", "alice@example.com")
    assert delivery.title == "A command to Garage plug switch failed"
    assert "offline" in delivery.text
    assert "person bob via discord" in delivery.text


async def test_the_same_key_to_the_same_person_is_sent_once_within_the_window(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, recorder: ModuleType
) -> None:
    hub = await started(hub_factory, config(tmp_path, mqtt_url, "  dedupe_window: 10m\n"))
    notifier = hub.notifier
    assert notifier is not None
    clock = Clock("2026-12-07T12:00")
    notifier.clock = clock
    notifier.notify("Freezer is warm", "Freezer", ["alice"], key="freezer")
    notifier.notify("Freezer is warm", "Freezer", ["alice"], key="freezer")  # the same again
    notifier.notify("Freezer is at 9 °C", "Freezer", ["alice"], key="freezer")  # an update
    notifier.notify("Garage open", "Garage", ["alice"])
    notifier.notify("Garage open", "Garage", ["alice"])  # no key: same title and text
    await eventually(lambda: len(recorder.DELIVERED) == 3, 5)
    clock.at("2026-12-07T12:11")  # the window has passed
    notifier.notify("Freezer is warm", "Freezer", ["alice"], key="freezer")
    await eventually(lambda: len(recorder.DELIVERED) == 4, 5)
    await asyncio.sleep(0.2)
    assert [d.text for d in recorder.DELIVERED] == [
        "Freezer is warm",
        "Freezer is at 9 °C",
        "Garage open",
        "Freezer is warm",
    ]
    statuses = sorted(r.status for r in await history(hub))
    assert statuses == ["duplicate", "duplicate", "sent", "sent", "sent", "sent"]


async def test_a_flood_is_cut_by_the_rate_limit_and_summarised_when_the_bucket_refills(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, recorder: ModuleType
) -> None:
    settings = "  rate_limit: {burst: 3, refill: 1m}\n"
    hub = await started(hub_factory, config(tmp_path, mqtt_url, settings))
    notifier = hub.notifier
    assert notifier is not None
    clock = Clock("2026-12-07T12:00")
    notifier.clock = clock
    for number in range(10):
        notifier.notify(f"Motion {number}", "Motion", ["alice"])
    notifier.notify("Smoke in the kitchen", "Smoke", ["alice"], urgent=True)
    await eventually(lambda: len(recorder.DELIVERED) == 4, 5)
    await asyncio.sleep(0.7)  # a timer tick: the bucket is still empty, no summary yet
    assert [d.text for d in recorder.DELIVERED] == [
        "Motion 0",
        "Motion 1",
        "Motion 2",
        "Smoke in the kitchen",  # urgent news is never dropped by the rate limit
    ]
    rows = await history(hub)
    limited = [r for r in rows if r.status == "rate_limited"]
    assert len(limited) == 7
    assert all(r.person == "alice" for r in limited)
    # Another person has a bucket of their own.
    notifier.notify("Hello Carol", "Hi", ["carol"])
    await eventually(lambda: any(d.address == "carol@example.com" for d in recorder.DELIVERED))

    clock.at("2026-12-07T12:01")  # one token back: one summary
    await eventually(lambda: any(d.title == "7 messages suppressed" for d in recorder.DELIVERED))
    summary = next(d for d in recorder.DELIVERED if d.title == "7 messages suppressed")
    assert (summary.channel, summary.address) == ("email", "alice@example.com")
    await asyncio.sleep(0.7)
    assert sum(d.title.endswith("suppressed") for d in recorder.DELIVERED) == 1


async def test_quiet_hours_hold_until_morning_even_across_a_restart_and_urgent_breaks_through(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, recorder: ModuleType
) -> None:
    path = config(tmp_path, mqtt_url)
    hub = await started(hub_factory, path)
    notifier = hub.notifier
    assert notifier is not None
    notifier.clock = Clock("2026-12-07T23:30")
    notifier.notify("The washer is done", "Washer", ["bob", "dave"])
    notifier.notify("The dryer is done", "Dryer", ["bob"])
    notifier.notify("Smoke in the kitchen", "Smoke", ["bob", "dave"], urgent=True)
    # Bob lets urgent news through his quiet hours; Dave does not.
    await eventually(lambda: len(recorder.DELIVERED) == 1, 5)
    await asyncio.sleep(0.7)
    assert sent_to(recorder) == [("email", "bob@example.com", "Smoke")]
    held = [r for r in await history(hub) if r.status == "held"]
    assert sorted((r.person, r.title) for r in held) == [
        ("bob", "Dryer"),
        ("bob", "Washer"),
        ("dave", "Smoke"),
        ("dave", "Washer"),
    ]
    await hub.stop()

    # The hub restarts during the night; the held notifications come back from storage.
    recorder.DELIVERED.clear()
    hub = await started(hub_factory, path)
    notifier = hub.notifier
    assert notifier is not None
    clock = Clock("2026-12-08T06:59")
    notifier.clock = clock
    await asyncio.sleep(0.7)
    assert recorder.DELIVERED == []
    clock.at("2026-12-08T07:00")  # quiet hours are over: one digest per person and channel
    await eventually(lambda: len(recorder.DELIVERED) == 2, 5)
    digests = {d.address: d for d in recorder.DELIVERED}
    bob = digests["bob@example.com"]
    assert bob.title == "2 notifications during quiet hours"
    assert "Washer: The washer is done" in bob.text
    assert "Dryer: The dryer is done" in bob.text
    assert "Smoke" in digests["dave@example.com"].text
    rows = await history(hub)
    assert not [r for r in rows if r.status == "held"]
    assert len([r for r in rows if r.status == "digested"]) == 4
    await asyncio.sleep(0.7)
    assert len(recorder.DELIVERED) == 2  # sent once, not at every tick


async def test_a_failing_channel_is_retried_then_the_failure_is_recorded(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, recorder: ModuleType
) -> None:
    settings = "  retries: 2\n  retry_delay: 50ms\n"
    recorder_settings = "{channels: [email], fail_first: 1, raise_first: 1}"
    hub = await started(hub_factory, config(tmp_path, mqtt_url, settings, recorder_settings))
    notifier = hub.notifier
    assert notifier is not None
    notifier.notify("First", "One", ["alice"])
    await eventually(lambda: len(recorder.DELIVERED) == 1, 5)
    assert len(recorder.ATTEMPTS) == 3  # raised, refused, sent
    first = [r for r in await history(hub) if r.title == "One"]
    assert [(r.status, r.attempts) for r in first] == [("sent", 3)]

    # Now every try fails: after three attempts the delivery is recorded as failed.
    notifier.channels["email"].plugin.refusals = 10  # type: ignore[attr-defined]
    notifier.notify("Second", "Two", ["alice"])
    await eventually(lambda: len(recorder.ATTEMPTS) == 6, 5)
    await asyncio.sleep(0.3)
    second = [r for r in await history(hub) if r.title == "Two"]
    assert [(r.status, r.attempts, r.detail) for r in second] == [
        ("failed", 3, "the service said no")
    ]
    # The hub keeps working: the next notification goes out when the service is back.
    notifier.channels["email"].plugin.refusals = 0  # type: ignore[attr-defined]
    notifier.notify("Third", "Three", ["alice"])
    await eventually(lambda: len(recorder.DELIVERED) == 2, 5)


async def test_speed_below_threshold_event_and_status_callbacks(
    tmp_path: Path, mqtt_url: str, hub_factory: HubFactory, recorder: ModuleType
) -> None:
    notifications = "  events:\n    speedtest_below_threshold: {targets: [carol], urgent: true}\n"
    hub = await started(hub_factory, config(tmp_path, mqtt_url, notifications))
    # What a speed-test plug-in does: fire the event (or call hub.notifier.notify).
    hub.bus.publish(
        CustomEvent("speedtest_below_threshold", {"download": 12.5, "upload": 3.0, "threshold": 50})
    )
    await eventually(lambda: len(recorder.DELIVERED) == 2, 5)
    texts = {d.channel: d for d in recorder.DELIVERED}
    assert texts["sms"].title == "Internet speed is low"
    assert "12.5 Mbit/s down" in texts["sms"].text
    assert "threshold 50" in texts["sms"].text
    assert texts["sms"].urgent
    # An unlisted custom event is nobody's business.
    hub.bus.publish(CustomEvent("garden_dry", {"moisture": 3}))
    await asyncio.sleep(0.5)
    assert len(recorder.DELIVERED) == 2

    # A front-end's status callback (e.g. Twilio's) names the service's id.
    sms = texts["sms"]
    assert hub.plugins is not None
    hub.notifier.record_status(f"ext-{sms.id}", False, "undelivered: 30003 unreachable")  # type: ignore[union-attr]
    rows = {r.id: r for r in await history(hub)}
    assert rows[sms.id].status == "undelivered"
    assert rows[sms.id].detail == "undelivered: 30003 unreachable"
    assert rows[texts["email"].id].status == "sent"


async def test_hub_notifications_lists_recent_deliveries(
    tmp_path: Path,
    mqtt_url: str,
    hub_factory: HubFactory,
    recorder: ModuleType,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = config(tmp_path, mqtt_url)
    hub = await started(hub_factory, path)
    assert hub.notifier is not None
    hub.notifier.notify("Freezer is warm", "Freezer", ["alice", "ghost"])
    await eventually(lambda: len(recorder.DELIVERED) == 1, 5)
    await eventually(lambda: any(r.status == "sent" for r in hub.notifier.recent))  # type: ignore[union-attr]
    await hub.stop()
    capsys.readouterr()

    code = await asyncio.to_thread(main, ["notifications", "--config", str(path), "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted((r["status"], r["address"], r["person"]) for r in rows) == [
        ("sent", "alice@example.com", "alice"),
        ("undeliverable", "ghost", None),
    ]
    code = await asyncio.to_thread(main, ["notifications", "--config", str(path)])
    text = capsys.readouterr().out
    assert code == 0
    assert "sent" in text
    assert "email:alice@example.com" in text
    assert "unknown person 'ghost'" in text
    code = await asyncio.to_thread(main, ["notifications", "--config", str(path), "--status", "x"])
    assert code == 2
    assert "unknown status 'x'" in capsys.readouterr().err
