"""YAML files loaded with every node's position kept, so that errors point at line and column.

The loader composes PyYAML's node tree and builds plain dicts, lists and scalars from it
itself, recording where each key and value was written. It resolves scalars by the YAML 1.2
core schema: only ``true``/``false`` are booleans (``on``, ``off``, ``yes``, ``no`` stay text,
which matters for a hub whose states are ``on`` and ``off``) and ``12:30`` is text, not 750.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from hub.secrets import register_secret

PathKey = tuple[str | int, ...]
Position = tuple[int, int]

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_SECRET_TAG = "!secret"  # noqa: S105 - a YAML tag, not a password
_ENV_TAG = "!env"

# Aliases can expand a small file into a huge tree ("billion laughs"); stop well before that.
MAX_NODES = 1_000_000

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_ENV_REF = re.compile(r"\$(\$)?\{([^}]*)\}")
_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_\-]+")
_BOOL_TEXT = re.compile(r"true|True|TRUE|false|False|FALSE")


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a YAML or config file, at a line and column."""

    file: str
    line: int
    col: int
    path: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        message = self.message if self.severity == "error" else f"{self.severity}: {self.message}"
        return f"{self.file}:{self.line}:{self.col}: {self.path or '<root>'}: {message}"


class ConfigError(Exception):
    """One or more problems in configuration files; ``issues`` lists them all."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: list[ConfigIssue] = list(issues)
        super().__init__(self.issues)

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)


class SourceError(ConfigError):
    """A YAML file could not be loaded cleanly.

    ``doc`` is the partly loaded document when the file parsed (so a caller can go on
    validating it and report everything at once), or None when it did not.
    """

    def __init__(self, issues: Iterable[ConfigIssue], doc: SourceDoc | None = None) -> None:
        super().__init__(issues)
        self.doc = doc


def format_path(path: PathKey) -> str:
    """Return ``path`` written as ``groups[1].members``; ``<root>`` for the empty path."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SIMPLE_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out or "<root>"


