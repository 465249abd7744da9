"""Zigbee2MQTT adapter: the devices, groups and network map of a Zigbee2MQTT bridge.

Enable it in ``hub.yaml``::

    adapters:
      zigbee2mqtt:
        base_topic: zigbee2mqtt      # Zigbee2MQTT's mqtt.base_topic
        request_timeout: 10s         # bridge/request/... answers
        networkmap_timeout: 3m       # a network scan is slow
        # networkmap_interval: 6h    # unset (default): network maps only on demand

See :mod:`adapters.zigbee2mqtt.adapter` for the topics it reads and writes.
"""

from adapters.zigbee2mqtt.adapter import Zigbee2Mqtt
from adapters.zigbee2mqtt.requests import BridgeRequestError
from adapters.zigbee2mqtt.settings import Settings

__all__ = ["BridgeRequestError", "Settings", "Zigbee2Mqtt"]
