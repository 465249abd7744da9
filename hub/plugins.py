"""Plug-in discovery (entry points) and supervision (restart with exponential back-off)."""

from __future__ import annotations

import asyncio
import difflib
import logging
import time
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.events import PluginHealth

if TYPE_CHECKING:
    from hub.api import Plugin
    from hub.config import HubConfig
    from hub.core import Hub
    from hub.yamlsource import ConfigIssue, SourceDoc

_LOGGER = logging.getLogger(__name__)

GROUPS = {"adapter": "hub.adapters", "frontend": "hub.frontends"}
SECTIONS = {"adapter": "adapters", "frontend": "frontends"}
INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 60.0
# A plug-in that ran this long without failing starts its back-off from scratch again.
STABLE_AFTER = 60.0


def available_plugins(kind: str) -> dict[str, EntryPoint]:
    """Return the installed plug-ins of a kind by name, without importing any of them."""
    return {ep.name: ep for ep in entry_points(group=GROUPS[kind])}


class PluginLoadError(Exception):
    """A plug-in is not installed, cannot be imported, or is not a Plugin."""


def load_plugin_class(kind: str, name: str) -> type[Plugin]:
    """Import one plug-in's class by its entry-point name."""
    from hub.api import Plugin

    found = available_plugins(kind)
    entry = found.get(name)
    if entry is None:
        guess = difflib.get_close_matches(name, list(found), n=1)
        hint = f" (did you mean {guess[0]!r}?)" if guess else ""
        have = ", ".join(sorted(found)) or "none"
        raise PluginLoadError(f"no {kind} called {name!r} is installed{hint}; installed: {have}")
    try:
        loaded = entry.load()
    except Exception as exc:
        raise PluginLoadError(f"{kind} {name!r} failed to import: {exc}") from exc
    if not (isinstance(loaded, type) and issubclass(loaded, Plugin)):
        raise PluginLoadError(f"{kind} {name!r} ({entry.value}) is not a hub.api.Plugin subclass")
    return loaded


def check_plugins(
    config: HubConfig, source: SourceDoc, config_dir: Path | None = None
) -> list[ConfigIssue]:
    """Validate enabled plug-ins for `hub check`: installed, importable, settings valid, and
    whatever the plug-in's own :meth:`~hub.api.Plugin.check` finds (e.g. its data files).

    ``config_dir`` is the folder of ``hub.yaml`` (default: the folder of ``source``'s file).
    """
    from hub.api import CheckContext
    from hub.config import validate_model
    from hub.yamlsource import ConfigIssue

    base = config_dir if config_dir is not None else Path(source.file).parent
    issues: list[ConfigIssue] = []
    for kind, section_name in SECTIONS.items():
        section = getattr(config, section_name)
        for name, section_config in section.items():
            if not section_config.enabled:
                continue
            path: tuple[str | int, ...] = (section_name, name)
            line, col = source.position(path)
            try:
                cls = load_plugin_class(kind, name)
            except PluginLoadError as exc:
                issues.append(
                    ConfigIssue(source.file, line, col, f"{section_name}.{name}", str(exc))
                )
                continue
            settings: Any = section_config.settings
            if cls.settings_model is not None:
                settings, found = validate_model(
                    cls.settings_model, section_config.settings, source, path
                )
                issues.extend(found)
                if settings is None:
                    continue  # the hook gets valid settings only
            where = CheckContext(base, source, (section_name, name))
            try:
                issues.extend(cls.check(settings, where))
            except Exception as exc:  # a plug-in's bug must not hide the other problems
                message = f"{kind} {name!r}: its check failed: {type(exc).__name__}: {exc}"
                issues.append(
                    ConfigIssue(source.file, line, col, f"{section_name}.{name}", message)
                )
    return issues


