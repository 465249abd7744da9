"""A Homie 5 ``$description`` document, checked and turned into hub entities.

The document (convention, "Device Attributes"): ``{"homie": "5.x", "version": int, "name",
"type", "root", "parent", "children", "extensions", "nodes": {id: {"name", "type",
"properties": {id: {"name", "datatype", "format", "settable", "retained", "unit"}}}}}``.

A broken device-level field rejects the whole document; a broken node or property is skipped
(the convention: "ignore the entire object") and named in ``problems``.

Entities, one per property unless a node looks like a light:

- boolean: settable → ``switch``, read-only → ``binary_sensor``; non-retained settable →
  ``button`` (press sends ``true``)
- integer/float → ``sensor`` with the unit; ``Wh``/``kWh``/``MWh`` → ``energy_meter`` in kWh;
  ``kW`` → ``W``; settable → ``number`` (``set_value``) with ``min``/``max``/``step``
- enum, string → text ``sensor`` (non-retained read-only enum/string → ``button``: an event);
  a settable enum → ``select`` (``set_value``); settable strings stay read only
- (``number`` and ``select`` only where the core has them; else they are read-only sensors)
- color → text ``sensor`` (``rgb,255,0,0``) with ``color_mode`` and ``color`` attributes
- datetime → ``sensor`` (``timestamp``); duration → ``sensor`` in ``s``; json → ``sensor``
  (``object``/``array``) with the document in the ``value`` attribute
- a node with one settable boolean and one settable bounded brightness-like number (and
  optionally a settable color) → one ``light``: brightness scaled to 0-255, color an attribute
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from adapters.homie.values import DATATYPES, PayloadError, PropertySpec, parse_format
from hub.api import CommandError, Entity, EntityKind

# Homie 5 topic ids are lowercase letters, digits and '-'; the hub also needs the first
# character to be a letter or digit, and 64 characters at most.
HOMIE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
MAX_NODES = 256
MAX_PROPERTIES = 1024
MAX_CHILDREN = 4096
_TEXT_LIMIT = 255  # the core's limit for a text sensor's state

ENERGY_UNITS = {"Wh": 0.001, "kWh": 1.0, "MWh": 1000.0}
POWER_UNITS = {"W": 1.0, "kW": 1000.0}
_UNIT_CLASSES = {
    "W": "power",
    "V": "voltage",
    "A": "current",
    "°C": "temperature",
    "°F": "temperature",
    "K": "temperature",
    "lx": "illuminance",
    "Pa": "pressure",
    "psi": "pressure",
    "Hz": "frequency",
    "ppm": "concentration",
}
_BRIGHTNESS_IDS = frozenset({"brightness", "dim", "dimmer", "level", "intensity"})
# The core's settable number and choice kinds (with the set_value action) are newer than
# some hubs this adapter may run in; without them settable numbers and enums stay read only.
NUMBER: EntityKind | None = getattr(EntityKind, "NUMBER", None)
SELECT: EntityKind | None = getattr(EntityKind, "SELECT", None)


class DescriptionError(ValueError):
    """A ``$description`` the adapter cannot use; the message says where and why."""


def check_homie_id(value: Any, what: str) -> str:
    """Return ``value`` if it is a usable Homie id, else raise DescriptionError saying why."""
    if not isinstance(value, str) or not HOMIE_ID.match(value):
        shown = str(value)[:40]
        raise DescriptionError(
            f"{what} {shown!r} is not a Homie id (1-64 of a-z, 0-9 and '-', not starting with '-')"
        )
    return value


def _text(data: dict[str, Any], key: str, default: str | None, limit: int = 128) -> str | None:
    value = data.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DescriptionError(f"{key!r} must be a string")
    return value[:limit]


def _flag(data: dict[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise DescriptionError(f"{key!r} must be true or false")
    return value


@dataclass(slots=True)
class Description:
    """What a ``$description`` says, with its properties checked."""

    name: str
    version: int
    homie: str
    type: str | None = None
    root: str | None = None
    parent: str | None = None
    children: list[str] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)
    node_names: dict[str, str] = field(default_factory=dict)
    properties: list[PropertySpec] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def parse_description(data: Any) -> Description:
    """Check a decoded ``$description``; raise DescriptionError if the device is unusable."""
    if not isinstance(data, dict):
        raise DescriptionError("the description must be a JSON object")
    homie = data.get("homie")
    if not isinstance(homie, str) or not re.match(r"^5\.[0-9]+$", homie):
        raise DescriptionError(f"'homie' must be \"5.x\", got {str(homie)[:20]!r}")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise DescriptionError(f"'version' must be an integer, got {str(version)[:20]!r}")
    name = _text(data, "name", None)
    if not name:
        raise DescriptionError("'name' is required")
    root = data.get("root")
    if root is not None:
        check_homie_id(root, "root")
    parent = data.get("parent", root)
    if parent is not None:
        check_homie_id(parent, "parent")
        if root is None:
            raise DescriptionError("'parent' is set but 'root' is missing")
    children = data.get("children", [])
    if not isinstance(children, list) or len(children) > MAX_CHILDREN:
        raise DescriptionError(f"'children' must be a list of at most {MAX_CHILDREN} ids")
    for child in children:
        check_homie_id(child, "child")
    extensions = data.get("extensions", [])
    if not isinstance(extensions, list) or not all(isinstance(e, str) for e in extensions):
        raise DescriptionError("'extensions' must be a list of strings")
    nodes = data.get("nodes", {})
    if not isinstance(nodes, dict):
        raise DescriptionError("'nodes' must be an object of nodes by id")
    if len(nodes) > MAX_NODES:
        raise DescriptionError(f"{len(nodes)} nodes; at most {MAX_NODES} are accepted")
    out = Description(
        name=name,
        version=version,
        homie=homie,
        type=_text(data, "type", None),
        root=root,
        parent=parent,
        children=list(children),
        extensions=[e[:128] for e in extensions[:64]],
    )
    for node_id, node in nodes.items():
        try:
            _parse_node(out, node_id, node)
        except DescriptionError as exc:
            out.problems.append(f"node {str(node_id)[:40]!r}: {exc}")
        if len(out.properties) > MAX_PROPERTIES:
            raise DescriptionError(f"more than {MAX_PROPERTIES} properties")
    return out


def _parse_node(out: Description, node_id: Any, node: Any) -> None:
    check_homie_id(node_id, "node id")
    if not isinstance(node, dict):
        raise DescriptionError("a node must be an object")
    out.node_names[node_id] = _text(node, "name", node_id) or node_id
    properties = node.get("properties", {})
    if not isinstance(properties, dict):
        raise DescriptionError("'properties' must be an object of properties by id")
    for prop_id, prop in properties.items():
        try:
            out.properties.append(_parse_property(node_id, prop_id, prop))
        except DescriptionError as exc:
            out.problems.append(f"property {node_id}/{str(prop_id)[:40]}: {exc}")


def _parse_property(node_id: str, prop_id: Any, prop: Any) -> PropertySpec:
    check_homie_id(prop_id, "property id")
    if not isinstance(prop, dict):
        raise DescriptionError("a property must be an object")
    datatype = prop.get("datatype")
    if datatype not in DATATYPES:
        raise DescriptionError(f"unknown datatype {str(datatype)[:40]!r}")
    fmt = _text(prop, "format", None, limit=4096)
    try:
        parsed = parse_format(datatype, fmt)
    except PayloadError as exc:
        raise DescriptionError(str(exc)) from None
    return PropertySpec(
        node=node_id,
        id=prop_id,
        name=_text(prop, "name", prop_id) or prop_id,
        datatype=datatype,
        format=fmt,
        settable=_flag(prop, "settable", False),
        retained=_flag(prop, "retained", True),
        unit=_text(prop, "unit", None, limit=32),
        **parsed,
    )


# ----- entities --------------------------------------------------------------------------------


@dataclass(slots=True)
class EntityPlan:
    """One hub entity and the Homie properties behind it."""

    key: str
    kind: EntityKind
    name: str
    value: PropertySpec
    unit: str | None = None
    device_class: str | None = None
    scale: float = 1.0  # reported number x scale = the hub's value (Wh -> kWh)
    brightness: PropertySpec | None = None  # lights: scaled to 0-255
    color: PropertySpec | None = None  # lights: the color attribute
    options: dict[str, Any] = field(default_factory=dict)

    def entity(self, device_id: str) -> Entity:
        """The hub entity of this plan."""
        return Entity(
            id=f"{device_id}.{self.key}",
            device_id=device_id,
            key=self.key,
            kind=self.kind,
            name=self.name,
            unit=self.unit,
            device_class=self.device_class,
            options=dict(self.options),
        )

    def _brightness_range(self) -> tuple[float, float]:
        spec = self.brightness
        # A light plan always has a bounded brightness (see _light_parts).
        if spec is None or spec.minimum is None or spec.maximum is None:
            raise CommandError(f"{self.key} has no brightness range")
        return spec.minimum, spec.maximum

    def brightness_to_hub(self, device_value: float) -> int:
        """A device brightness (its own range) as the hub's 0-255."""
        low, high = self._brightness_range()
        return max(0, min(255, round((device_value - low) / (high - low) * 255)))

    def brightness_to_device(self, hub_value: float) -> float:
        """The hub's 0-255 brightness in the device's range."""
        low, high = self._brightness_range()
        return low + hub_value / 255 * (high - low)


