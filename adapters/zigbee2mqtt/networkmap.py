"""Zigbee2MQTT's raw network map (``bridge/response/networkmap``, ``type: raw``) as links.

The raw map is ``{"nodes": [{"ieeeAddr", "friendlyName", "type", ...}], "links": [{"source":
{"ieeeAddr"}, "target": {"ieeeAddr"}, "lqi", "linkquality", "depth", "relationship", ...}]}``:
each link is an entry of the *target*'s neighbour table describing the *source*, with the
link quality the target measured (0-255). Older releases carry ``sourceIeeeAddr`` /
``targetIeeeAddr`` and ``linkquality`` only; both forms are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.zigbee2mqtt.exposes import IEEE_PATTERN

MAX_NODES = 5000
MAX_LINKS = 50000


@dataclass(frozen=True, slots=True)
class Node:
    """A device in the map."""

    ieee: str
    name: str
    type: str


@dataclass(frozen=True, slots=True)
class Link:
    """A neighbour link: ``source`` as seen by ``target``, with its link quality."""

    source: str
    target: str
    lqi: int
    depth: int | None
    relationship: int | None


@dataclass(frozen=True, slots=True)
class NetworkMap:
    """A validated raw map."""

    nodes: tuple[Node, ...]
    links: tuple[Link, ...]


def _ieee(value: Any, where: str) -> str:
    if not isinstance(value, str) or not IEEE_PATTERN.match(value.lower()):
        raise ValueError(f"{where}: expected an IEEE address like 0x00158d00018255df")
    return value.lower()


def _small_int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{where}: expected an integer {low}-{high}, got {value!r}"[:200])
    return value


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _end(link: Mapping[str, Any], side: str, where: str) -> str:
    nested = link.get(side)
    if isinstance(nested, dict) and "ieeeAddr" in nested:
        return _ieee(nested["ieeeAddr"], f"{where}.{side}.ieeeAddr")
    return _ieee(link.get(f"{side}IeeeAddr"), f"{where}.{side}IeeeAddr")


def parse_raw(value: Any) -> NetworkMap:
    """Validate a raw map as a whole; raise ValueError saying what is wrong."""
    if not isinstance(value, dict):
        raise ValueError("the raw network map must be an object with 'nodes' and 'links'")
    nodes, links = value.get("nodes"), value.get("links")
    if not isinstance(nodes, list) or not isinstance(links, list):
        raise ValueError("the raw network map must have 'nodes' and 'links' lists")
    if len(nodes) > MAX_NODES or len(links) > MAX_LINKS:
        raise ValueError(f"the network map is too large ({len(nodes)} nodes, {len(links)} links)")
    out_nodes: list[Node] = []
    for index, node in enumerate(nodes):
        where = f"nodes[{index}]"
        if not isinstance(node, dict):
            raise ValueError(f"{where}: expected an object")
        ieee = _ieee(node.get("ieeeAddr"), f"{where}.ieeeAddr")
        name = node.get("friendlyName")
        kind = node.get("type")
        out_nodes.append(
            Node(
                ieee,
                name[:256] if isinstance(name, str) else ieee,
                kind if isinstance(kind, str) and len(kind) <= 32 else "Unknown",
            )
        )
    out_links: list[Link] = []
    for index, link in enumerate(links):
        where = f"links[{index}]"
        if not isinstance(link, dict):
            raise ValueError(f"{where}: expected an object")
        quality = link.get("lqi", link.get("linkquality"))
        out_links.append(
            Link(
                _end(link, "source", where),
                _end(link, "target", where),
                _small_int(quality, f"{where}.lqi", 0, 255),
                _optional_int(link.get("depth")),
                _optional_int(link.get("relationship")),
            )
        )
    return NetworkMap(tuple(out_nodes), tuple(out_links))
