"""Settings of the Zigbee2MQTT adapter (``adapters: {zigbee2mqtt: {...}}`` in hub.yaml)."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, field_validator

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)?\s*$")
# A network scan stalls the Zigbee network for 10 s to 2 min, so a schedule, when someone asks
# for one, may not run it more often than this.
MIN_NETWORKMAP_INTERVAL = 300.0


def parse_seconds(value: object) -> float:
    """Return a duration (``10``, ``2.5``, ``500ms``, ``30s``, ``5m``, ``1h``) in seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '10s', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value.lower())):
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise ValueError(f"expected a duration like '10s', '5m' or '1h', got {value!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


Seconds = Annotated[float, BeforeValidator(parse_seconds)]


class Settings(BaseModel):
    """What the adapter needs to know about the Zigbee2MQTT instance it follows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Zigbee2MQTT's ``mqtt.base_topic``.
    base_topic: str = "zigbee2mqtt"
    #: Request a raw network map this often; none (the default) means only on demand.
    networkmap_interval: Seconds | None = None
    #: How long a ``bridge/request/...`` waits for its response.
    request_timeout: Seconds = 10.0
    #: How long a network map request waits: a scan takes 10 s to 2 min on a real network.
    networkmap_timeout: Seconds = 180.0

    @field_validator("base_topic")
    @classmethod
    def _check_base(cls, value: str) -> str:
        levels = value.split("/")
        if (
            not value
            or len(value) > 200
            or any(c in value for c in "+#\x00")
            or any(level in ("", ".", "..") for level in levels)
        ):
            raise ValueError(
                f"base_topic {value!r} must be MQTT topic levels without wildcards, empty "
                "levels, '.' or '..' (e.g. 'zigbee2mqtt')"
            )
        return value

    @field_validator("networkmap_interval")
    @classmethod
    def _check_interval(cls, value: float | None) -> float | None:
        if value is not None and value < MIN_NETWORKMAP_INTERVAL:
            raise ValueError(
                f"networkmap_interval must be at least {MIN_NETWORKMAP_INTERVAL:g} s: a network "
                "scan stalls the Zigbee network (leave it unset to scan only on demand)"
            )
        return value
