"""Homie 5 adapter: devices that follow the Homie convention (``homie/5/<device>/...``).

Enable it in ``hub.yaml``::

    adapters:
      homie:
        domain: homie          # the first topic level (devices live under homie/5/)
        id_prefix: homie_      # hub device id = prefix + Homie device id

See :mod:`adapters.homie.adapter` for the topics it reads and writes.
"""

from adapters.homie.adapter import Homie
from adapters.homie.settings import Settings

__all__ = ["Homie", "Settings"]
