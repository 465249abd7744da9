"""The ``hub.yaml`` schema and its loader: every error at once, each at its line and column."""

from __future__ import annotations

import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar, Union, get_args, get_origin
from urllib.parse import unquote, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from hub.conversation.settings import PersonConfig, check_people
from hub.durations import Duration
from hub.model import (
    ENTITY_ID_PATTERN,
    ID_PATTERN,
    MEMBER_KINDS,
    Aggregate,
    DeviceCustomization,
    EntityCustomization,
    EntityKind,
    check_id,
)
from hub.notify.config import NotificationsSection, check_notifications
from hub.secrets import redact, redact_url, register_secret
from hub.yamlsource import (
    ConfigError,
    ConfigIssue,
    PathKey,
    SecretResolver,
    SourceDoc,
    SourceError,
    format_path,
    load_yaml,
    suggest,
)

__all__ = [
    "AreaConfig",
    "ConfigError",
    "ConfigIssue",
    "DatabaseSection",
    "DeviceConfig",
    "EntityConfig",
    "GroupConfig",
    "HubConfig",
    "HubSection",
    "LoadedConfig",
    "LocationConfig",
    "LoggingSection",
    "MqttSection",
    "PluginSection",
    "RulesSection",
    "ScenesSection",
    "load_config",
    "resolve_sqlite_url",
    "validate_model",
]

M = TypeVar("M", bound=BaseModel)

DEFAULT_SECRETS_FILE = "secrets.yaml"

_STRICT = ConfigDict(extra="forbid", frozen=True)
_DB_SCHEME = re.compile(r"(sqlite|postgresql)(\+[a-z0-9_]+)?", re.IGNORECASE)
_QUOTED = re.compile(r"'([^']*)'")


# --- field types -------------------------------------------------------------------------


def _check_topic(value: str) -> str:
    if not value:
        raise ValueError("a topic must not be empty")
    if value.startswith("/") or value.endswith("/"):
        raise ValueError(f"topic {value!r} must not start or end with '/'")
    if "//" in value:
        raise ValueError(f"topic {value!r} has an empty level ('//')")
    if "+" in value or "#" in value:
        raise ValueError(f"topic {value!r} must not contain the wildcards '+' or '#'")
    if value.startswith("$"):
        raise ValueError(f"topic {value!r} must not start with '$' (kept for the broker's own)")
    if "\x00" in value or len(value.encode()) > 65535:
        raise ValueError(f"topic {value!r} is not a valid MQTT topic")
    return value


def _check_mqtt_url(value: str | None) -> str | None:
    if value is None:
        return None
    shown = redact_url(value)
    parts = urlsplit(value)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"the broker URL must start with mqtt:// or mqtts://, got {shown!r}")
    if not parts.hostname:
        raise ValueError(f"the broker URL {shown!r} names no host")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"the broker URL {shown!r} has an invalid port: use 1-65535")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"the broker URL {shown!r} must not have a path or query")
    return value


def _check_db_url(value: str) -> str:
    scheme, sep, _ = value.partition("://")
    if not sep or not _DB_SCHEME.fullmatch(scheme):
        raise ValueError(
            "expected a database URL like 'sqlite+aiosqlite:///hub.db' or "
            f"'postgresql+asyncpg://user@host/hub', got {redact_url(value)!r}"
        )
    return value


def _check_member(value: str) -> str:
    kind, sep, name = value.partition(":")
    if not sep:
        kind, name = "", value
    elif kind not in MEMBER_KINDS:
        raise ValueError(
            f"unknown member kind {kind!r} in {value!r}: "
            f"use entity:, device:, group:, area: or tag:{suggest(kind, MEMBER_KINDS)}"
        )
    if kind == "entity" or (not kind and "." in name):
        if not ENTITY_ID_PATTERN.match(name):
            raise ValueError(
                f"invalid entity id {name!r}: use <device>.<key>, each 1-64 lowercase "
                "letters, digits, '_' or '-'"
            )
        return value
    if kind == "tag":
        check_id(name, "tag")
        return value
    check_id(name, f"{kind or 'member'} id")
    return value


def _number_to_text(value: Any) -> Any:
    # `protocol: 5` is a number in YAML; the setting is a name.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _one_or_many(value: Any) -> Any:
    # `paths: rules` means `paths: [rules]`.
    return (value,) if isinstance(value, str) else value


