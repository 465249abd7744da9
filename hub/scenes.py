"""Scenes: target states for many entities, applied together, watched, captured and reverted.

Scenes are written in YAML files in the scene folder (``scenes.folder`` in hub.yaml, by
default ``scenes/`` next to hub.yaml)::

    - id: movie
      name: Movie night
      transition: 2s
      entities:
        living_room_light.light: {state: "on", brightness: 40}
        living_room_blinds.cover: closed
        living_room_tv_plug.switch: "on"

Each entity's target becomes hub commands in that entity's own dialect; all entities are
commanded at once and one failure does not stop the others. Over MQTT a scene is applied
with ``<base>/scenes/<id>/apply``, reverted with ``<base>/scenes/<id>/revert``, and reports
``{"active": bool}`` retained on ``<base>/scenes/<id>/state``.

What the entities were before a scene was applied is stored (``scene_snapshots``), so that a
revert still works after the hub restarts; reverting removes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from hub.commands import Command, CommandError
from hub.durations import parse_duration
from hub.events import StateChanged
from hub.model import (
    CLIMATE_MODES,
    ENTITY_ID_PATTERN,
    Context,
    Entity,
    EntityKind,
    Origin,
    State,
    check_id,
)
from hub.yamlsource import ConfigError, ConfigIssue, SourceDoc, load_yaml, suggest

if TYPE_CHECKING:
    from hub.config import ScenesSection
    from hub.core import Hub
    from hub.storage.scenes import SceneSnapshot, SceneSnapshotStore

_LOGGER = logging.getLogger(__name__)

SCENE_KEYS = ("id", "name", "transition", "entities")
STATES = frozenset({"on", "off", "open", "closed", "locked", "unlocked"}) | CLIMATE_MODES
# Target attribute -> (low, high, tolerance when comparing with the current state).
NUMBERS: dict[str, tuple[float, float, float]] = {
    "brightness": (0, 255, 1.0),
    "color_temp": (50, 1000, 1.0),
    "position": (0, 100, 1.0),
    "temperature": (4, 40, 0.05),
}
TARGET_KEYS = ("state", *NUMBERS, "mode")
# The state attributes that a scene command can set again: what a revert snapshot keeps.
RESTORABLE_ATTRIBUTES = ("brightness", "color_temp", "position", "target_temperature")


class SceneError(LookupError):
    """A scene cannot be applied or reverted; the message says why."""


@dataclass(frozen=True, slots=True)
class Scene:
    """A named set of target states, one per entity."""

    id: str
    name: str
    entities: Mapping[str, Mapping[str, Any]]  # entity id -> {state, brightness, ...}
    transition: float | None = None
    file: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the YAML/JSON form; a target that is only a state is written as that state."""
        out: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.transition is not None:
            out["transition"] = f"{self.transition:g}s"
        out["entities"] = {
            entity_id: (target["state"] if list(target) == ["state"] else dict(target))
            for entity_id, target in self.entities.items()
        }
        return out


# ----- loading -------------------------------------------------------------------------------


def _check_target(
    doc: SourceDoc, path: tuple[str | int, ...], raw: Any, issues: list[ConfigIssue]
) -> dict[str, Any] | None:
    """Return one entity's target as a dict, or None after adding its issues."""
    short = isinstance(raw, str)  # `cover: closed`: point at the value, there is no key
    if short:
        raw = {"state": raw}
    if not isinstance(raw, dict):
        issues.append(
            doc.issue(
                path,
                f"expected a state such as 'on' or a mapping like {{state: 'on', brightness: 40}}"
                f", got {raw!r}",
                at_value=True,
            )
        )
        return None
    if not raw:
        issues.append(doc.issue(path, "the target is empty: give a state or attributes"))
        return None
    ok = True
    target: dict[str, Any] = {}
    for key, value in raw.items():
        where = path if short else (*path, key)
        if key not in TARGET_KEYS:
            hint = suggest(key, TARGET_KEYS)
            issues.append(doc.issue(where, f"unknown key {key!r}{hint}"))
            ok = False
        elif key == "state":
            if not isinstance(value, str) or value not in STATES:
                hint = suggest(str(value), STATES)
                issues.append(doc.issue(where, f"unknown state {value!r}{hint}", at_value=True))
                ok = False
            target[key] = value
        elif key == "mode":
            if value not in CLIMATE_MODES:
                hint = suggest(str(value), CLIMATE_MODES)
                issues.append(doc.issue(where, f"unknown mode {value!r}{hint}", at_value=True))
                ok = False
            target[key] = value
        else:
            low, high, _ = NUMBERS[key]
            number_ok = (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
                and low <= value <= high
            )
            if not number_ok:
                issues.append(
                    doc.issue(
                        where,
                        f"{key} must be a number from {low:g} to {high:g}, got {value!r}",
                        at_value=True,
                    )
                )
                ok = False
            target[key] = value
    return target if ok else None


