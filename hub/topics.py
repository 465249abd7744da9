"""MQTT topic value objects and a trie that routes a topic to its matching subscriptions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

MAX_TOPIC_BYTES = 65535

T = TypeVar("T")


class InvalidTopic(ValueError):
    """A topic or topic filter breaks the MQTT rules."""


def _check_common(text: str, what: str) -> None:
    if not isinstance(text, str) or not text:
        raise InvalidTopic(f"{what} must be a non-empty string, got {text!r}")
    if len(text.encode("utf-8")) > MAX_TOPIC_BYTES:
        raise InvalidTopic(f"{what} is longer than {MAX_TOPIC_BYTES} bytes")
    if "\x00" in text:
        raise InvalidTopic(f"{what} {text!r} contains a NUL character")


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic to publish to: no wildcards."""

    value: str

    def __post_init__(self) -> None:
        _check_common(self.value, "topic")
        if "+" in self.value or "#" in self.value:
            raise InvalidTopic(f"topic {self.value!r} must not contain wildcards")

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class TopicFilter:
    """A subscription filter: ``+`` matches one level, a final ``#`` any remaining levels."""

    value: str

    def __post_init__(self) -> None:
        _check_common(self.value, "topic filter")
        levels = self.value.split("/")
        for index, level in enumerate(levels):
            if "#" in level and (level != "#" or index != len(levels) - 1):
                raise InvalidTopic(f"topic filter {self.value!r}: '#' must be a whole last level")
            if "+" in level and level != "+":
                raise InvalidTopic(f"topic filter {self.value!r}: '+' must be a whole level")

    def __str__(self) -> str:
        return self.value


def check_topic_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a valid base topic (levels, no wildcards, no outer slashes)."""
    Topic(prefix)
    if prefix.startswith("/") or prefix.endswith("/"):
        raise InvalidTopic(f"base topic {prefix!r} must not start or end with '/'")
    return prefix


@dataclass(slots=True)
class _Node(Generic[T]):
    children: dict[str, _Node[T]] = field(default_factory=dict)
    here: list[T] = field(default_factory=list)
    rest: list[T] = field(default_factory=list)  # subscribers of "<this level>/#"


# Topics whose matches are remembered at most; past it the memo starts afresh.
_MAX_MEMO = 50_000


class TopicRouter(Generic[T]):
    """Maps topic filters to values; ``match`` walks the topic's levels once.

    Matching cost depends on the topic's depth, not on the number of subscriptions, which
    keeps ingest flat as adapters add filters. A home's devices publish on the same few
    thousand topics over and over, so each topic's matches are also remembered until the
    subscriptions change: with the firmware adapters' filters the walk was a sixth of the
    time spent dispatching a message.
    """

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        self._exact: dict[str, list[T]] = {}
        self._memo: dict[str, tuple[T, ...]] = {}

    def add(self, topic_filter: str, value: T) -> Callable[[], None]:
        """Add ``value`` under ``topic_filter``; return the function that removes it."""
        TopicFilter(topic_filter)
        if "+" not in topic_filter and "#" not in topic_filter:
            bucket = self._exact.setdefault(topic_filter, [])
        else:
            node = self._root
            levels = topic_filter.split("/")
            for level in levels[:-1] if levels[-1] == "#" else levels:
                node = node.children.setdefault(level, _Node())
            bucket = node.rest if levels[-1] == "#" else node.here
        bucket.append(value)
        self._memo.clear()

        def remove() -> None:
            if value in bucket:
                bucket.remove(value)
                self._memo.clear()

        return remove

    def match(self, topic: str) -> tuple[T, ...]:
        """Return the values whose filters match ``topic``."""
        found = self._memo.get(topic)
        if found is None:
            found = self._memo[topic] = self._match(topic)
            if len(self._memo) > _MAX_MEMO:
                self._memo.clear()
        return found

    def _match(self, topic: str) -> tuple[T, ...]:
        found = list(self._exact.get(topic, ()))
        # Topics starting with '$' are never matched by wildcards at the first level (MQTT 4.7.2).
        if self._root.children or self._root.rest:
            levels = topic.split("/")
            self._walk(self._root, levels, 0, found, topic.startswith("$"))
        return tuple(found)

    def _walk(
        self, node: _Node[T], levels: list[str], index: int, found: list[T], system: bool
    ) -> None:
        if not (system and index == 0):
            found.extend(node.rest)
        if index == len(levels):
            found.extend(node.here)
            return
        child = node.children.get(levels[index])
        if child is not None:
            self._walk(child, levels, index + 1, found, system)
        if not (system and index == 0):
            plus = node.children.get("+")
            if plus is not None:
                self._walk(plus, levels, index + 1, found, system)

    def filters(self) -> Iterator[str]:
        """Yield every filter with at least one value (used to resubscribe after a reconnect)."""
        for topic, values in self._exact.items():
            if values:
                yield topic
        yield from self._filters(self._root, [])

    def _filters(self, node: _Node[T], prefix: list[str]) -> Iterator[str]:
        if node.rest:
            yield "/".join([*prefix, "#"])
        if node.here and prefix:
            yield "/".join(prefix)
        for level, child in node.children.items():
            yield from self._filters(child, [*prefix, level])