def _area_id(value: str) -> str:
    return check_id(value, "area id")


def _group_id(value: str) -> str:
    return check_id(value, "group id")


def _plugin_name(value: str) -> str:
    return check_id(value, "plug-in name")


def _device_id(value: str) -> str:
    return check_id(value, "device id")


def _entity_key(value: str) -> str:
    return check_id(value, "entity key")


def _tag(value: str) -> str:
    return check_id(value, "tag")


def _check_time_zone(value: str) -> str:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        hint = suggest(value, zoneinfo.available_timezones())
        raise ValueError(f"unknown time zone {value!r}{hint}") from None
    return value


Topic = Annotated[str, AfterValidator(_check_topic)]
NonEmpty = Annotated[str, Field(min_length=1)]


# --- sections ----------------------------------------------------------------------------


class LocationConfig(BaseModel):
    """Where the home is: for sunrise and sunset and local time."""

    model_config = _STRICT

    latitude: Annotated[float, Field(ge=-90, le=90)]
    longitude: Annotated[float, Field(ge=-180, le=180)]
    elevation: float = 0.0
    time_zone: Annotated[str, AfterValidator(_check_time_zone)] = "UTC"


class HubSection(BaseModel):
    """The hub itself: its name, its MQTT topics and command timing."""

    model_config = _STRICT

    name: NonEmpty = "Home"
    base_topic: Topic = "hub"
    device_topic: Topic = "home"
    command_timeout: Annotated[Duration, Field(ge=0.1, le=300)] = 5.0
    location: LocationConfig | None = None


class MqttSection(BaseModel):
    """The broker; no ``url`` means the hub starts an embedded one."""

    model_config = _STRICT

    url: Annotated[str | None, AfterValidator(_check_mqtt_url)] = None
    client_id: NonEmpty = "hub"
    username: str | None = None
    password: str | None = None
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 30
    protocol: Annotated[Literal["auto", "5", "3.1.1"], BeforeValidator(_number_to_text)] = "auto"
    session_expiry: Annotated[Duration, Field(ge=0, le=4294967295)] = 3600.0
    tls_ca: str | None = None

    @property
    def embedded(self) -> bool:
        """True when the hub should start its own broker."""
        return self.url is None

    @property
    def host(self) -> str | None:
        """The broker's host name, or None for the embedded broker."""
        return urlsplit(self.url).hostname if self.url else None

    @property
    def port(self) -> int:
        """The broker's port (1883, or 8883 for mqtts:// when the URL gives none)."""
        parts = urlsplit(self.url) if self.url else None
        if parts is not None and parts.port:
            return parts.port
        return 8883 if self.tls else 1883

    @property
    def tls(self) -> bool:
        """True for an mqtts:// URL or when a CA file is given."""
        return bool(self.url and self.url.startswith("mqtts://")) or self.tls_ca is not None

    @property
    def login(self) -> tuple[str | None, str | None]:
        """(user name, password): the ``username``/``password`` keys win over the URL's."""
        parts = urlsplit(self.url) if self.url else None
        url_user = unquote(parts.username) if parts and parts.username else None
        url_pass = unquote(parts.password) if parts and parts.password else None
        return (self.username or url_user, self.password or url_pass)


def resolve_sqlite_url(url: str, base_dir: Path) -> str:
    """Return ``url`` with a relative SQLite file path made absolute under ``base_dir``."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.lower().startswith("sqlite") or not rest.startswith("/"):
        return url
    file_part, question, query = rest[1:].partition("?")
    if file_part in ("", ":memory:") or file_part.startswith("file:"):
        return url
    path = Path(file_part).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    return f"{scheme}:///{path}{question}{query}"


class DatabaseSection(BaseModel):
    """Where the hub stores history: SQLite by default, PostgreSQL with another URL."""

    model_config = _STRICT

    url: Annotated[str, AfterValidator(_check_db_url)] = "sqlite+aiosqlite:///hub.db"
    flush_interval: Annotated[Duration, Field(gt=0, le=3600)] = 1.0
    _resolved_url: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> DatabaseSection:
        base_dir = (info.context or {}).get("base_dir")
        if isinstance(base_dir, Path):
            self._resolved_url = resolve_sqlite_url(self.url, base_dir)
        return self

    @property
    def resolved_url(self) -> str:
        """The URL to connect with: a relative SQLite path is relative to hub.yaml's folder."""
        return self._resolved_url or self.url


