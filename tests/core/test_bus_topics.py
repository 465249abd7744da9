"""The event bus and the topic router."""

from __future__ import annotations

import logging

import pytest

from hub.bus import EventBus
from hub.events import DeviceAvailability, DeviceRemoved, Event
from hub.topics import InvalidTopic, Topic, TopicFilter, TopicRouter


def test_subscription_returns_its_own_undo() -> None:
    bus = EventBus()
    seen: list[str] = []
    undo = bus.subscribe(DeviceRemoved, lambda e: seen.append(e.device_id), owner="t")
    bus.publish(DeviceRemoved("a"))
    undo()
    bus.publish(DeviceRemoved("b"))
    assert seen == ["a"]


def test_listener_gets_only_its_event_type_and_catch_all_gets_everything() -> None:
    bus = EventBus()
    typed: list[Event] = []
    everything: list[Event] = []
    bus.subscribe(DeviceRemoved, typed.append, owner="typed")
    bus.subscribe_all(everything.append, owner="all")
    bus.publish(DeviceRemoved("a"))
    bus.publish(DeviceAvailability("a", True))
    assert [type(e) for e in typed] == [DeviceRemoved]
    assert [type(e) for e in everything] == [DeviceRemoved, DeviceAvailability]


def test_a_catch_all_is_not_called_for_the_types_it_excepts() -> None:
    """The mirror's catch-all skips StateChanged this way: not called at all, so the hot
    path pays nothing for it; everything else still reaches it."""
    bus = EventBus()
    everything: list[Event] = []
    undo = bus.subscribe_all(everything.append, owner="all", except_types=(DeviceRemoved,))
    assert not bus.has_listeners(DeviceRemoved)
    assert bus.has_listeners(DeviceAvailability)
    bus.publish(DeviceRemoved("a"))
    bus.publish(DeviceAvailability("a", True))
    assert [type(e) for e in everything] == [DeviceAvailability]
    undo()
    assert not bus.has_listeners(DeviceAvailability)


def test_failing_listener_is_logged_with_owner_and_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    seen: list[str] = []

    def broken(event: DeviceRemoved) -> None:
        raise RuntimeError("boom")

    bus.subscribe(DeviceRemoved, broken, owner="broken-plugin")
    bus.subscribe(DeviceRemoved, lambda e: seen.append(e.device_id), owner="ok")
    with caplog.at_level(logging.ERROR):
        bus.publish(DeviceRemoved("x"))
    assert seen == ["x"]
    assert bus.listener_errors == 1
    assert "broken-plugin/device_removed" in caplog.text


async def test_async_listener_failure_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    seen: list[str] = []

    async def broken(event: DeviceRemoved) -> None:
        raise ValueError("async boom")

    async def fine(event: DeviceRemoved) -> None:
        seen.append(event.device_id)

    bus.subscribe(DeviceRemoved, broken, owner="async-broken")
    bus.subscribe(DeviceRemoved, fine, owner="async-ok")
    bus.publish(DeviceRemoved("y"))
    await bus.drain()
    assert seen == ["y"]
    assert "async-broken/device_removed" in caplog.text


def test_listener_may_unsubscribe_itself_during_dispatch() -> None:
    bus = EventBus()
    seen: list[str] = []
    undo_box: list[object] = []

    def once(event: DeviceRemoved) -> None:
        seen.append(event.device_id)
        undo_box[0]()  # type: ignore[operator]

    undo_box.append(bus.subscribe(DeviceRemoved, once, owner="once"))
    bus.publish(DeviceRemoved("1"))
    bus.publish(DeviceRemoved("2"))
    assert seen == ["1"]


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("home/+/state", "home/plug/state", True),
        ("home/+/state", "home/plug/config", False),
        ("home/+/state", "home/a/b/state", False),
        ("home/#", "home", True),
        ("home/#", "home/a/b/c", True),
        ("#", "anything/at/all", True),
        ("#", "$SYS/broker/uptime", False),
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/broker/uptime", True),
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("+/+", "a/b", True),
        ("+", "a/b", False),
    ],
)
def test_router_follows_mqtt_matching_rules(topic_filter: str, topic: str, matches: bool) -> None:
    router: TopicRouter[str] = TopicRouter()
    router.add(topic_filter, "x")
    assert (router.match(topic) == ("x",)) is matches


def test_router_removal_and_filters_listing() -> None:
    router: TopicRouter[str] = TopicRouter()
    undo_a = router.add("home/+/state", "a")
    router.add("hub/command", "b")
    router.add("z/#", "c")
    assert set(router.filters()) == {"home/+/state", "hub/command", "z/#"}
    assert router.match("home/x/state") == ("a",)
    assert router.match("z/y") == ("c",)
    undo_a()  # a remembered match is forgotten when the subscriptions change
    assert router.match("home/x/state") == ()
    router.add("home/#", "d")
    assert router.match("home/x/state") == ("d",)
    assert "home/+/state" not in set(router.filters())


@pytest.mark.parametrize("bad", ["a/#/b", "a/b#", "a+/b", "", "nul\x00byte"])
def test_invalid_filters_are_refused(bad: str) -> None:
    with pytest.raises(InvalidTopic):
        TopicFilter(bad)


@pytest.mark.parametrize("bad", ["a/+/b", "a/#", ""])
def test_publish_topics_refuse_wildcards(bad: str) -> None:
    with pytest.raises(InvalidTopic):
        Topic(bad)
