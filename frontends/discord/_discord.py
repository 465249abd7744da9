"""discord.py, imported once without its voice module's deprecation noise.

discord.py's voice support imports ``audioop``, which Python 3.11+ deprecates; the hub uses
no voice, and the warning would otherwise fail test runs that turn warnings into errors.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord
    from discord import app_commands

__all__ = ["app_commands", "discord"]