def property_key(spec: PropertySpec) -> str:
    """The entity key of a property: ``<node>_<property>`` (Homie ids have no ``_``)."""
    return f"{spec.node}_{spec.id}"


def _options(spec: PropertySpec, *, hub_settable: bool) -> dict[str, Any]:
    options: dict[str, Any] = {
        "node": spec.node,
        "property": spec.id,
        "datatype": spec.datatype,
        "settable": hub_settable,
    }
    if spec.settable and not hub_settable:
        options["device_settable"] = True  # the device takes it; the hub has no action yet
    if not spec.retained:
        options["retained"] = False
    if spec.format is not None:
        options["format"] = spec.format
    for option, value in (("min", spec.minimum), ("max", spec.maximum), ("step", spec.step)):
        if value is not None:
            options[option] = value
    if spec.datatype == "enum":
        options["options"] = list(spec.choices)
    return options


def _light_parts(
    props: list[PropertySpec],
) -> tuple[PropertySpec, PropertySpec, PropertySpec | None] | None:
    switches = [p for p in props if p.datatype == "boolean" and p.settable and p.retained]
    dimmers = [
        p
        for p in props
        if p.datatype in ("integer", "float")
        and p.settable
        and p.retained
        and p.id in _BRIGHTNESS_IDS
        and p.minimum is not None
        and p.maximum is not None
        and p.maximum > p.minimum
    ]
    if len(switches) != 1 or len(dimmers) != 1:
        return None
    colors = [p for p in props if p.datatype == "color" and p.settable and p.retained]
    return switches[0], dimmers[0], colors[0] if len(colors) == 1 else None


