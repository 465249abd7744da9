"""What the adapter checks before it speaks: the profiles ``hub.yaml`` names and the settings
given for each. The adapter's start and ``hub check`` (through :meth:`FirmwareProfiles.check`)
run the same checks, so a typo in a profile or its settings shows before the hub starts.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adapters.firmware.profile import (
    BUNDLED_DIR,
    Profile,
    ProfileError,
    load_profile,
    profile_name,
    resolve_ref,
)
from adapters.firmware.settings import DeviceEntry, FirmwareSettings, ProfileSettings, device_vars
from adapters.firmware.templates import TemplateError, compile_topic
from hub.api import CheckContext, ConfigIssue

#: A problem with the settings: its path under the adapter's section, and what is wrong.
Problem = tuple[tuple[str | int, ...], str]


def hostile(value: str) -> bool:
    """True for a variable value that must never name a device or become part of a topic."""
    # A variable taken from a topic or payload names devices and becomes part of topics
    # we publish to: refuse path tricks, control characters and absurd lengths outright.
    return ".." in value or len(value) > 128 or any(ord(c) < 32 or c in "+#" for c in value)


def dotted(path: tuple[str | int, ...]) -> str:
    """``("tasmota", "devices", 0)`` written as ``tasmota.devices[0]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def install_problems(
    profile: Profile,
    settings: ProfileSettings,
    literals: Mapping[str, Any],
) -> tuple[dict[str, DeviceEntry], list[Problem]]:
    """Check one profile's settings against it; return the listed devices by key, and problems.

    ``literals`` are the built-in names topics may use (``base_topic``).
    """
    problems: list[Problem] = []
    for name, value in settings.options.items():
        problems.extend(((profile.name, name), p) for p in profile.check_overrides({name: value}))
    if not problems:
        # Options become topic levels: build every topic as the adapter will subscribe it.
        expander = profile.expander(settings.options)
        for rule in profile.rules:
            try:
                expanded = expander.expand(rule.topic, rule_vars=rule.vars, literals=literals)
                compile_topic(expanded, profile.var_patterns)
            except TemplateError as exc:
                problems.append(((profile.name,), f"{rule.name}: cannot build the topic: {exc}"))
    entries: dict[str, DeviceEntry] = {}
    key_name = profile.device.key
    allowed = profile.device_vars | frozenset(profile.var_patterns)
    for index, entry in enumerate(settings.devices):
        where: tuple[str | int, ...] = (profile.name, "devices", index)
        given = device_vars(entry, key_name)
        key = given.get(key_name)
        if key is None:
            problems.append((where, f"needs {key_name!r} (the device's name on the wire)"))
            continue
        unknown = set(given) - allowed
        if unknown:
            problems.append(
                (
                    where,
                    f"unknown key(s) {', '.join(sorted(unknown))}; use id, name, area, entities "
                    f"or the profile's variables ({', '.join(sorted(allowed))})",
                )
            )
        pattern = profile.var_patterns.get(key_name, ".+")
        if hostile(key) or not re.fullmatch(pattern, key):
            problems.append((where, f"{key!r} is not a valid {key_name}"))
        if key in entries:
            problems.append((where, f"{key!r} is listed twice"))
        entries[key] = entry
    return entries, problems


def _missing(ref: str, path: Path) -> str:
    if path.parent == BUNDLED_DIR and "/" not in ref and "\\" not in ref:
        bundled = sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))
        close = difflib.get_close_matches(ref, bundled, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (
            f"no bundled profile {ref!r}{hint}; bundled: {', '.join(bundled)}; "
            "a profile of your own is a path such as my-profiles/acme.yaml"
        )
    return f"profile file {ref!r} does not exist (looked for {path.resolve()})"


def check_settings(settings: FirmwareSettings, where: CheckContext) -> list[ConfigIssue]:
    """Every problem in the profiles the settings load and in the settings given for each.

    A problem inside a profile file is reported at its line there; one in ``hub.yaml`` at
    the key it is about.
    """
    issues: list[ConfigIssue] = []
    for index, ref in enumerate(settings.profiles):
        path = resolve_ref(ref, where.config_dir)
        name = profile_name(ref)
        if not path.is_file():
            issues.append(where.issue(("profiles", index), _missing(ref, path)))
            continue
        try:
            profile = load_profile(path, name)
        except ProfileError as exc:
            issues.extend(exc.issues)
            continue
        # The real base topic is hub.yaml's, checked on its own; any valid one builds the same.
        _entries, problems = install_problems(
            profile, settings.for_profile(name), {"base_topic": "hub"}
        )
        issues.extend(where.issue(path_, message) for path_, message in problems)
    return issues
