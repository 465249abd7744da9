"""MySensors adapter: a serial gateway's nodes as hub devices.

Enable it in ``hub.yaml``::

    adapters:
      mysensors:
        port: /dev/ttyUSB0        # or any pyserial URL, e.g. socket://gateway.lan:5003
        baudrate: 115200
        gateway_id: mysensors     # device ids: mysensors_gateway, mysensors_7, ...
        nodes: {7: {name: Garage relay, area: garage}}

See ``README.md`` here, :mod:`adapters.mysensors.protocol` for the line format and
``firmware-bridges/mysensors-node/`` for the protocol subset and a reference node.
"""

from adapters.mysensors.adapter import MySensors
from adapters.mysensors.settings import Settings

__all__ = ["MySensors", "Settings"]