class LoggingSection(BaseModel):
    """Log level and format."""

    model_config = _STRICT

    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)] = "info"
    format: Annotated[Literal["text", "json"], BeforeValidator(_lower)] = "text"


class _RelativeToConfig(BaseModel):
    """A section whose paths are relative to the folder of the hub.yaml it was loaded from."""

    _base_dir: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _remember_base(self, info: ValidationInfo) -> Self:
        base_dir = (info.context or {}).get("base_dir")
        if isinstance(base_dir, Path):
            self._base_dir = base_dir
        return self

    def _resolve(self, text: str, base_dir: Path | None) -> Path:
        """``text`` as a path, a relative one made absolute under ``base_dir`` (default: the
        folder of the hub.yaml this was loaded from, else the current folder)."""
        base = base_dir if base_dir is not None else self._base_dir or Path.cwd()
        path = Path(text).expanduser()
        return path if path.is_absolute() else base / path


class RulesSection(_RelativeToConfig):
    """Where rule files live and how much of their runs the hub keeps."""

    model_config = _STRICT

    # Folders (or single files) of rule YAML, relative to hub.yaml's folder.
    paths: Annotated[tuple[NonEmpty, ...], BeforeValidator(_one_or_many)] = ("rules",)
    traces_per_outcome: Annotated[int, Field(ge=1, le=1000)] = 20
    history_keep: Annotated[Duration, Field(gt=0)] = 3 * 86400.0  # "3d"
    history: bool = True

    @property
    def configured(self) -> bool:
        """True when hub.yaml lists ``paths`` (a missing default ``rules/`` folder is fine)."""
        return "paths" in self.model_fields_set

    def resolved_paths(self, base_dir: Path | None = None) -> tuple[Path, ...]:
        """The rule paths, a relative one made absolute under ``base_dir`` (default: the folder
        of the hub.yaml this was loaded from, else the current folder)."""
        return tuple(self._resolve(text, base_dir) for text in self.paths)


class ScenesSection(_RelativeToConfig):
    """Where the scene files live."""

    model_config = _STRICT

    # A folder of scene YAML, relative to hub.yaml's folder.
    folder: NonEmpty = "scenes"

    @property
    def configured(self) -> bool:
        """True when hub.yaml names ``folder`` (a missing default ``scenes/`` folder is fine)."""
        return "folder" in self.model_fields_set

    def resolved_folder(self, base_dir: Path | None = None) -> Path:
        """The folder, a relative one made absolute under ``base_dir`` (default: the folder of
        the hub.yaml this was loaded from, else the current folder)."""
        return self._resolve(self.folder, base_dir)


class AreaConfig(BaseModel):
    """A room or zone."""

    model_config = _STRICT

    id: Annotated[str, AfterValidator(_area_id)]
    name: NonEmpty


class GroupConfig(BaseModel):
    """A named set of entities, devices, groups or areas that commands fan out to."""

    model_config = _STRICT

    id: Annotated[str, AfterValidator(_group_id)]
    name: NonEmpty
    members: Annotated[
        tuple[Annotated[str, AfterValidator(_check_member)], ...], Field(min_length=1)
    ]
    aggregate: Aggregate = Aggregate.ANY
    # Only the members' entities of this kind ("all lights in the kitchen").
    kind: EntityKind | None = None


Tags = Annotated[tuple[Annotated[str, AfterValidator(_tag)], ...], BeforeValidator(_one_or_many)]


class EntityConfig(BaseModel):
    """hub.yaml's overrides for one entity of a customised device."""

    model_config = _STRICT

    name: NonEmpty | None = None
    tags: Tags = ()


class DeviceConfig(BaseModel):
    """hub.yaml's overrides for one device (``devices: {<device id>: ...}``), from any adapter.

    Applied whenever the device registers, so a device that appears later is customised too.
    """

    model_config = _STRICT

    name: NonEmpty | None = None
    area: Annotated[str, AfterValidator(_area_id)] | None = None
    tags: Tags = ()
    entities: dict[Annotated[str, AfterValidator(_entity_key)], EntityConfig] = Field(
        default_factory=dict
    )

    def customization(self) -> DeviceCustomization:
        """The model's form of these overrides."""
        return DeviceCustomization(
            name=self.name,
            area=self.area,
            tags=self.tags,
            entities={
                key: EntityCustomization(name=entity.name, tags=entity.tags)
                for key, entity in self.entities.items()
            },
        )


