"""Which discovery devices another adapter already keeps, by their hardware identities.

Firmwares that publish Home Assistant discovery often have a dedicated adapter too:
Zigbee2MQTT announces every Zigbee device (``device.identifiers: ["zigbee2mqtt_<ieee>"]``,
``via_device: "zigbee2mqtt_bridge_<ieee>"``) while the zigbee2mqtt adapter registers the same
device with the identity ``ieee: <ieee>``; Tasmota and ESPHome put the MAC in
``connections`` or ``identifiers`` while the firmware profiles keep ``mac``. The rule here is
general: a discovery device is someone else's when one of its identifiers or connections is
the same address as an identity of a device another (enabled) adapter owns.

Addresses are compared normalised: lower case, MACs and IEEE addresses as bare hex
(``A4:CF:12:AB:CD:EF``, ``a4-cf-12-ab-cd-ef`` and ``a4cf12abcdef`` are the same;
``0x00158d0003cb2b18`` and ``00:15:8d:00:03:cb:2b:18`` too). An identifier also counts by
its part after the last ``_`` (the ``<integration>_<address>`` habit). Short values (under 6
characters) and IP addresses, which are reassigned, never match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from adapters.ha_discovery.components import DeviceInfo

MIN_KEY: Final = 6
# Identities that do not identify hardware: an address moves to another device over time.
UNSTABLE: Final = frozenset({"ip", "ipv4", "ipv6", "ip_address", "host", "hostname"})
_SEPARATORS = re.compile(r"[:.\-]")
_HEX_ADDRESS = re.compile(r"[0-9a-f]{12}|[0-9a-f]{16}")


def normalise(value: str) -> str:
    """One address, written one way: MAC and IEEE addresses as bare lower-case hex."""
    text = value.strip().lower()
    bare = _SEPARATORS.sub("", text.removeprefix("0x"))
    return bare if _HEX_ADDRESS.fullmatch(bare) else text


def _keys(values: Iterable[str], *, split: bool) -> frozenset[str]:
    keys: set[str] = set()
    for value in values:
        keys.add(normalise(value))
        if split:
            # "<integration>_<address>": zigbee2mqtt_0x00158d..., zigbee2mqtt_bridge_0x00124b...
            keys.add(normalise(value.rpartition("_")[2]))
    return frozenset(k for k in keys if len(k) >= MIN_KEY)


def discovery_keys(info: DeviceInfo) -> frozenset[str]:
    """The addresses a discovery ``device`` block names (identifiers and connections)."""
    return _keys(
        [*info.identifiers, *(value for kind, value in info.connections if kind not in UNSTABLE)],
        split=True,
    )


def identity_keys(identities: Mapping[str, str], *, split: bool = False) -> frozenset[str]:
    """The addresses a hub device's identities name (``split``: identifiers of our own)."""
    return _keys((str(v) for k, v in identities.items() if k not in UNSTABLE and v), split=split)


class KeyIndex:
    """Devices by the addresses they hold, updated one device at a time."""

    def __init__(self) -> None:
        self._keys: dict[str, frozenset[str]] = {}  # device id -> its keys
        self._by_key: dict[str, set[str]] = {}  # key -> device ids

    def set(self, device_id: str, keys: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
        """Give a device its keys (empty: forget it); return the keys it gained and lost."""
        old = self._keys.get(device_id, frozenset())
        if keys == old:
            return frozenset(), frozenset()
        gained, lost = keys - old, old - keys
        for key in lost:
            holders = self._by_key.get(key)
            if holders is not None:
                holders.discard(device_id)
                if not holders:
                    del self._by_key[key]
        for key in gained:
            self._by_key.setdefault(key, set()).add(device_id)
        if keys:
            self._keys[device_id] = keys
        else:
            self._keys.pop(device_id, None)
        return gained, lost

    def holders(self, keys: Iterable[str]) -> list[str]:
        """The devices holding any of ``keys``, in a stable order."""
        found: set[str] = set()
        for key in keys:
            found |= self._by_key.get(key, set())
        return sorted(found)

    def keys_of(self, device_id: str) -> frozenset[str]:
        """The keys a device holds."""
        return self._keys.get(device_id, frozenset())
