"""Home Assistant MQTT discovery: the de facto standard many firmwares publish."""

from adapters.ha_discovery.adapter import HaDiscovery, Settings

__all__ = ["HaDiscovery", "Settings"]