def scenes_from_doc(doc: SourceDoc) -> tuple[list[Scene], list[ConfigIssue]]:
    """Return the scenes in a loaded YAML document and every problem found in it."""
    issues: list[ConfigIssue] = []
    scenes: list[Scene] = []
    data = doc.data
    if data is None:
        return scenes, issues
    if not isinstance(data, list):
        issues.append(doc.issue((), "expected a list of scenes (each starting with '- id:')"))
        return scenes, issues
    for index, raw in enumerate(data):
        path: tuple[str | int, ...] = (index,)
        if not isinstance(raw, dict):
            issues.append(doc.issue(path, "expected a scene: a mapping with id and entities"))
            continue
        ok = True
        for key in raw:
            if key not in SCENE_KEYS:
                issues.append(
                    doc.issue((*path, key), f"unknown key {key!r}{suggest(key, SCENE_KEYS)}")
                )
                ok = False
        scene_id = raw.get("id")
        if scene_id is None:
            issues.append(doc.issue(path, "a scene needs an 'id', e.g. id: movie"))
            ok = False
        else:
            try:
                check_id(str(scene_id) if not isinstance(scene_id, str) else scene_id, "scene id")
            except ValueError as exc:
                issues.append(doc.issue((*path, "id"), str(exc), at_value=True))
                ok = False
        name = raw.get("name", scene_id)
        if not isinstance(name, str):
            issues.append(doc.issue((*path, "name"), "the name must be text", at_value=True))
            ok = False
        transition: float | None = None
        if raw.get("transition") is not None:
            try:
                transition = parse_duration(raw["transition"])
            except ValueError as exc:
                issues.append(doc.issue((*path, "transition"), str(exc), at_value=True))
                ok = False
        entities_raw = raw.get("entities")
        targets: dict[str, dict[str, Any]] = {}
        if not isinstance(entities_raw, dict) or not entities_raw:
            issues.append(
                doc.issue(
                    (*path, "entities") if "entities" in raw else path,
                    "a scene needs 'entities': a mapping of entity id to target state",
                )
            )
            ok = False
        else:
            for entity_id, target_raw in entities_raw.items():
                where = (*path, "entities", entity_id)
                if not ENTITY_ID_PATTERN.match(entity_id):
                    issues.append(
                        doc.issue(
                            where,
                            f"invalid entity id {entity_id!r}: write <device>.<entity>, e.g. "
                            "kitchen_light.light",
                        )
                    )
                    ok = False
                    continue
                target = _check_target(doc, where, target_raw, issues)
                if target is None:
                    ok = False
                else:
                    targets[entity_id] = target
        if ok:
            scenes.append(Scene(str(scene_id), str(name), targets, transition, doc.file))
    return scenes, issues


def load_scenes(folder: Path) -> tuple[dict[str, Scene], list[ConfigIssue]]:
    """Load every ``*.yaml`` / ``*.yml`` file in ``folder``; return scenes by id and all issues."""
    scenes: dict[str, Scene] = {}
    issues: list[ConfigIssue] = []
    if not folder.is_dir():
        return scenes, issues
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    for file in files:
        try:
            doc = load_yaml(file)
        except ConfigError as exc:
            issues += exc.issues
            continue
        found, problems = scenes_from_doc(doc)
        issues += problems
        for index, scene in enumerate(found):
            if scene.id in scenes:
                other = scenes[scene.id].file
                issues.append(
                    doc.issue((index, "id"), f"scene {scene.id!r} is also defined in {other}")
                )
                continue
            scenes[scene.id] = scene
    return scenes, issues