def suggest(word: str, choices: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class SourceDoc:
    """A loaded YAML document: ``data`` as plain Python plus where every node was written."""

    __slots__ = ("_keys", "_origins", "_unresolved", "_values", "data", "file")

    def __init__(
        self,
        data: Any,
        file: str,
        *,
        keys: dict[PathKey, Position] | None = None,
        values: dict[PathKey, Position] | None = None,
        origins: dict[PathKey, str] | None = None,
        unresolved: set[PathKey] | None = None,
    ) -> None:
        self.data = data
        self.file = file
        self._keys = keys or {}
        self._values = values or {}
        self._origins = origins or {}
        self._unresolved = frozenset(unresolved or ())

    def position(self, path: PathKey) -> Position:
        """Return the (line, col) of ``path``'s key or node, else of its closest ancestor."""
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            found = self._keys.get(prefix) or self._values.get(prefix)
            if found is not None:
                return found
        return (1, 1)

    def value_position(self, path: PathKey) -> Position:
        """Return the (line, column) of the value at ``path`` rather than of its key."""
        found = self._values.get(path)
        return found if found is not None else self.position(path)

    def origin(self, path: PathKey) -> str | None:
        """Say where a value came from when not from the file (``secret 'x'``), else None."""
        for end in range(len(path), -1, -1):
            found = self._origins.get(path[:end])
            if found is not None:
                return found
        return None

    def unresolved(self, path: PathKey) -> bool:
        """True when the loader already reported that the value at ``path`` is missing."""
        return path in self._unresolved

    def issue(
        self, path: PathKey, message: str, *, at_value: bool = False, severity: str = "error"
    ) -> ConfigIssue:
        """Return an issue at ``path`` (its key, or its value when ``at_value``)."""
        line, col = self.value_position(path) if at_value else self.position(path)
        return ConfigIssue(self.file, line, col, format_path(path), message, severity)


class SecretResolver:
    """Secrets by name, from a YAML file of ``name: value`` pairs read on first use."""

    def __init__(self, path: Path | None, *, values: Mapping[str, Any] | None = None) -> None:
        self.path = path
        self._values: dict[str, Any] | None = dict(values) if values is not None else None
        self._issues: list[ConfigIssue] = []

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SecretResolver:
        """Return a resolver over in-memory values (tests, programmatic use)."""
        return cls(None, values=values)

    @property
    def where(self) -> str:
        """Where secrets are looked up, for messages."""
        return str(self.path) if self.path is not None else "the given secrets"

    def _load(self) -> dict[str, Any]:
        if self._values is not None:
            return self._values
        self._values = {}
        if self.path is None or not self.path.exists():
            return self._values
        try:
            doc = load_yaml(self.path)
        except SourceError as exc:
            self._issues.extend(exc.issues)
            if exc.doc is None:
                return self._values
            doc = exc.doc
        if doc.data is None:
            return self._values
        if not isinstance(doc.data, dict):
            self._issues.append(doc.issue((), "a secrets file must be a mapping of name: value"))
            return self._values
        for name, value in doc.data.items():
            if isinstance(value, dict | list):
                self._issues.append(doc.issue((name,), f"secret {name!r} must be a single value"))
            elif value is None:
                self._issues.append(doc.issue((name,), f"secret {name!r} has no value"))
            else:
                self._values[name] = value
        return self._values

    def get(self, name: str) -> Any | None:
        """Return the secret called ``name``, or None when there is none."""
        return self._load().get(name)

    def names(self) -> list[str]:
        """Return the names of all secrets (names are not secret; values are)."""
        return sorted(self._load())

    def missing_reason(self) -> str:
        """Explain, for a message, why a name was not found."""
        if self.path is None:
            return f"not found in {self.where}"
        if not self.path.exists():
            return f"not found: the secrets file {self.where} does not exist"
        if self._issues:
            return f"not found in {self.where} (that file has errors)"
        return f"not found in {self.where}"

    def take_issues(self) -> list[ConfigIssue]:
        """Return the secrets file's own problems once; later calls return an empty list."""
        issues, self._issues = self._issues, []
        return issues


SecretsArg = SecretResolver | Callable[[Any], SecretResolver | None] | None


class _Resolver(BaseResolver):
    """Implicit tags of the YAML 1.2 core schema, plus merge keys."""


_Resolver.add_implicit_resolver(_BOOL, re.compile(rf"^(?:{_BOOL_TEXT.pattern})$"), list("tTfF"))
_Resolver.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_Resolver.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_Resolver.add_implicit_resolver(_NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
_Resolver.add_implicit_resolver(_MERGE, re.compile(r"^(?:<<)$"), ["<"])


class _Composer(Reader, Scanner, Parser, Composer, _Resolver):
    """PyYAML's pure-Python composer (consistent error marks) with our resolver."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _Resolver.__init__(self)


def _pos(node: Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _describe_node(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return repr(node.value)


class _TooLargeError(Exception):
    pass


class _Builder:
    """Builds plain Python from a node tree, recording positions and collecting issues."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.issues: list[ConfigIssue] = []
        self.keys: dict[PathKey, Position] = {}
        self.values: dict[PathKey, Position] = {}
        self.origins: dict[PathKey, str] = {}
        # Paths whose value could not be worked out: schema checks skip them (no double report).
        self.unresolved: set[PathKey] = set()
        self.pending_secrets: list[tuple[PathKey, ScalarNode, str]] = []
        self._active: set[int] = set()
        self._count = 0

    def add(self, node: Node, path: PathKey, message: str, *, unresolved: bool = False) -> None:
        if unresolved:
            self.unresolved.add(path)
        line, col = _pos(node)
        self.issues.append(ConfigIssue(self.file, line, col, format_path(path), message))

    def build(self, node: Node, path: PathKey) -> Any:
        self._count += 1
        if self._count > MAX_NODES:
            raise _TooLargeError
        self.values[path] = _pos(node)
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if id(node) in self._active:
            self.add(node, path, "an alias refers to the value that contains it", unresolved=True)
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                if node.tag != _MAP:
                    self.add(node, path, f"tag {node.tag!r} cannot be used on a mapping")
                return self._mapping(node, path)
            if isinstance(node, SequenceNode) and node.tag != _SEQ:
                self.add(node, path, f"tag {node.tag!r} cannot be used on a list")
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        finally:
            self._active.discard(id(node))

    def _merge_sources(self, value: Node, path: PathKey) -> list[MappingNode]:
        if isinstance(value, MappingNode):
            return [value]
        if isinstance(value, SequenceNode) and all(
            isinstance(item, MappingNode) for item in value.value
        ):
            return list(value.value)
        self.add(value, path, "'<<' merges a mapping or a list of mappings")
        return []

    def _mapping(self, node: MappingNode, path: PathKey) -> dict[str, Any]:
        result: dict[str, Any] = {}
        explicit: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                # Earlier merged mappings win over later ones: build later ones first.
                for source in reversed(self._merge_sources(value_node, path)):
                    if id(source) in self._active:
                        self.add(source, path, "an alias refers to the value that contains it")
                        continue
                    self._active.add(id(source))
                    try:
                        result.update(self._mapping(source, path))
                    finally:
                        self._active.discard(id(source))
            else:
                explicit.append((key_node, value_node))
        first: dict[str, Node] = {}
        for key_node, value_node in explicit:
            key = self._key(key_node, path)
            if key is None:
                continue
            if key in first:
                line = first[key].start_mark.line + 1
                self.add(
                    key_node, (*path, key), f"duplicate key {key!r} (first given on line {line})"
                )
                continue
            first[key] = key_node
            if key in result:
                self._forget((*path, key))  # an explicit key overrides a merged one
            self.keys[(*path, key)] = _pos(key_node)
            result[key] = self.build(value_node, (*path, key))
        return result

    def _forget(self, prefix: PathKey) -> None:
        size = len(prefix)
        self.pending_secrets = [p for p in self.pending_secrets if p[0][:size] != prefix]
        for path in [p for p in self.origins if p[:size] == prefix]:
            del self.origins[path]

    def _key(self, node: Node, path: PathKey) -> str | None:
        if isinstance(node, ScalarNode) and node.tag == _STR:
            return str(node.value)
        if isinstance(node, ScalarNode) and node.tag == _NULL:
            self.add(node, path, "a key is empty")
        elif isinstance(node, ScalarNode):
            self.add(node, path, f"keys must be text, got {node.value!r}: put it in quotes")
        else:
            self.add(node, path, f"keys must be text, got {_describe_node(node)}")
        return None

    def _scalar(self, node: ScalarNode, path: PathKey) -> Any:
        tag, text = node.tag, str(node.value)
        if tag == _STR:
            return self._substitute(text, node, path)
        if tag == _SECRET_TAG:
            return self._secret(node, path)
        if tag == _ENV_TAG:
            return self._env(node, path)
        if tag == _NULL:
            return None
        try:
            if tag == _BOOL:
                if not _BOOL_TEXT.fullmatch(text):
                    raise ValueError
                return text.lower() == "true"
            if tag == _INT:
                return _parse_int(text)
            if tag == _FLOAT:
                return _parse_float(text)
        except ValueError:
            self.add(
                node, path, f"{text!r} is not a valid {tag.rsplit(':', 1)[-1]}", unresolved=True
            )
            return None
        self.add(
            node,
            path,
            f"unknown tag {tag!r}: the tags this file may use are !secret and !env",
            unresolved=True,
        )
        return None

    def _secret(self, node: ScalarNode, path: PathKey) -> Any:
        name = str(node.value).strip()
        if not _SECRET_NAME.fullmatch(name):
            self.add(
                node, path, f"'!secret' needs the name of a secret, got {name!r}", unresolved=True
            )
            return None
        # Resolved after the whole tree is built: the secrets file may be named in the tree.
        self.pending_secrets.append((path, node, name))
        self.origins[path] = f"secret {name!r}"
        return None

    def _env(self, node: ScalarNode, path: PathKey) -> str | None:
        spec = str(node.value).strip()
        name, colon, default = spec.partition(":")
        if not _NAME.fullmatch(name):
            self.add(
                node,
                path,
                f"'!env' needs an environment variable name, got {spec!r}",
                unresolved=True,
            )
            return None
        value = os.environ.get(name)
        if value is not None:
            register_secret(value)
            self.origins[path] = f"environment variable {name!r}"
            return value
        if colon:
            return default
        self.add(
            node,
            path,
            f"environment variable {name!r} is not set (looked in the hub's environment; "
            f"write '!env {name}:default' to give a default)",
            unresolved=True,
        )
        return None

    def _substitute(self, text: str, node: ScalarNode, path: PathKey) -> str:
        if "${" not in text:
            return text
        used: list[str] = []

        def replace(match: re.Match[str]) -> str:
            if match.group(1):  # "$${" is an escaped, literal "${"
                return match.group(0)[1:]
            name, sep, default = match.group(2).partition(":-")
            if not _NAME.fullmatch(name):
                self.add(
                    node,
                    path,
                    f"invalid environment variable reference {match.group(0)!r}",
                    unresolved=True,
                )
                return match.group(0)
            value = os.environ.get(name)
            if value is not None:
                register_secret(value)
                used.append(name)
                return value
            if sep:
                return default
            self.add(
                node,
                path,
                f"environment variable {name!r} is not set (used as ${{{name}}}; looked in the "
                f"hub's environment; write ${{{name}:-default}} to give a default)",
                unresolved=True,
            )
            return ""

        result = _ENV_REF.sub(replace, text)
        if used:
            names = ", ".join(repr(name) for name in used)
            self.origins[path] = f"environment variable{'s' if len(used) > 1 else ''} {names}"
        return result

    def resolve_secrets(self, data: Any, secrets: SecretResolver | None) -> Any:
        for path, node, name in self.pending_secrets:
            if secrets is None:
                self.add(
                    node,
                    path,
                    f"secret {name!r} not found: no secrets file is configured",
                    unresolved=True,
                )
                continue
            value = secrets.get(name)
            if value is None:
                hint = suggest(name, secrets.names())
                self.add(
                    node, path, f"secret {name!r} {secrets.missing_reason()}{hint}", unresolved=True
                )
                continue
            register_secret(str(value))
            if not path:
                data = value
                continue
            parent = data
            for part in path[:-1]:
                parent = parent[part]
            parent[path[-1]] = value
        if secrets is not None:
            self.issues.extend(secrets.take_issues())
        return data


def _parse_int(text: str) -> int:
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _parse_float(text: str) -> float:
    lowered = text.lower()
    if lowered.endswith(".inf"):
        return -math.inf if lowered.startswith("-") else math.inf
    if lowered == ".nan":
        return math.nan
    return float(text)


def _line_col(text: str, index: int) -> Position:
    before = text[:index]
    return (before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1)


def _read(path: Path) -> str:
    file = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise SourceError([ConfigIssue(file, 1, 1, "", "file not found")]) from exc
    except IsADirectoryError as exc:
        raise SourceError([ConfigIssue(file, 1, 1, "", "is a folder, not a file")]) from exc
    except OSError as exc:
        message = f"cannot read the file: {exc.strerror or exc}"
        raise SourceError([ConfigIssue(file, 1, 1, "", message)]) from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        head = raw[: exc.start]
        line, col = head.count(b"\n") + 1, exc.start - (head.rfind(b"\n") + 1) + 1
        message = f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x})"
        raise SourceError([ConfigIssue(file, line, col, "", message)]) from exc


