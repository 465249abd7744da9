"""Settings of the Homie adapter (``adapters: {homie: {...}}`` in hub.yaml)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

_DOMAIN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PREFIX = re.compile(r"^([a-z0-9][a-z0-9_-]{0,31})?$")


class Settings(BaseModel):
    """Where the Homie 5 devices live and how much the adapter accepts from them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The first topic level (Homie's "root topic"); devices are under ``<domain>/5/``.
    domain: str = "homie"
    #: Put in front of a Homie device id to make the hub's device id (``homie_kitchen-light``);
    #: Homie ids never contain ``_``, so this never collides with another Homie device.
    id_prefix: str = "homie_"
    #: Property values (and ``$state``) larger than this are rejected.
    max_payload: int = Field(default=65536, ge=1024, le=1_048_576)
    #: ``$description`` documents larger than this are rejected.
    max_description: int = Field(default=262_144, ge=4096, le=16 * 1_048_576)
    #: At most this many Homie devices are followed; more are rejected.
    max_devices: int = Field(default=5000, ge=1, le=100_000)

    @field_validator("domain")
    @classmethod
    def _check_domain(cls, value: str) -> str:
        if not _DOMAIN.match(value):
            raise ValueError(
                f"domain {value!r} must be one topic level of letters, digits, '_' or '-' "
                "(no '/', wildcards or '$'), e.g. 'homie'"
            )
        return value

    @field_validator("id_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _PREFIX.match(value):
            raise ValueError(
                f"id_prefix {value!r} must be empty or up to 32 lowercase letters, digits, '_' "
                "or '-', starting with a letter or digit"
            )
        return value