def load_scene_folder(
    section: ScenesSection, base_dir: Path | None = None, source: SourceDoc | None = None
) -> tuple[Path, dict[str, Scene], list[ConfigIssue]]:
    """Load the scene folder hub.yaml names: the folder, its scenes by id and every issue.

    The default ``scenes/`` may be missing (no scenes); a folder that hub.yaml names must
    exist, and the issue then points at ``scenes.folder`` in ``source`` (hub.yaml).
    """
    folder = section.resolved_folder(base_dir)
    if folder.is_dir():
        scenes, issues = load_scenes(folder)
        return folder, scenes, issues
    if folder.exists():
        message = f"the scene folder {folder} is a file, not a folder"
    elif section.configured:
        message = f"scene folder not found: {folder} (create it, or fix scenes.folder)"
    else:
        return folder, {}, []
    if source is not None and section.configured:
        issue = source.issue(("scenes", "folder"), message, at_value=True)
    else:
        issue = ConfigIssue(str(folder), 1, 1, "", message)
    return folder, {}, [issue]


# ----- targets and states --------------------------------------------------------------------


def target_from_state(entity: Entity, state: State) -> dict[str, Any]:
    """The scene target that puts ``entity`` back into ``state`` (for capture and revert)."""
    return target_from_value(entity, state.value, state.attributes)