def _syntax_issue(file: str, text: str, exc: yaml.YAMLError) -> ConfigIssue:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        message = exc.problem or "invalid YAML"
        if exc.context and exc.context_mark is not None:
            message += f" ({exc.context} on line {exc.context_mark.line + 1})"
        elif exc.context:
            message += f" ({exc.context})"
        return ConfigIssue(file, mark.line + 1, mark.column + 1, "", f"YAML syntax: {message}")
    if isinstance(exc, yaml.reader.ReaderError):
        line, col = _line_col(text, exc.position)
        message = f"YAML syntax: character {exc.character!r} is not allowed in YAML"
        return ConfigIssue(file, line, col, "", message)
    return ConfigIssue(file, 1, 1, "", f"YAML syntax: {exc}")


def load_yaml(path: Path, *, secrets: SecretsArg = None) -> SourceDoc:
    """Load a YAML file with positions; raise SourceError listing every problem.

    ``secrets`` resolves ``!secret`` tags; it may be a function that is given the loaded
    data (secrets not yet filled in) and returns the resolver, for files that name their
    own secrets file.
    """
    file = str(path)
    text = _read(path)
    try:
        node = _Composer(text).get_single_node()
    except yaml.YAMLError as exc:
        raise SourceError([_syntax_issue(file, text, exc)]) from exc
    except RecursionError as exc:
        raise SourceError([ConfigIssue(file, 1, 1, "", "the YAML is nested too deeply")]) from exc
    builder = _Builder(file)
    data: Any = None
    if node is not None:
        try:
            data = builder.build(node, ())
        except _TooLargeError as exc:
            message = f"the document expands to more than {MAX_NODES:,} values (aliases?)"
            raise SourceError([ConfigIssue(file, 1, 1, "", message)]) from exc
        except RecursionError as exc:
            message = "the YAML is nested too deeply"
            raise SourceError([ConfigIssue(file, 1, 1, "", message)]) from exc
    resolver = secrets(data) if callable(secrets) else secrets
    data = builder.resolve_secrets(data, resolver)
    doc = SourceDoc(
        data,
        file,
        keys=builder.keys,
        values=builder.values,
        origins=builder.origins,
        unresolved=builder.unresolved,
    )
    if builder.issues:
        raise SourceError(builder.issues, doc)
    return doc
