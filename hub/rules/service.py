"""The rule engine inside a running hub: loading, reloading, run-time control over MQTT.

``<base>/rules/<id>/set``   ``{"enabled": true|false}`` enables or disables a rule
``<base>/rules/reload``     any payload: reload the rule files (an invalid set is refused and
                            the rules already running stay)
``<base>/rules/command/<name>``  fire the named command ``<name>`` (JSON payload: its data)
``<base>/webhook/<name>``   fire the webhook ``<name>`` (until the web front-end serves
                            ``POST /api/webhook/<name>``, MQTT is how webhooks arrive)
``<base>/rules/status``     retained: every rule with enabled/running/last run
``<base>/events/rules_reload`` the outcome of each reload, with every problem found
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from hub.model import ID_PATTERN

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.rules.engine import RuleEngine
    from hub.rules.model import RuleSet

_LOGGER = logging.getLogger(__name__)


def rule_paths(hub: Hub) -> list[Path]:
    """The rule folders ``hub.yaml`` names, resolved against its folder."""
    base = hub.config_path.parent if hub.config_path is not None else None
    return list(hub.config.rules.resolved_paths(base))


def hub_location(hub: Hub) -> Any:
    """``hub.location`` as a schedule Location (None when not configured)."""
    from hub.rules.schedule import Location

    loc = hub.config.hub.location
    if loc is None:
        return None
    return Location(loc.latitude, loc.longitude, loc.elevation, loc.time_zone)


class RulesService:
    """Owns the engine of a running hub."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self.engine: RuleEngine | None = None
        self.store: Any = None
        self.last_error: str = ""
        self._undo: list[Any] = []

    def _load(self) -> RuleSet:
        from hub.rules.loader import load_rules
        from hub.yamlsource import SecretResolver

        hub = self._hub
        return load_rules(
            rule_paths(hub),
            missing_ok=not hub.config.rules.configured,
            secrets=SecretResolver(hub.secrets_path),
        )

    async def start(self) -> None:
        """Load the rules and start the engine (invalid rule files: log, run no rules)."""
        from hub.rules.clock import RealClock
        from hub.rules.engine import RuleEngine
        from hub.rules.model import RuleSet
        from hub.storage.rules import RuleStore
        from hub.yamlsource import ConfigError

        hub = self._hub
        settings = hub.config.rules
        try:
            ruleset = self._load()
        except ConfigError as exc:
            self.last_error = str(exc)
            _LOGGER.error("rules not loaded:\n%s", exc)
            ruleset = RuleSet({})
        if hub.storage is not None:
            self.store = RuleStore(
                hub.storage,
                traces_per_outcome=settings.traces_per_outcome,
                history_keep=settings.history_keep,
            )
        location = hub_location(hub)
        clock = RealClock(location.time_zone if location else "UTC")
        self.engine = RuleEngine(
            hub, clock, location=location, store=self.store, record_history=settings.history
        )
        self.engine.load(ruleset)
        await self.engine.start()
        _LOGGER.info("rule engine running %d rule(s)", len(ruleset.rules))
        if hub.mqtt is not None:
            base = hub.base_topic
            self._undo += [
                hub.mqtt.subscribe(f"{base}/rules/+/set", self._on_set, owner="rules", qos=1),
                hub.mqtt.subscribe(f"{base}/rules/reload", self._on_reload, owner="rules", qos=1),
                hub.mqtt.subscribe(f"{base}/rules/command/+", self._on_named, owner="rules", qos=1),
                hub.mqtt.subscribe(f"{base}/webhook/+", self._on_named, owner="rules", qos=1),
            ]
            self.publish_status()

    async def stop(self) -> None:
        """Stop the engine (durable timers stay for the next start)."""
        for undo in self._undo:
            undo()
        self._undo.clear()
        if self.engine is not None:
            await self.engine.stop()

    async def reload(self) -> tuple[bool, str]:
        """Reload the rule files; keep the running rules if the new set is invalid."""
        from hub.yamlsource import ConfigError

        assert self.engine is not None
        try:
            ruleset = self._load()
        except ConfigError as exc:
            self.last_error = str(exc)
            _LOGGER.error("rule reload refused; the previous rules keep running:\n%s", exc)
            return False, str(exc)
        await self.engine.reload(ruleset)
        self.last_error = ""
        _LOGGER.info("rules reloaded: %d rule(s)", len(ruleset.rules))
        self.publish_status()
        return True, f"{len(ruleset.rules)} rule(s) loaded"

    def publish_status(self) -> None:
        """Publish every rule's status, retained."""
        hub = self._hub
        if hub.mqtt is None or self.engine is None or not hub.mqtt.connected:
            return
        body = {"rules": self.engine.status(), "error": self.last_error}
        hub.mqtt.publish(f"{hub.base_topic}/rules/status", orjson.dumps(body), retain=True)

    def _on_set(self, topic: str, payload: bytes, received: float) -> None:
        rule_id = topic.split("/")[-2]
        assert self.engine is not None
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
            self._hub.reject(
                topic, 'expected {"enabled": true} or {"enabled": false}', kind="wrong_type"
            )
            return
        if not ID_PATTERN.match(rule_id) or rule_id not in self.engine.rules:
            self._hub.reject(topic, f"no rule called {rule_id!r}", kind="unknown_rule")
            return
        self.engine.set_enabled(rule_id, body["enabled"])
        _LOGGER.info("rule %s %s", rule_id, "enabled" if body["enabled"] else "disabled")
        self.publish_status()

    def _on_named(self, topic: str, payload: bytes, received: float) -> None:
        from hub.model import Context, Origin

        assert self.engine is not None
        name = topic.rsplit("/", 1)[1]
        try:
            data = orjson.loads(payload) if payload.strip() else None
        except orjson.JSONDecodeError:
            data = payload.decode("utf-8", "replace")
        context = Context(Origin.MQTT, topic)
        if "/webhook/" in topic:
            count = self.engine.fire_webhook(name, data, context)
        else:
            extra = data if isinstance(data, dict) else {"data": data}
            count = self.engine.fire_command(name, context, **extra)
        if count == 0:
            self._hub.reject(topic, f"no rule listens to {name!r}", kind="unknown_rule")

    def _on_reload(self, topic: str, payload: bytes, received: float) -> None:
        async def go() -> None:
            ok, message = await self.reload()
            hub = self._hub
            if hub.mqtt is not None and hub.mqtt.connected:
                hub.mqtt.publish(
                    f"{hub.base_topic}/events/rules_reload",
                    orjson.dumps({"ok": ok, "message": message}),
                )

        self._hub.spawn(go(), name="rules reload")