def target_from_value(entity: Entity, value: Any, attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The scene target that puts ``entity`` back to ``value`` with attributes ``attrs``."""
    target: dict[str, Any] = {}

    def number(attr: str, key: str) -> None:
        found = attrs.get(attr)
        if isinstance(found, int | float) and not isinstance(found, bool):
            low, high, _ = NUMBERS[key]
            target[key] = min(high, max(low, found))

    if entity.kind is EntityKind.LIGHT:
        target["state"] = value
        if value == "on":
            number("brightness", "brightness")
            number("color_temp", "color_temp")
    elif entity.kind is EntityKind.COVER:
        number("position", "position")
        if "position" not in target:
            target["state"] = "closed" if value in ("closed", "closing") else "open"
    elif entity.kind is EntityKind.CLIMATE:
        target["mode"] = value
        number("target_temperature", "temperature")
    else:
        target["state"] = value
    return target


def commands_for(
    entity: Entity, target: Mapping[str, Any], transition: float | None
) -> list[tuple[str, dict[str, Any]]]:
    """Translate one entity's target into (action, params) hub commands, in order."""
    state = target.get("state")
    kind = entity.kind
    if kind in (EntityKind.LIGHT, EntityKind.SWITCH):
        extra = {k: target[k] for k in ("brightness", "color_temp") if k in target}
        if extra and kind is EntityKind.SWITCH:
            raise CommandError(f"{entity.id} is a switch: it has no {', '.join(extra)}")
        if state not in ("on", "off", None) or (state is None and not extra):
            raise CommandError(f"{entity.id} is a {kind.value}: its state is 'on' or 'off'")
        params: dict[str, Any] = {}
        if kind is EntityKind.LIGHT and transition is not None:
            params["transition"] = transition
        if state == "off":
            return [("turn_off", params)]
        return [("turn_on", {**extra, **params})]
    if kind is EntityKind.COVER:
        if "position" in target:
            return [("set_position", {"position": target["position"]})]
        if state == "open":
            return [("open", {})]
        if state == "closed":
            return [("close", {})]
        raise CommandError(f"{entity.id} is a cover: give 'open', 'closed' or a position")
    if kind is EntityKind.CLIMATE:
        mode = target.get("mode", state)
        out: list[tuple[str, dict[str, Any]]] = []
        if mode is not None:
            if mode not in CLIMATE_MODES:
                raise CommandError(f"{entity.id}: unknown mode {mode!r}")
            out.append(("set_mode", {"mode": mode}))
        if "temperature" in target:
            out.append(("set_temperature", {"temperature": target["temperature"]}))
        if not out:
            raise CommandError(f"{entity.id} is a thermostat: give a mode or a temperature")
        return out
    if kind is EntityKind.LOCK:
        if state == "locked":
            return [("lock", {})]
        if state == "unlocked":
            return [("unlock", {})]
        raise CommandError(f"{entity.id} is a lock: its state is 'locked' or 'unlocked'")
    if kind in (EntityKind.NUMBER, EntityKind.SELECT):
        if state is None:
            raise CommandError(f"{entity.id} is a {kind.value}: give its value")
        return [("set_value", {"value": state})]
    raise CommandError(f"{entity.id} is a {kind.value} and cannot be set by a scene")


def _close(current: Any, wanted: Any, tolerance: float) -> bool:
    return (
        isinstance(current, int | float)
        and not isinstance(current, bool)
        and abs(float(current) - float(wanted)) <= tolerance
    )


def state_matches(state: State | None, target: Mapping[str, Any]) -> bool:
    """True when ``state`` is at ``target``: its value and every given attribute."""
    if state is None:
        return False
    attrs = state.attributes
    for key, wanted in target.items():
        if key in ("state", "mode"):
            if state.value != wanted:
                return False
        elif key == "temperature":
            if not _close(attrs.get("target_temperature"), wanted, NUMBERS[key][2]):
                return False
        elif not _close(attrs.get(key), wanted, NUMBERS[key][2]):
            return False
    return True


# ----- the service ---------------------------------------------------------------------------


class SceneService:
    """Loads scenes, applies and reverts them, and reports which are active over MQTT."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        # hub.yaml's folder; None: the folder the configuration was validated for, else cwd.
        self._base_dir = hub.config_path.parent if hub.config_path is not None else None
        self.folder = hub.config.scenes.resolved_folder(self._base_dir)
        self.scenes: dict[str, Scene] = {}
        self.issues: list[ConfigIssue] = []
        self._by_entity: dict[str, list[str]] = {}  # entity id -> ids of scenes that set it
        self._before: dict[str, SceneSnapshot] = {}
        self._store: SceneSnapshotStore | None = None
        # One snapshot write at a time, in the order asked: a revert's delete must not land
        # after the save of an apply that came after it.
        self._writes = asyncio.Lock()
        self._published: dict[str, bool] = {}
        self._undo: list[Any] = []

    def load(self) -> list[ConfigIssue]:
        """(Re)read the scene files; log and return the problems (bad scenes are skipped)."""
        self.folder, self.scenes, self.issues = load_scene_folder(
            self._hub.config.scenes, self._base_dir, self._hub.source
        )
        for issue in self.issues:
            _LOGGER.error("scene file problem: %s", issue)
        self._by_entity = {}
        for scene in self.scenes.values():
            for entity_id in scene.entities:
                self._by_entity.setdefault(entity_id, []).append(scene.id)
        return self.issues

    async def start(self) -> None:
        """Load the stored revert snapshots; listen to MQTT and to the scenes' entities."""
        hub = self._hub
        if hub.storage is not None:
            from hub.storage import StorageError
            from hub.storage.scenes import SceneSnapshotStore

            self._store = SceneSnapshotStore(hub.storage)
            try:
                self._before = await self._store.load()
            except StorageError as exc:
                # Scenes still apply; only reverts of scenes applied before the start are lost.
                _LOGGER.error("scene revert snapshots not loaded: %s", exc)
            for scene_id in self._before:
                if scene_id not in self.scenes:
                    _LOGGER.warning(
                        "a revert snapshot of scene %r is stored, but no scene file in %s "
                        "defines it; it is kept until the scene is back and reverted",
                        scene_id,
                        self.folder,
                    )
        self._undo.append(hub.bus.subscribe(StateChanged, self._on_state, owner="scenes"))
        if hub.mqtt is not None:
            base = hub.base_topic
            self._undo += [
                hub.mqtt.subscribe(f"{base}/scenes/+/apply", self._on_mqtt, owner="scenes", qos=1),
                hub.mqtt.subscribe(f"{base}/scenes/+/revert", self._on_mqtt, owner="scenes", qos=1),
            ]
        for scene_id in self.scenes:
            self._publish(scene_id, force=True)

    def stop(self) -> None:
        """Remove every subscription this service made."""
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def get(self, name: str) -> Scene:
        """Return the scene called ``name``; raise SceneError (with a suggestion) if unknown."""
        scene = self.scenes.get(name)
        if scene is None:
            raise SceneError(f"unknown scene {name!r}{suggest(name, self.scenes)}")
        return scene

    def snapshot(self, name: str) -> SceneSnapshot | None:
        """The states a revert of ``name`` would restore, or None when there is none."""
        return self._before.get(name)

    # ----- apply / revert ----------------------------------------------------------------------

    async def apply(self, name: str, *, context: Context) -> dict[str, Any]:
        """Command every entity of the scene at once; return each entity's outcome.

        The states before it are stored (for a revert after a restart) while the commands
        run; apply returns once both are done.
        """
        scene = self.get(name)
        saving: asyncio.Task[None] | None = None
        if name not in self._before or not self.is_active(name):
            # Applying an active scene again must not forget the states before it.
            from hub.storage.scenes import SavedState, SceneSnapshot

            states = self._hub.registry.states
            snapshot = SceneSnapshot(
                scene.id,
                time.time(),
                {
                    entity_id: SavedState(
                        state.value,
                        {
                            key: state.attributes[key]
                            for key in RESTORABLE_ATTRIBUTES
                            if key in state.attributes
                        },
                    )
                    for entity_id in scene.entities
                    if (state := states.get(entity_id)) is not None
                },
            )
            self._before[name] = snapshot
            if self._store is not None:
                saving = asyncio.create_task(self._store_snapshot(snapshot))
        try:
            return await self._run(
                scene.id, scene.entities, scene.transition, context.child(Origin.SCENE, scene.id)
            )
        finally:
            if saving is not None:
                await saving

    async def _store_snapshot(self, snapshot: SceneSnapshot) -> None:
        from hub.storage import StorageError

        assert self._store is not None
        try:
            async with self._writes:
                await self._store.save(snapshot)
        except StorageError as exc:
            _LOGGER.warning(
                "scene %r: %s; it can be reverted until the hub restarts", snapshot.scene_id, exc
            )

    async def revert(self, name: str, *, context: Context) -> dict[str, Any]:
        """Put the scene's entities back into the states they had before it was applied.

        Entities of the snapshot that no longer exist are skipped, listed under ``missing``
        and named in a warning; the others are reverted.
        """
        scene = self.get(name)
        snapshot = self._before.get(name)
        if snapshot is None:
            raise SceneError(
                f"scene {name!r} has not been applied since it was last reverted: "
                "there is nothing to revert to"
            )
        entities = self._hub.registry.entities
        targets: dict[str, Mapping[str, Any]] = {}
        missing: list[str] = []
        for entity_id, saved in snapshot.states.items():
            entity = entities.get(entity_id)
            if entity is None:
                missing.append(entity_id)
            else:
                targets[entity_id] = target_from_value(entity, saved.value, saved.attributes)
        if missing:
            _LOGGER.warning(
                "scene %r revert: %d entit%s no longer exist%s and cannot be restored: %s",
                name,
                len(missing),
                "y" if len(missing) == 1 else "ies",
                "s" if len(missing) == 1 else "",
                ", ".join(missing),
            )
        result = await self._run(
            scene.id, targets, None, context.child(Origin.SCENE, scene.id, via="revert")
        )
        result["missing"] = missing
        if result["ok"] and self._before.get(name) is snapshot:
            del self._before[name]
            if self._store is not None:
                from hub.storage import StorageError

                try:
                    async with self._writes:
                        await self._store.remove(name)
                except StorageError as exc:
                    _LOGGER.warning(
                        "scene %r reverted, but its stored snapshot stays: %s; after a restart "
                        "a revert would restore those states again",
                        name,
                        exc,
                    )
        return result

    async def _run(
        self,
        scene_id: str,
        targets: Mapping[str, Mapping[str, Any]],
        transition: float | None,
        context: Context,
    ) -> dict[str, Any]:
        started = time.monotonic()
        ids = list(targets)
        outcomes = await asyncio.gather(
            *(self._one(entity_id, targets[entity_id], transition, context) for entity_id in ids)
        )
        entities = dict(zip(ids, outcomes, strict=True))
        return {
            "scene": scene_id,
            "ok": all(outcome["ok"] for outcome in outcomes),
            "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
            "entities": entities,
        }

    async def _one(
        self,
        entity_id: str,
        target: Mapping[str, Any],
        transition: float | None,
        context: Context,
    ) -> dict[str, Any]:
        """Command one entity; its commands run in order (a thermostat's mode, then setpoint)."""
        hub = self._hub
        entity = hub.registry.entities.get(entity_id)
        if entity is None:
            return {"ok": False, "reason": f"unknown entity {entity_id!r}", "results": []}
        results: list[dict[str, Any]] = []
        try:
            for action, params in commands_for(entity, target, transition):
                futures = hub.commands.issue(Command(entity_id, action, context, params))
                for done in await asyncio.gather(*futures):
                    results.append(done.to_dict())
                    if not done.ok:
                        return {"ok": False, "reason": done.reason, "results": results}
        except CommandError as exc:
            return {"ok": False, "reason": str(exc), "results": results}
        return {"ok": True, "reason": "", "results": results}

    # ----- activity ----------------------------------------------------------------------------

    def is_active(self, name: str) -> bool:
        """True when every entity of the scene is at the scene's state now."""
        scene = self.get(name)
        states = self._hub.registry.states
        return all(
            state_matches(states.get(entity_id), target)
            for entity_id, target in scene.entities.items()
        )

    def capture(self, name: str, entity_ids: Iterable[str]) -> Scene:
        """Return a scene holding the current states of ``entity_ids`` (not saved, not loaded)."""
        check_id(name, "scene id")
        registry = self._hub.registry
        return scene_from_states(name, entity_ids, registry.entities, registry.states)

    def _on_state(self, event: StateChanged) -> None:
        scene_ids = self._by_entity.get(event.entity_id)
        if scene_ids:
            for scene_id in scene_ids:
                self._publish(scene_id)

    def _publish(self, scene_id: str, *, force: bool = False) -> None:
        active = self.is_active(scene_id)
        if not force and self._published.get(scene_id) == active:
            return
        self._published[scene_id] = active
        mqtt = self._hub.mqtt
        if mqtt is not None:
            topic = f"{self._hub.base_topic}/scenes/{scene_id}/state"
            mqtt.publish(topic, orjson.dumps({"active": active}), qos=1, retain=True)

    def _on_mqtt(self, topic: str, payload: bytes, received: float) -> None:
        parts = topic.rsplit("/", 2)
        scene_id, verb = parts[-2], parts[-1]
        if scene_id not in self.scenes:
            self._hub.reject(topic, f"no scene called {scene_id!r}", kind="unknown_scene")
            return
        context = Context(Origin.MQTT, topic)
        work = self.apply if verb == "apply" else self.revert

        async def run() -> None:
            try:
                result = await work(scene_id, context=context)
            except SceneError as exc:
                _LOGGER.warning("%s: %s", topic, exc)
                return
            if not result["ok"]:
                failed = {k: v["reason"] for k, v in result["entities"].items() if not v["ok"]}
                _LOGGER.warning("scene %s %s: some entities failed: %s", scene_id, verb, failed)

        self._hub.spawn(run(), name=f"scene {scene_id} {verb}")


def scene_from_states(
    name: str,
    entity_ids: Iterable[str],
    entities: Mapping[str, Entity],
    states: Mapping[str, State],
) -> Scene:
    """Build a scene from current states; raise SceneError naming unknown or stateless ids."""
    targets: dict[str, dict[str, Any]] = {}
    for entity_id in entity_ids:
        entity = entities.get(entity_id)
        if entity is None:
            raise SceneError(f"unknown entity {entity_id!r}{suggest(entity_id, entities)}")
        state = states.get(entity_id)
        if state is None:
            raise SceneError(f"{entity_id} has no state yet")
        targets[entity_id] = target_from_state(entity, state)
    return Scene(name, name.replace("_", " ").capitalize(), targets)


def dump_scenes(scenes: Iterable[Scene]) -> str:
    """Return scenes as YAML text that :func:`load_scenes` reads back."""
    import yaml

    text: str = yaml.safe_dump(
        [scene.to_dict() for scene in scenes], sort_keys=False, allow_unicode=True
    )
    return text


# ----- `hub scene ...` -----------------------------------------------------------------------

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parser(sub: Any, add_config: Any, add_json: Any) -> None:
    """Add ``hub scene`` and its actions to the CLI's sub-parsers."""
    scene = sub.add_parser(
        "scene",
        help="list, apply and capture scenes",
        description="Scenes are YAML files in the scene folder: scenes.folder in hub.yaml, "
        "by default scenes/ next to hub.yaml.",
    )
    ssub = scene.add_subparsers(dest="scene_command", metavar="ACTION", required=True)
    apply = ssub.add_parser(
        "apply",
        help="apply a scene in the running hub",
        description="Apply a scene in the running hub (over MQTT).",
    )
    apply.add_argument("name", help="the scene id")
    revert = ssub.add_parser(
        "revert",
        help="revert a scene in the running hub",
        description="Put a scene's entities back into their states before it was applied "
        "(also after a restart of the hub).",
    )
    revert.add_argument("name", help="the scene id")
    listing = ssub.add_parser(
        "list", help="list the scenes", description="List the scenes in the scene files."
    )
    add_json(listing)
    capture = ssub.add_parser(
        "capture",
        help="write a scene from the current states",
        description="Write <scene folder>/<NAME>.yaml from the entities' last stored states.",
    )
    capture.add_argument("name", help="the new scene's id")
    capture.add_argument(
        "--entities", nargs="+", required=True, metavar="ID", help="entity ids to capture"
    )
    for parser in (apply, revert, listing, capture):
        add_config(parser)


def cmd_scene(args: argparse.Namespace) -> int:
    """Dispatch ``hub scene ACTION``."""
    action = args.scene_command
    if action in ("apply", "revert"):
        from hub.rules.cli import _control

        return _control(args, f"scenes/{args.name}/{action}", b"{}", label="hub scene")
    if action == "list":
        return _cmd_list(args)
    if action == "capture":
        return _cmd_capture(args)
    return EXIT_USAGE


def _cmd_list(args: argparse.Namespace) -> int:
    from hub.cli import load_or_report

    loaded = load_or_report(args.config, allow_missing=True)
    if loaded is None:
        return EXIT_FAILED
    folder, scenes, issues = load_scene_folder(
        loaded.config.scenes, loaded.path.parent, loaded.source
    )
    for issue in issues:
        print(issue, file=sys.stderr)
    if args.json:
        print(json.dumps([scene.to_dict() for scene in scenes.values()], indent=2))
    else:
        for scene in scenes.values():
            print(f"{scene.id:<24} {len(scene.entities):>3} entities  {scene.name}")
        if not scenes:
            print(f"no scenes in {folder}")
    return EXIT_FAILED if issues else EXIT_OK


def _cmd_capture(args: argparse.Namespace) -> int:
    from hub.cli import load_or_report
    from hub.model import Registry
    from hub.storage import Storage

    try:
        check_id(args.name, "scene id")
    except ValueError as exc:
        print(f"hub scene: {exc}", file=sys.stderr)
        return EXIT_USAGE
    loaded = load_or_report(args.config, allow_missing=True)
    if loaded is None:
        return EXIT_FAILED
    folder, existing, issues = load_scene_folder(
        loaded.config.scenes, loaded.path.parent, loaded.source
    )
    if loaded.config.scenes.configured and not folder.is_dir():
        for issue in issues:  # a folder hub.yaml names must exist: do not create a typo
            print(issue, file=sys.stderr)
        return EXIT_FAILED
    target = folder / f"{args.name}.yaml"
    if args.name in existing or target.exists():
        print(f"hub scene: scene {args.name!r} exists already; pick another name", file=sys.stderr)
        return EXIT_FAILED

    async def stored() -> Registry:
        storage = Storage(loaded.config.database.resolved_url)
        await storage.start()
        try:
            registry = Registry()
            await storage.load_into(registry)
            return registry
        finally:
            await storage.close()

    registry = asyncio.run(stored())
    try:
        scene = scene_from_states(args.name, args.entities, registry.entities, registry.states)
    except SceneError as exc:
        print(f"hub scene: {exc}", file=sys.stderr)
        return EXIT_FAILED
    folder.mkdir(parents=True, exist_ok=True)
    target.write_text(dump_scenes([scene]))
    print(f"wrote {target} ({len(scene.entities)} entities)")
    return EXIT_OK