class PluginSection(BaseModel):
    """An adapter or front-end: ``enabled`` plus the plug-in's own settings."""

    model_config = ConfigDict(extra="allow", frozen=True)

    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _empty_is_default(cls, data: Any) -> Any:
        # `discord:` with nothing under it means "enabled, default settings".
        return {} if data is None else data

    @property
    def settings(self) -> dict[str, Any]:
        """The plug-in's own settings: every key but ``enabled``."""
        return dict(self.model_extra or {})


PluginName = Annotated[str, AfterValidator(_plugin_name)]


class HubConfig(BaseModel):
    """The whole ``hub.yaml``; every section has defaults, so an empty file is valid."""

    model_config = _STRICT

    hub: HubSection = Field(default_factory=HubSection)
    mqtt: MqttSection = Field(default_factory=MqttSection)
    database: DatabaseSection = Field(default_factory=DatabaseSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)
    # Validated from {} rather than built, so that it learns hub.yaml's folder from the context.
    rules: RulesSection = Field(default_factory=dict, validate_default=True)
    scenes: ScenesSection = Field(default_factory=dict, validate_default=True)
    areas: tuple[AreaConfig, ...] = ()
    groups: tuple[GroupConfig, ...] = ()
    devices: dict[Annotated[str, AfterValidator(_device_id)], DeviceConfig] = Field(
        default_factory=dict
    )
    adapters: dict[PluginName, PluginSection] = Field(default_factory=dict)
    frontends: dict[PluginName, PluginSection] = Field(default_factory=dict)
    # Who may talk to the hub through the front-ends (hub.conversation.settings).
    people: tuple[PersonConfig, ...] = ()
    # Which events are told to whom, and the limits (hub.notify.config).
    notifications: NotificationsSection = Field(default_factory=NotificationsSection)
    secrets_file: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # A section written with nothing under it (`adapters:`) takes its defaults.
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A validated configuration with the document it came from (for positions)."""

    config: HubConfig
    source: SourceDoc
    path: Path
    warnings: tuple[ConfigIssue, ...] = field(default=())
    # The secrets file that was looked at (it may not exist); rule files resolve from it too.
    secrets_path: Path | None = None


# --- pydantic errors into plain words ----------------------------------------------------


def _unwrap(annotation: Any, part: str | int) -> Any:
    """Return the type found one step along ``part`` from ``annotation``, or None."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0], part)
    if origin is Union or origin is types.UnionType:
        for arg in get_args(annotation):
            found = _unwrap(arg, part)
            if found is not None:
                return found
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        info = annotation.model_fields.get(part) if isinstance(part, str) else None
        return info.annotation if info is not None else None
    args = get_args(annotation)
    if origin in (list, tuple, set, frozenset) and isinstance(part, int) and args:
        return args[0]
    if origin is dict and isinstance(part, str) and len(args) == 2:
        return args[1]
    return None