@dataclass
class PluginStatus:
    """A plug-in's health as shown by `hub` status topics and health checks."""

    name: str
    kind: str
    state: str = "starting"  # starting, running, degraded, restarting, failed, stopped
    healthy: bool = False
    restarts: int = 0
    last_error: str = ""
    counters: dict[str, int] = field(default_factory=dict)  # the plug-in's own (count())

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready form."""
        return {
            "kind": self.kind,
            "state": self.state,
            "healthy": self.healthy,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "counters": dict(self.counters),
        }


class PluginManager:
    """Starts the plug-ins ``hub.yaml`` enables, each in its own supervised task."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self.status: dict[str, PluginStatus] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    def stopping(self) -> bool:
        """True once :meth:`stop_all` has begun."""
        return self._stopping

    def health(self) -> dict[str, dict[str, Any]]:
        """Every plug-in's status by name."""
        return {name: status.to_dict() for name, status in self.status.items()}

    async def start_all(self) -> None:
        """Import and start every enabled plug-in; never raises for a plug-in's failure."""
        from hub.config import validate_model
        from hub.yamlsource import SourceDoc

        config = self._hub.config
        for kind, section_name in SECTIONS.items():
            for name, section_config in getattr(config, section_name).items():
                if not section_config.enabled:
                    continue
                key = f"{kind}:{name}"
                status = PluginStatus(name, kind)
                self.status[key] = status
                try:
                    cls = load_plugin_class(kind, name)
                except PluginLoadError as exc:
                    self._mark(status, "failed", str(exc))
                    continue
                settings: Any = section_config.settings
                if cls.settings_model is not None:
                    source = self._hub.source or SourceDoc(
                        {}, str(self._hub.config_path or "hub.yaml")
                    )
                    settings, issues = validate_model(
                        cls.settings_model, section_config.settings, source, (section_name, name)
                    )
                    if settings is None:
                        self._mark(status, "failed", "; ".join(i.message for i in issues))
                        continue
                self._tasks[key] = asyncio.get_running_loop().create_task(
                    self._supervise(cls, settings, status), name=f"plugin {key}"
                )

    def count(self, kind: str, name: str, counter: str, amount: int = 1) -> None:
        """Add to a plug-in's own counter (kept across its restarts)."""
        status = self.status.get(f"{kind}:{name}")
        if status is not None:
            status.counters[counter] = status.counters.get(counter, 0) + amount

    def report(self, kind: str, name: str, healthy: bool, reason: str = "") -> None:
        """A running plug-in's own word on its health (e.g. its service refused the login).

        It stays running (and keeps retrying on its own); health shows ``degraded`` and why.
        """
        status = self.status.get(f"{kind}:{name}")
        if status is None or status.state not in ("running", "degraded"):
            return
        self._mark(status, "running" if healthy else "degraded", "" if healthy else reason)

    def _mark(self, status: PluginStatus, state: str, error: str = "") -> None:
        healthy = state == "running"
        changed = status.healthy != healthy or status.state != state
        status.state, status.healthy = state, healthy
        if error:
            status.last_error = error
            _LOGGER.error("%s %s: %s", status.kind, status.name, error)
        if changed:
            self._hub.bus.publish(PluginHealth(status.name, healthy, error))

    async def _supervise(self, cls: type[Plugin], settings: Any, status: PluginStatus) -> None:
        from hub.api import PluginContext

        failures = 0
        while not self._stopping:
            context = PluginContext(self._hub, status.name, status.kind)
            plugin = cls(context, settings)
            started_at = time.monotonic()
            error = ""
            try:
                await plugin.start()
                self._mark(status, "running")
                await plugin.run()
                error = "run() returned while the hub was running"
            except asyncio.CancelledError:
                await self._stop_plugin(plugin, context, status)
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                _LOGGER.exception("%s %s crashed", status.kind, status.name)
            await self._stop_plugin(plugin, context, status)
            if self.stopping():
                break
            failures = 1 if time.monotonic() - started_at > STABLE_AFTER else failures + 1
            delay = min(INITIAL_BACKOFF * 2 ** (failures - 1), MAX_BACKOFF)
            status.restarts += 1
            self._mark(status, "restarting", f"{error}; restarting in {delay:g} s")
            await asyncio.sleep(delay)
        status.state = "stopped"

    async def _stop_plugin(self, plugin: Plugin, context: Any, status: PluginStatus) -> None:
        try:
            await asyncio.wait_for(plugin.stop(), timeout=10)
        except Exception:
            _LOGGER.exception("%s %s failed to stop cleanly", status.kind, status.name)
        finally:
            context.close()

    async def stop_all(self) -> None:
        """Stop every plug-in (each one's ``stop`` runs; registrations are undone)."""
        self._stopping = True
        for task in self._tasks.values():
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for status in self.status.values():
            status.state, status.healthy = "stopped", False
        self._tasks.clear()