def plan_entities(description: Description) -> tuple[list[EntityPlan], list[str]]:
    """The entities of a described device, and the properties left out (with why)."""
    plans: list[EntityPlan] = []
    skipped: list[str] = []
    by_node: dict[str, list[PropertySpec]] = {}
    for spec in description.properties:
        by_node.setdefault(spec.node, []).append(spec)
    for node, props in by_node.items():
        light = _light_parts(props)
        used: set[str] = set()
        if light is not None:
            power, brightness, color = light
            options = {
                "node": node,
                "power": power.id,
                "brightness": brightness.id,
                "settable": True,
            }
            if color is not None:
                options["color"] = color.id
            plans.append(
                EntityPlan(
                    key=node,
                    kind=EntityKind.LIGHT,
                    name=description.node_names.get(node, node),
                    value=power,
                    brightness=brightness,
                    color=color,
                    options=options,
                )
            )
            used = {power.id, brightness.id} | ({color.id} if color else set())
        for spec in props:
            if spec.id in used:
                continue
            key = property_key(spec)
            if len(key) > 64:
                skipped.append(f"{spec.path}: '{key}' is longer than 64 characters")
                continue
            plans.append(_plan_property(key, spec))
    return plans, skipped


def _plan_property(key: str, spec: PropertySpec) -> EntityPlan:
    datatype = spec.datatype
    name = spec.name
    if datatype == "boolean":
        if not spec.retained and spec.settable:
            kind = EntityKind.BUTTON
        else:
            kind = EntityKind.SWITCH if spec.settable else EntityKind.BINARY_SENSOR
        options = _options(spec, hub_settable=spec.settable)
        if spec.choices:
            options["labels"] = {"off": spec.choices[0], "on": spec.choices[1]}
        return EntityPlan(key, kind, name, spec, options=options)
    if spec.settable and datatype in ("integer", "float") and NUMBER is not None:
        return EntityPlan(
            key,
            NUMBER,
            name,
            spec,
            unit=spec.unit,
            device_class=_UNIT_CLASSES.get(spec.unit or ""),
            options=_options(spec, hub_settable=True),
        )
    if spec.settable and datatype == "enum" and SELECT is not None:
        return EntityPlan(key, SELECT, name, spec, options=_options(spec, hub_settable=True))
    options = _options(spec, hub_settable=False)
    if datatype in ("integer", "float"):
        unit = spec.unit
        if unit in ENERGY_UNITS:
            return EntityPlan(
                key,
                EntityKind.ENERGY_METER,
                name,
                spec,
                unit="kWh",
                device_class="energy",
                scale=ENERGY_UNITS[unit],
                options={**options, "source_unit": unit},
            )
        if unit in POWER_UNITS:
            return EntityPlan(
                key,
                EntityKind.SENSOR,
                name,
                spec,
                unit="W",
                device_class="power",
                scale=POWER_UNITS[unit],
                options={**options, "source_unit": unit},
            )
        device_class = _UNIT_CLASSES.get(unit or "")
        if unit == "%" and spec.id in ("humidity", "battery"):
            device_class = spec.id
        return EntityPlan(
            key,
            EntityKind.SENSOR,
            name,
            spec,
            unit=unit,
            device_class=device_class,
            options=options,
        )
    if datatype in ("enum", "string") and not spec.retained and not spec.settable:
        return EntityPlan(key, EntityKind.BUTTON, name, spec, options=options)
    if datatype == "duration":
        return EntityPlan(
            key, EntityKind.SENSOR, name, spec, unit="s", device_class="duration", options=options
        )
    if spec.unit is not None:
        options["unit"] = spec.unit  # text sensors carry no unit in the hub
    device_class = {"datetime": "timestamp", "color": "color"}.get(datatype)
    return EntityPlan(
        key, EntityKind.SENSOR, name, spec, device_class=device_class, options=options
    )


