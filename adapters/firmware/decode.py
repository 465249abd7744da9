"""A rule's decode groups, planned for speed: which values of a message go to which mapping.

The plan is built once per rule and gives the same readings, in the same order, as walking
every group's ``at`` and every mapping's path in turn:

- groups whose ``at`` is literal keys then one pattern (Shelly's ``params.switch:{channel}``,
  ``params.input:{channel}``...) are matched together, each key once (see :class:`PathFan`);
- consecutive groups at one literal place (each mapping of a decoder is a group) are read as
  one group: the place is looked up once;
- a mapping's literal path into objects is a chain of ``dict.get`` (one key: inline);
- a mapping's path of one pattern then object keys (Tasmota's ``{sensor}.Temperature``) looks
  only at the object's members that are objects, listed once per group and node;
- the entity key a mapping renders from the message's variables is remembered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adapters.firmware.paths import MISSING, Bindings, KeyPattern, PathFan
from adapters.firmware.templates import Template

if TYPE_CHECKING:
    from adapters.firmware.profile import Condition, DecodeGroup, FieldMap

# Entity keys remembered per mapping; the variables come from messages, so it is bounded.
_KEY_MEMO_LIMIT = 1024


@dataclass(eq=False, slots=True)
class MapPlan:
    """A mapping with its quick path and its remembered entity keys."""

    fmap: FieldMap
    keys: tuple[str, ...] | None  # the path as plain object keys, when it is one
    entity_names: tuple[str, ...]
    each_names: tuple[str, ...]
    # the path as one pattern then object keys (``{sensor}.Temperature``), when it is one
    pattern_keys: tuple[KeyPattern, tuple[str, ...]] | None = None
    # the path as a single object key, when it is one
    key: str | None = None
    memo: dict[tuple[Any, ...], str] = field(default_factory=dict)

    @classmethod
    def of(cls, fmap: FieldMap) -> MapPlan:
        """Plan one mapping."""
        keys = fmap.path.object_keys()
        return cls(
            fmap,
            keys,
            tuple(sorted(fmap.entity.names)),
            tuple(sorted(fmap.each.names)) if fmap.each is not None else (),
            fmap.path.pattern_then_keys(),
            keys[0] if keys is not None and len(keys) == 1 else None,
        )

    def value(self, node: Any) -> Any:
        """The value at a literal path, or MISSING."""
        keys = self.keys
        if keys is None:
            return self.fmap.path.get(node)
        for key in keys:
            if type(node) is not dict:
                return MISSING
            node = node.get(key, MISSING)
            if node is MISSING:
                return MISSING
        return node

    def entity_key(
        self,
        template: Template,
        bindings: Bindings,
        render: Callable[[Template, Bindings], str],
    ) -> str:
        """``render(template, bindings)``, remembered when the variables it uses are plain
        text or integers taken from the message (the same values give the same key)."""
        is_entity = template is self.fmap.entity
        memo_key: tuple[Any, ...] = (is_entity,)
        for name in self.entity_names if is_entity else self.each_names:
            value = bindings.get(name, MISSING)
            if type(value) is not str and type(value) is not int:
                # A device variable (not in the message), or a value such as 1.0 or True
                # that is equal to another type's as a dict key: not remembered.
                return render(template, bindings)
            memo_key += (value,)
        found = self.memo.get(memo_key)
        if found is None:
            found = render(template, bindings)
            if len(self.memo) >= _KEY_MEMO_LIMIT:
                self.memo.clear()
            self.memo[memo_key] = found
        return found


Reading = tuple[MapPlan, Any, Bindings]
_Tag = tuple[int, "DecodeGroup", tuple[MapPlan, ...]]
_Hit = tuple[_Tag, Any, Bindings]  # (group, the node it reached, the variables bound on the way)


class DecodePlan:
    """A rule's decode groups, ready to read a message."""

    def __init__(self, groups: tuple[DecodeGroup, ...]) -> None:
        self.groups = groups
        fans: dict[tuple[str, ...], PathFan[_Tag]] = {}
        self._generic: list[_Tag] = []
        for index, group in enumerate(groups):
            maps = tuple(MapPlan.of(fmap) for fmap in group.maps)
            split = group.at.split_pattern()
            if split is None:
                last = self._generic[-1] if self._generic else None
                if (
                    last is not None
                    and last[0] == index - 1
                    and group.at.literal
                    and not group.when
                    and last[1].at == group.at
                    and not last[1].when
                ):
                    # Consecutive groups at the same place (each mapping of a decoder is a
                    # group): one lookup of the place, the mappings in the same order.
                    self._generic[-1] = (index, last[1], last[2] + maps)
                    continue
                self._generic.append((index, group, maps))
                continue
            prefix, pattern = split
            keys = prefix.object_keys()
            if keys is None:
                self._generic.append((index, group, maps))
                continue
            fan = fans.get(keys)
            if fan is None:
                fan = fans[keys] = PathFan(prefix)
            fan.add((index, group, maps), pattern)
        self._fans = tuple(fans.values())

    @property
    def fans(self) -> tuple[PathFan[_Tag], ...]:
        """The groups matched together under shared literal keys (see :class:`PathFan`)."""
        return self._fans

    @property
    def generic(self) -> tuple[_Tag, ...]:
        """The other groups, each read at its own place: (index, group, its mappings)."""
        return tuple(self._generic)

    def readings(self, data: Any, bindings: Bindings) -> list[Reading]:
        """Every (mapping, value, variables) the message gives, in the profile's order."""
        hits: list[_Hit] = []
        for fan in self._fans:
            fan.find(data, bindings, hits)
        for tag in self._generic:
            at = tag[1].at
            if at.literal:
                node = at.get(data) if at.segments else data
                if node is not MISSING:
                    hits.append((tag, node, bindings))
                continue
            for node, bound in at.find(data, bindings):
                hits.append((tag, node, bound))
        if len(hits) > 1:
            hits.sort(key=_by_group)  # stable: within a group, the object's key order
        out: list[Reading] = []
        for (_, group, maps), node, found_at in hits:
            bound = found_at
            if group.when:
                checked = bind_conditions(group.when, node, found_at)
                if checked is None:
                    continue
                bound = checked
            members: list[tuple[str, dict[str, Any]]] | None = None
            for plan in maps:
                key = plan.key
                if key is not None:
                    # The common mapping: one key of an object.
                    value = node.get(key, MISSING) if type(node) is dict else MISSING
                    if value is not MISSING:
                        out.append((plan, value, bound))
                    continue
                if plan.keys is not None or plan.fmap.path.literal:
                    value = plan.value(node)
                    if value is not MISSING:
                        out.append((plan, value, bound))
                    continue
                if plan.pattern_keys is not None:
                    if members is None:
                        # Only members that are objects can have the keys after the pattern.
                        members = (
                            [(k, v) for k, v in node.items() if type(v) is dict]
                            if type(node) is dict
                            else []
                        )
                    _pattern_reads(plan, plan.pattern_keys, members, bound, out)
                    continue
                for value, map_bindings in plan.fmap.path.find(node, bound):
                    out.append((plan, value, map_bindings))
        return out


