"""Settings of the firmware adapter (``adapters: {firmware: ...}`` in ``hub.yaml``).

.. code-block:: yaml

    adapters:
      firmware:
        profiles: [tasmota, shelly-gen2, esphome, generic-json, my-profiles/acme.yaml]
        tasmota:                        # per profile: its name (a path's file stem)
          devices: [plug_kitchen, {topic: sonoff_dual, id: dual, area: kitchen}]
          full_topic: "%prefix%/%topic%/"   # the profile's own options
        shelly-gen2:
          devices: [shellyplus1pm-a8032ab12345]
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adapters.firmware.profile import BUNDLED, profile_name

Scalar = str | int | float | bool


class EntityOverride(BaseModel):
    """What an installation says about one entity of a device (the firmware does not)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    unit: str | None = None
    device_class: str | None = None


class DeviceEntry(BaseModel):
    """A device listed in settings: its name on the wire, plus what the firmware does not say.

    The name on the wire is ``key:`` or the profile's own variable (``topic: plug_kitchen``
    for Tasmota); a bare string in the list is that name. Other keys are the profile's
    device variables.
    """

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, str] = Field(init=False)

    key: str | None = Field(default=None, min_length=1)
    id: str | None = Field(default=None, min_length=1, max_length=64)
    name: str | None = None
    area: str | None = None
    entities: dict[str, EntityOverride] = Field(default_factory=dict)

    @property
    def vars(self) -> dict[str, str]:
        """The device variables the entry gives."""
        return dict(self.__pydantic_extra__ or {})


class ProfileSettings(BaseModel):
    """One profile's settings: its devices, whether others may appear, and its options.

    Other keys are the profile's options (``full_topic`` for Tasmota); they are checked
    against the profile when it is loaded.
    """

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Scalar] = Field(init=False)

    devices: list[DeviceEntry] = Field(default_factory=list)
    discover: bool | None = None

    @field_validator("devices", mode="before")
    @classmethod
    def _bare_names(cls, value: Any) -> Any:
        # A bare string is the device's name on the wire: one error path, not two union ones.
        if isinstance(value, list):
            return [{"key": item} if isinstance(item, str) else item for item in value]
        return value

    @property
    def options(self) -> dict[str, Scalar]:
        """The option values this installation sets."""
        return dict(self.__pydantic_extra__ or {})


class FirmwareSettings(BaseModel):
    """The adapter's settings; a key named after a loaded profile holds that profile's settings.

    Any other key is an error (with a suggestion), as for every plug-in.
    """

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, ProfileSettings | None] = Field(init=False)

    profiles: list[str] = Field(default_factory=lambda: list(BUNDLED), min_length=1)
    max_payload: int = Field(default=64 * 1024, ge=256, le=16 * 1024 * 1024)

    @model_validator(mode="after")
    def _known_sections(self) -> FirmwareSettings:
        names = [profile_name(ref) for ref in self.profiles]
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ValueError(f"profile {name!r} is listed twice")
            seen.add(name)
        for key in self.__pydantic_extra__ or {}:
            if key not in seen:
                choices = [*names, *FirmwareSettings.model_fields]
                close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"unknown key {key!r}{hint}: a profile's settings go under its name, "
                    f"and the profiles in use are {', '.join(names)}"
                )
        return self

    def for_profile(self, name: str) -> ProfileSettings:
        """The settings of one profile (empty when the installation gives none)."""
        found = (self.__pydantic_extra__ or {}).get(name)
        return found if found is not None else ProfileSettings()


def device_vars(entry: DeviceEntry, key_name: str) -> dict[str, str]:
    """The device variables an entry gives, its name on the wire under ``key_name``."""
    found = entry.vars
    if entry.key is not None:
        found[key_name] = entry.key
    return found
