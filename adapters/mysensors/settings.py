"""Settings of the MySensors adapter (``adapters: {mysensors: {...}}`` in ``hub.yaml``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.api import Duration, check_id

#: A duration that must be positive (the port's re-open back-off).
Seconds = Annotated[Duration, Field(gt=0)]
#: A node's silence limit: 0 turns the watch off, at most a week.
Silence = Annotated[Duration, Field(ge=0, le=7 * 86400)]
#: How long a node may stay silent by default: twice the 15-minute sleep of MySensors'
#: battery-powered example sketches and six times the reference node's 5-minute heartbeat.
#: Awake nodes are asked for a heartbeat halfway through, so only dead (or sleeping) nodes
#: reach it.
DEFAULT_NODE_TIMEOUT = 1800.0


class NodeSettings(BaseModel):
    """What the hub calls one node and where it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, min_length=1, max_length=128)
    area: str | None = None
    #: This node's silence limit instead of ``node_timeout`` (0: never mark it offline for
    #: being silent, e.g. a battery node that sleeps for hours).
    timeout: Silence | None = None

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
    #: A node heard from nothing for this long is offline until it speaks again; halfway
    #: through, the hub asks it for a heartbeat, which every awake MySensors node answers.
    #: 0 turns the watch off (per node: ``nodes: {7: {timeout: 0}}``).
    node_timeout: Silence = DEFAULT_NODE_TIMEOUT

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