def _model_keys(annotation: Any) -> list[str]:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _model_keys(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [key for arg in get_args(annotation) for key in _model_keys(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _valid_keys(model_cls: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    annotation: Any = model_cls
    for part in loc:
        annotation = _unwrap(annotation, part)
        if annotation is None:
            return []
    return _model_keys(annotation)


def _describe(value: Any, origin: str | None) -> str:
    if origin is not None:
        return f"the value of {origin}"  # never print what came from a secret
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"


def _plain_message(error: Any, got: str) -> str:
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"expected a whole number, got {got}"
    if kind in ("float_parsing", "float_type", "finite_number"):
        return f"expected a number, got {got}"
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true or false, got {got}"
    if kind == "string_type":
        quote = " (put it in quotes)" if isinstance(value, int | float) else ""
        return f"expected text, got {got}{quote}"
    if kind in ("literal_error", "enum"):
        choices = _QUOTED.findall(str(ctx.get("expected", "")))
        hint = suggest(value, choices) if isinstance(value, str) and got[:1] == "'" else ""
        return f"expected one of {', '.join(map(repr, choices))}, got {got}{hint}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {
            "greater_than_equal": ("at least", "ge"),
            "greater_than": ("more than", "gt"),
            "less_than_equal": ("at most", "le"),
            "less_than": ("less than", "lt"),
        }[kind]
        return f"must be {words[0]} {ctx.get(words[1])}, got {got}"
    if kind in ("too_short", "string_too_short"):
        least = ctx.get("min_length", 1)
        return "must not be empty" if least == 1 else f"needs at least {least} items"
    if kind in ("too_long", "string_too_long"):
        return f"is too long: at most {ctx.get('max_length')} allowed"
    if kind in ("dict_type", "model_type", "model_attributes_type", "mapping_type"):
        return f"expected a mapping (key: value lines), got {got}"
    if kind in ("list_type", "tuple_type", "set_type", "iterable_type"):
        return f"expected a list, got {got}"
    return str(error.get("msg", "invalid value"))


def _to_issue(
    error: Any, model_cls: type[BaseModel], source: SourceDoc, base_path: PathKey
) -> ConfigIssue | None:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    at_key = bool(loc) and loc[-1] == "[key]"
    if at_key:
        loc = loc[:-1]
    path = (*base_path, *loc)
    kind = error["type"]
    if source.unresolved(path):
        return None  # the loader has already said why this value is missing
    if kind == "missing" and loc:
        # Point at the mapping the key is missing from.
        return source.issue(path[:-1], f"missing required key {path[-1]!r}")
    if kind == "extra_forbidden" and loc:
        hint = suggest(str(loc[-1]), _valid_keys(model_cls, loc[:-1]))
        line, col = source.position(path)
        message = f"unknown key {loc[-1]!r}{hint}"
        return ConfigIssue(source.file, line, col, format_path(path[:-1]), message)
    got = _describe(error.get("input"), source.origin(path))
    message = redact(_plain_message(error, got))
    return source.issue(path, message, at_value=not at_key)


def validate_model(
    model_cls: type[M],
    data: Any,
    source: SourceDoc,
    base_path: PathKey = (),
    *,
    context: dict[str, Any] | None = None,
) -> tuple[M | None, list[ConfigIssue]]:
    """Validate ``data`` (found at ``base_path`` in ``source``) against ``model_cls``.

    Return the model, or None and every problem as an issue at its line and column.
    """
    try:
        return model_cls.model_validate({} if data is None else data, context=context), []
    except ValidationError as exc:
        errors = exc.errors()
        inner = {tuple(error["loc"])[:-1] for error in errors}
        converted = (
            _to_issue(error, model_cls, source, base_path)
            for error in errors
            # A list whose every item is wrong is also "too short": its items say it better.
            if not (error["type"] == "too_short" and tuple(error["loc"]) in inner)
        )
        return None, [issue for issue in converted if issue is not None]


# --- checks across sections --------------------------------------------------------------


def _ids(
    data: dict[str, Any], section: str, source: SourceDoc
) -> tuple[dict[str, int], list[ConfigIssue]]:
    found: dict[str, int] = {}
    issues: list[ConfigIssue] = []
    items = data.get(section)
    if not isinstance(items, list):
        return found, issues
    what = section[:-1]
    for index, item in enumerate(items):
        ident = item.get("id") if isinstance(item, dict) else None
        if not isinstance(ident, str):
            continue
        if ident in found:
            first = found[ident]
            line = source.value_position((section, first, "id"))[0]
            message = (
                f"duplicate {what} id {ident!r} (first used by {section}[{first}] on line {line})"
            )
            issues.append(source.issue((section, index, "id"), message, at_value=True))
        else:
            found[ident] = index
    return found, issues


def _cross_check(data: dict[str, Any], source: SourceDoc) -> list[ConfigIssue]:
    areas, issues = _ids(data, "areas", source)
    groups, group_issues = _ids(data, "groups", source)
    issues.extend(group_issues)
    tags = _configured_tags(data)
    for group_id, index in groups.items():
        if group_id in areas:
            issues.append(
                source.issue(
                    ("groups", index, "id"),
                    f"group id {group_id!r} is also an area id; an unprefixed "
                    f"{group_id!r} means the group (write 'area:{group_id}' for the area)",
                    at_value=True,
                    severity="warning",
                )
            )
    for index, group in enumerate(data.get("groups") or []):
        members = group.get("members") if isinstance(group, dict) else None
        if not isinstance(members, list):
            continue
        own = group.get("id")
        for position, member in enumerate(members):
            if not isinstance(member, str):
                continue
            path = ("groups", index, "members", position)
            if isinstance(own, str) and member in (own, f"group:{own}"):
                issues.append(source.issue(path, "a group cannot contain itself", at_value=True))
            kind, _, name = member.partition(":")
            if kind == "area" and name not in areas:
                message = f"unknown area {name!r}{suggest(name, areas)}"
                if not areas:
                    message += " (no areas are configured)"
                issues.append(source.issue(path, message, at_value=True))
            if kind == "tag" and name not in tags and ID_PATTERN.match(name):
                # Tags come from `devices:` only, so one nobody gives is most likely a typo.
                message = f"no device or entity is tagged {name!r}{suggest(name, tags)}"
                issues.append(source.issue(path, message, at_value=True, severity="warning"))
    issues.extend(_check_devices(data, areas, source))
    issues.extend(check_people(data, areas, source))
    issues.extend(check_notifications(data, source))
    return issues


def _configured_tags(data: dict[str, Any]) -> set[str]:
    tags: set[str] = set()
    devices = data.get("devices")
    for device in devices.values() if isinstance(devices, dict) else ():
        if not isinstance(device, dict):
            continue
        entities = device.get("entities")
        entity_list = list(entities.values()) if isinstance(entities, dict) else []
        for holder in (device, *entity_list):
            found = holder.get("tags") if isinstance(holder, dict) else None
            found = [found] if isinstance(found, str) else found
            tags.update(t for t in found or () if isinstance(t, str))
    return tags


def _check_devices(
    data: dict[str, Any], areas: dict[str, int], source: SourceDoc
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    devices = data.get("devices")
    for device_id, device in devices.items() if isinstance(devices, dict) else ():
        area = device.get("area") if isinstance(device, dict) else None
        if isinstance(area, str) and area not in areas:
            message = f"unknown area {area!r}{suggest(area, areas)}"
            if not areas:
                message += " (no areas are configured)"
            issues.append(source.issue(("devices", device_id, "area"), message, at_value=True))
    return issues


# --- loading -----------------------------------------------------------------------------


def _register_config_secrets(config: HubConfig) -> None:
    # Passwords written in clear in hub.yaml must not reach the logs either, raw or decoded.
    for url in (config.mqtt.url, config.database.url):
        password = urlsplit(url).password if url else None
        if password:
            register_secret(password)
            register_secret(unquote(password))
    if config.mqtt.password:
        register_secret(config.mqtt.password)


def load_config(path: Path) -> LoadedConfig:
    """Load and validate ``hub.yaml``; raise ConfigError listing every problem found."""
    path = Path(path)
    base_dir = path.parent.absolute()
    chosen: dict[str, Path] = {}

    def pick_secrets(data: Any) -> SecretResolver:
        # Called with the loaded data, so that hub.yaml can name its own secrets file.
        name = data.get("secrets_file") if isinstance(data, dict) else None
        if isinstance(name, str) and name.strip():
            chosen["explicit"] = chosen["used"] = base_dir / Path(name).expanduser()
        else:
            chosen["used"] = base_dir / DEFAULT_SECRETS_FILE
        return SecretResolver(chosen["used"])

    issues: list[ConfigIssue] = []
    try:
        source = load_yaml(path, secrets=pick_secrets)
    except SourceError as exc:
        if exc.doc is None:
            raise ConfigError(exc.issues) from exc
        issues.extend(exc.issues)
        source = exc.doc
    explicit = chosen.get("explicit")
    if explicit is not None and not explicit.is_file():
        message = f"secrets file not found: {explicit}"
        issues.append(source.issue(("secrets_file",), message, at_value=True))

    data = {} if source.data is None else source.data
    config: HubConfig | None = None
    if isinstance(data, dict):
        config, schema_issues = validate_model(
            HubConfig, data, source, (), context={"base_dir": base_dir}
        )
        issues.extend(schema_issues)
        issues.extend(_cross_check(data, source))
    else:
        kind = "a list" if isinstance(data, list) else repr(data)
        message = f"the configuration must be a mapping of sections (hub:, mqtt:, ...), got {kind}"
        issues.append(source.issue((), message))

    issues.sort(key=lambda issue: (issue.file != source.file, issue.file, issue.line, issue.col))
    errors = [issue for issue in issues if issue.severity == "error"]
    if errors or config is None:
        raise ConfigError(issues)
    _register_config_secrets(config)
    warnings = tuple(issue for issue in issues if issue.severity != "error")
    return LoadedConfig(
        config=config,
        source=source,
        path=path,
        warnings=warnings,
        secrets_path=chosen.get("used"),
    )
