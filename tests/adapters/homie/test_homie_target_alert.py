"""Homie 5 ``$target`` and ``$alert`` against a real hub and a real Mosquitto.

Sources (homieiot/convention, ``convention.md``, the Homie 5 text published at
https://homieiot.github.io/specification/):
- "Property command topic": the dimmable ``kitchen-light`` fading over 5 seconds,
  ``light/brightness/set ← 100``, ``light/brightness/$target → 100``, then ``brightness → 20,
  40, 60, 80, 100``.
- "Target attribute": a device publishes ``$target`` first, moves, and ends on a value that
  matches it; ``$target`` is used for every value update or never.
- "Alert topic": ``homie/5/mydevid/$alert/childlost = "Sensor xyz in livingroom hasn't
  reported updates for 3 hours"`` and ``homie/5/mydevid/$alert/battery = "Battery is low, at
  8%"``; deleting the topic (an empty retained payload) means the alert was handled.
- "Logging": ``homie/5/my-device/$log/warn → "battery low"`` (ignored by the hub).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from conftest import StartHub
from homie_support import HomieDevice, attrs, fixture, hub_id, issue, rejected, state
from hubtest import eventually
from mqttprobe import MqttProbe

from hub.api import Delivery, DeliveryResult
from hub.broker import MosquittoBroker
from hub.events import CustomEvent, Notification

ALERTS = {
    "childlost": "Sensor xyz in livingroom hasn't reported updates for 3 hours",
    "battery": "Battery is low, at 8%",
}
PEOPLE = """people:
  - id: ada
    name: Ada
    role: admin
    emails: [ada@example.com]