# ----- reading and commanding ------------------------------------------------------------------


def read_property(plan: EntityPlan, spec: PropertySpec, value: Any) -> tuple[Any, dict[str, Any]]:
    """A parsed property value as the entity's (value, attributes); value None: attributes only.

    Raises DescriptionError when the value is valid Homie but cannot be a hub state.
    """
    if spec is plan.brightness:
        return None, {"brightness": plan.brightness_to_hub(float(value))}
    if spec is plan.color:
        kind, numbers = value
        return None, {"color": {"mode": kind, "values": list(numbers)}}
    datatype = spec.datatype
    if datatype == "boolean":
        if plan.kind is EntityKind.BUTTON:
            return ("true" if value else "false"), {}
        return ("on" if value else "off"), {}
    if datatype in ("integer", "float"):
        if plan.scale != 1.0:
            return value * plan.scale, {}
        return value, {}
    if datatype == "color":
        kind, numbers = value
        text = ",".join([kind, *(_number_text(n) for n in numbers)])
        return text, {"color_mode": kind, "color": list(numbers)}
    if datatype == "json":
        return ("array" if isinstance(value, list) else "object"), {"value": value}
    if datatype == "duration":
        return value, {}
    if isinstance(value, str) and len(value) > (
        64 if plan.kind is EntityKind.BUTTON else _TEXT_LIMIT
    ):
        raise DescriptionError(f"a text of {len(value)} characters is too long for a hub state")
    return value, {}


def _number_text(number: float) -> str:
    return str(int(number)) if number.is_integer() else repr(number)


def command_values(
    plan: EntityPlan, action: str, params: dict[str, Any], current: Any
) -> list[tuple[PropertySpec, Any]]:
    """The properties to set, in order, and the value for each, for a hub command."""
    if plan.kind is EntityKind.BUTTON:
        if action == "press" and plan.value.settable and plan.value.datatype == "boolean":
            return [(plan.value, True)]
        raise CommandError(f"{plan.value.path} is an event the hub cannot send")
    if action == "set_value" and plan.kind in (NUMBER, SELECT) and plan.kind is not None:
        value = params.get("value")
        if plan.kind is NUMBER and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise CommandError(f"parameter 'value' must be a number, got {value!r}")
        return [(plan.value, value)]
    if plan.kind not in (EntityKind.SWITCH, EntityKind.LIGHT) or not plan.value.settable:
        raise CommandError(f"{plan.value.path} is read only in the hub")
    if action == "toggle":
        action = "turn_off" if current == "on" else "turn_on"
    if action == "turn_off":
        return [(plan.value, False)]
    if action != "turn_on":
        raise CommandError(f"a Homie {plan.kind.value} cannot {action}")
    sends: list[tuple[PropertySpec, Any]] = []
    if "brightness" in params and plan.brightness is not None:
        sends.append((plan.brightness, plan.brightness_to_device(float(params["brightness"]))))
    # Power last: a light that turns on at once shows the new brightness, not the old one.
    sends.append((plan.value, True))
    return sends
