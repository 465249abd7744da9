"""Settings of the MySensors adapter (``adapters: {mysensors: {...}}`` in ``hub.yaml``)."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h)?\s*$")


def parse_seconds(value: object) -> float:
    """A duration (``2``, ``0.5``, ``500ms``, ``30s``, ``5m``, ``1h``) in seconds."""
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
_ID = re.compile(r"[a-z0-9][a-z0-9_\-]{0,63}")


def check_id(value: str, what: str) -> str:
    """Return ``value`` if it is a valid hub id (as areas and devices use), else raise."""
    if not _ID.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}: use 1-64 lowercase letters, digits, _ or -")
    return value


class NodeSettings(BaseModel):
    """What the hub calls one node and where it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, min_length=1, max_length=128)
    area: str | None = None

    @field_validator("area")
    @classmethod
    def _check_area(cls, value: str | None) -> str | None:
        return None if value is None else check_id(value, "area id")


class Settings(BaseModel):
    """One serial gateway: where it is plugged in and how its nodes are named."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: A device path (``/dev/ttyUSB0``, ``/dev/serial/by-id/...``) or any pyserial URL
    #: (``socket://host:5003``, ``rfc2217://host:port``).
    port: str = Field(min_length=1, max_length=1024)
    baudrate: int = Field(default=115200, ge=50, le=4_000_000)
    #: Prefix of the device ids: the gateway is ``<gateway_id>_gateway``, node 7 is
    #: ``<gateway_id>_7``. Keep it when moving the gateway to another port.
    gateway_id: str = "mysensors"
    name: str = Field(default="MySensors gateway", min_length=1, max_length=128)
    area: str | None = None
    #: Names and areas of nodes, by node id (1-254).
    nodes: dict[int, NodeSettings] = Field(default_factory=dict)
    #: Answer I_CONFIG with metric (M) or imperial (I) units; temperatures are °C or °F.
    metric: bool = True
    #: Re-open a lost port after this, doubling up to ``reopen_max``.
    reopen_min: Seconds = 1.0
    reopen_max: Seconds = 30.0
    #: Treat a node's ack echo of a command as its new state (for sketches that never report
    #: their actuators' state themselves); off: only a real report confirms a command.
    echo_confirms: bool = False

    @field_validator("port")
    @classmethod
    def _check_port(cls, value: str) -> str:
        if any(ch < " " for ch in value):
            raise ValueError("port must not hold control characters")
        return value

    @field_validator("gateway_id")
    @classmethod
    def _check_gateway(cls, value: str) -> str:
        check_id(value, "gateway_id")
        if len(value) > 48:
            raise ValueError("gateway_id must be at most 48 characters (device ids add to it)")
        return value

    @field_validator("area")
    @classmethod
    def _check_area(cls, value: str | None) -> str | None:
        return None if value is None else check_id(value, "area id")

    @field_validator("nodes")
    @classmethod
    def _check_nodes(cls, value: dict[int, NodeSettings]) -> dict[int, NodeSettings]:
        bad = [n for n in value if not 1 <= n <= 254]
        if bad:
            raise ValueError(f"node ids must be 1-254 (0 is the gateway), got {bad[0]}")
        return value