"""


async def test_a_fading_dimmer_shows_its_target_until_it_gets_there(
    start_hub: StartHub, probe: MqttProbe
) -> None:
    light = fixture("kitchen_light")
    hub = await start_hub()
    device = HomieDevice(probe, light["id"])
    await device.announce(light["description"], {"light/power": "true", "light/brightness": "0"})
    entity = f"{hub_id('kitchen-light')}.light"
    await eventually(lambda: state(hub, entity) == "on")
    assert "target" not in attrs(hub, entity)  # nothing moving, nothing to show

    command = issue(hub, entity, "turn_on", {"brightness": 255})
    payload, _qos, _retain = await device.next_set("light/brightness")
    assert payload == b"100"
    # The convention's example: the exact value received goes to $target first, then the
    # light fades once a second (here faster).
    await device.publish("light/brightness/$target", "100")
    await eventually(lambda: attrs(hub, entity).get("target") == {"brightness": 255})
    for step in ("20", "40", "60"):
        await device.publish("light/brightness", step)
    await eventually(lambda: attrs(hub, entity).get("brightness") == 153)
    assert attrs(hub, entity)["target"] == {"brightness": 255}  # still on its way
    assert not command.done()
    for step in ("80", "100"):
        await device.publish("light/brightness", step)
    result = await asyncio.wait_for(command, 5)
    assert result.ok, result.reason
    current = attrs(hub, entity)
    assert current["brightness"] == 255
    assert current["target"] is None  # arrived: the move is over


async def test_a_target_of_a_setpoint_from_its_arrival_to_its_end(
    start_hub: StartHub, probe: MqttProbe
) -> None:
    thermostat = fixture("thermostat")
    hub = await start_hub()
    device = HomieDevice(probe, thermostat["id"])
    # Retained topics arrive in any order: a target before the description still counts.
    await device.publish("thermostat/setpoint/$target", "21.5")
    await device.announce(thermostat["description"], thermostat["values"])
    entity = f"{hub_id('hall-thermostat')}.thermostat_setpoint"
    await eventually(lambda: state(hub, entity) == 20.0)
    await eventually(lambda: attrs(hub, entity).get("target") == 21.5)

    # A target that does not parse for the property changes nothing.
    before = rejected(hub, "wrong_type")
    await device.publish("thermostat/setpoint/$target", "warm")
    await eventually(lambda: rejected(hub, "wrong_type") == before + 1)
    assert attrs(hub, entity)["target"] == 21.5

    # Reached: cleared, and a retained target equal to the value is no move at all.
    await device.publish("thermostat/setpoint", "21.5")
    await eventually(lambda: attrs(hub, entity).get("target", "unset") is None)
    assert state(hub, entity) == 21.5

    # A new target, then its topic deleted before the value got there: no target either.
    await device.publish("thermostat/setpoint/$target", "23")
    await eventually(lambda: attrs(hub, entity).get("target") == 23.0)
    await device.publish("thermostat/setpoint/$target", b"")
    await eventually(lambda: attrs(hub, entity).get("target", "unset") is None)
    assert state(hub, entity) == 21.5

    # A target for a property the device does not describe is rejected like a value.
    before = rejected(hub, "unknown_property")
    await device.publish("thermostat/humidity/$target", "40")
    await eventually(lambda: rejected(hub, "unknown_property") == before + 1)


class Inbox:
    """A notification channel that keeps what the router delivers through it."""

    def __init__(self) -> None:
        self.delivered: list[Delivery] = []

    async def deliver(self, delivery: Delivery) -> DeliveryResult:
        self.delivered.append(delivery)
        return DeliveryResult(True, "kept")


async def test_alerts_become_events_that_reach_people_and_resolve(
    start_hub: StartHub, probe: MqttProbe, broker: MosquittoBroker
) -> None:
    plug = fixture("plug")
    hub = await start_hub(PEOPLE)
    assert hub.notifier is not None
    inbox = Inbox()
    hub.notifier.register_channel("email", inbox)
    events: list[CustomEvent] = []
    notes: list[Notification] = []
    hub.bus.subscribe(CustomEvent, events.append, owner="test")
    hub.bus.subscribe(Notification, notes.append, owner="test")
    device = HomieDevice(probe, "mydevid")
    did = hub_id("mydevid")

    # An alert before the description waits for the device's name; then both are told.
    await device.publish("$alert/childlost", ALERTS["childlost"])
    await device.announce(plug["description"], plug["values"])
    await device.publish("$alert/battery", ALERTS["battery"])
    await eventually(lambda: len(inbox.delivered) == 2, message="the alerts reached nobody")
    assert [e.event_type for e in events] == ["device_alert", "device_alert"]
    told = {e.data["alert"]: e.data for e in events}
    assert told["childlost"]["text"] == ALERTS["childlost"]
    assert told["battery"]["device"] == did
    assert told["battery"]["resolved"] is False
    by_key = {d.key: d for d in inbox.delivered}
    battery = by_key[f"device_alert:{did}:battery"]
    assert battery.address == "ada@example.com"
    assert battery.title == "Garage plug: battery"
    assert battery.text == "Garage plug: Battery is low, at 8%"
    assert not battery.resolved
    assert hub.registry.devices[did].native["alerts"] == ALERTS
    await asyncio.sleep(0.3)  # one storage flush: the alerts are stored with the device

    # The same retained alert again (a reconnect) is not news; the event stream has them.
    await device.publish("$alert/battery", ALERTS["battery"])
    await asyncio.sleep(0.3)
    assert len(events) == 2

    # Batteries replaced: the device deletes the topic and the incident is closed.
    await device.publish("$alert/battery", b"")
    await eventually(lambda: len(inbox.delivered) == 3)
    resolved = inbox.delivered[-1]
    assert resolved.key == f"device_alert:{did}:battery"
    assert resolved.resolved
    assert resolved.text == "Garage plug: resolved: Battery is low, at 8%"
    assert events[-1].data["resolved"] is True
    assert hub.registry.devices[did].native["alerts"] == {"childlost": ALERTS["childlost"]}
    assert all(n.data.get("event_type") == "device_alert" for n in notes)

    # Logs are not the hub's: nothing happens, nothing is rejected.
    bad_before = rejected(hub, "bad_topic")
    await device.publish("$log/warn", "battery low", retain=False)
    # A broken alert topic or an empty message is rejected, and changes nothing.
    await device.publish("$alert/Bad_Id", "x")
    await device.publish("$alert/battery", b"\x00")
    await eventually(lambda: rejected(hub, "bad_topic") == bad_before + 1)
    await eventually(lambda: rejected(hub, "wrong_type") >= 1)
    assert len(events) == 3

    # After a restart the retained alert comes again: told before, so not told again.
    config = hub.config_path
    await hub.stop()
    again = await start_hub(config=config)
    assert again.notifier is not None
    told_again: list[CustomEvent] = []
    again.bus.subscribe(CustomEvent, told_again.append, owner="test")
    await eventually(lambda: again.registry.devices[did].available)
    await asyncio.sleep(0.5)
    assert told_again == []
    assert again.registry.devices[did].native["alerts"] == {"childlost": ALERTS["childlost"]}

    # The hub's event stream carries them for other processes (and `event` rule triggers).
    with MqttProbe(broker.url) as watcher:
        await asyncio.to_thread(watcher.subscribe, f"{again.base_topic}/events/custom_event")
        await device.publish("$alert/childlost", b"")
        _topic, payload = await asyncio.to_thread(
            watcher.wait_for, f"{again.base_topic}/events/custom_event"
        )
    body: dict[str, Any] = json.loads(payload)
    assert body["event_type"] == "device_alert"
    assert body["data"]["alert"] == "childlost"
    assert body["data"]["resolved"] is True