def _group_index(hit: _Hit) -> int:
    return hit[0][0]


_by_group = _group_index


def _pattern_reads(
    plan: MapPlan,
    pattern_keys: tuple[KeyPattern, tuple[str, ...]],
    members: list[tuple[str, dict[str, Any]]],
    bindings: Bindings,
    out: list[Reading],
) -> None:
    """Append what ``plan``'s pattern-then-keys path reads from ``members``, in their order
    (as ``JsonPath.find`` would)."""
    pattern, keys = pattern_keys
    for key, child in members:
        value: Any = child
        for step in keys:
            if type(value) is not dict:
                value = MISSING
                break
            value = value.get(step, MISSING)
            if value is MISSING:
                break
        if value is MISSING:
            continue
        variables = pattern.bind(key)
        if variables is None:
            continue
        bound = dict(bindings)
        for name, typed in variables.items():
            if bound.setdefault(name, typed) != typed:
                break  # the topic named another one
        else:
            out.append((plan, value, bound))


def bind_conditions(
    conditions: tuple[Condition, ...], node: Any, bindings: Bindings
) -> Bindings | None:
    """``bindings`` plus what the conditions bind, or None when one does not hold (``bindings``
    itself when they bind nothing: callers never change the dicts they are given)."""
    if not conditions:
        return bindings
    bound = bindings
    for condition in conditions:
        value = condition.path.get(node)
        if value is MISSING:
            return None
        if condition.pattern is None:
            if value != condition.constant or isinstance(value, bool) != isinstance(
                condition.constant, bool
            ):
                return None
            continue
        if not isinstance(value, str):
            return None
        match = condition.pattern.fullmatch(value)
        if match is None:
            return None
        for name, raw in match.groupdict().items():
            typed: Any = int(raw) if name in condition.ints else raw
            if name in bound:
                current = bound[name]
                if current != typed:
                    return None
                if type(current) is type(typed):
                    continue
            if bound is bindings:
                bound = dict(bindings)
            bound[name] = typed
    return bound
