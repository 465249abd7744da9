"""Declarative firmware profiles (``firmware-bridges/*.yaml``) read by one generic adapter.

A new firmware family is a new profile file; see ``firmware-bridges/README.md``.
"""

from adapters.firmware.adapter import FirmwareProfiles
from adapters.firmware.profile import Profile, ProfileError, load_profile

__all__ = ["FirmwareProfiles", "Profile", "ProfileError", "load_profile"]
