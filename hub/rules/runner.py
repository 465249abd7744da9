"""One run of a rule: its conditions, then its actions, each step traced.

A run's position is a *path* into the rule (``actions[2].then[0]``); a delay or a wait
records the path and the run's variables durably, so that after a restart the run resumes
where it stopped (see ``RuleEngine``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hub.model import Context, State
from hub.rules.model import (
    Action,
    AndCondition,
    ChooseAction,
    CommandAction,
    Condition,
    DelayAction,
    ExpressionCondition,
    FireEventAction,
    NotCondition,
    NotifyAction,
    NumericCondition,
    OrCondition,
    ParallelAction,
    RepeatAction,
    RepeatKind,
    Rule,
    SceneAction,
    StateCondition,
    StopAction,
    SunCondition,
    TimeCondition,
    TriggerCondition,
    VariablesAction,
    WaitAction,
    WebhookCallAction,
)

if TYPE_CHECKING:
    from hub.rules.engine import RuleEngine

_LOGGER = logging.getLogger(__name__)

Path = tuple[str | int, ...]


class StopRun(Exception):
    """A ``stop`` action ended the run."""

    def __init__(self, reason: str, *, error: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


class StepFailed(Exception):
    """An action failed; the message says why in plain words."""


def path_text(path: Path) -> str:
    """``("actions", 2, "then", 0)`` -> ``actions[2].then[0]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def values_equal(rule_value: Any, actual: Any) -> bool:
    """Compare a value written in a rule with a state value (numbers by value, text exactly)."""
    if rule_value == actual:
        return True
    a, b = _number(rule_value), _number(actual)
    if a is not None and b is not None:
        return a == b
    return str(rule_value) == str(actual)


class RunScope:
    """What expressions in a run can see: states, the clock, the run's variables."""

    def __init__(self, engine: RuleEngine, variables: dict[str, Any]) -> None:
        self._engine = engine
        self.variables = variables

    def state(self, entity_id: str) -> State | None:
        """The entity's current state (a group's aggregated state for a group id)."""
        return self._engine.subject_state(entity_id)

    def now(self) -> datetime:
        """Local time on the engine's clock."""
        return self._engine.clock.local_now()


@dataclass
class RuleRun:
    """One execution of a rule."""

    engine: RuleEngine
    rule: Rule
    run_id: str
    trigger: dict[str, Any]
    context: Context
    variables: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0
    trace: dict[str, Any] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    outcome: str = "running"
    durable_ids: set[str] = field(default_factory=set)
    # When resuming a wait after a restart: the original deadline (None: no timeout).
    resume_deadline: float | None = None
    # True while the run sleeps in a delay or a wait (shutdown does not wait for it).
    parked: bool = False

    def __post_init__(self) -> None:
        self.started = self.started or self.engine.clock.time()
        self.variables.setdefault("trigger", self.trigger)
        self.trace = {
            "run_id": self.run_id,
            "rule_id": self.rule.id,
            "trigger": self.trigger,
            "started": self.started,
            "context": self.context.to_dict(),
            "conditions": [],
            "steps": [],
            "outcome": "running",
            "error": None,
        }

    @property
    def scope(self) -> RunScope:
        """The expression scope over this run's variables."""
        return RunScope(self.engine, self.variables)

    # ----- the run -----------------------------------------------------------------------

    async def execute(self, *, resume: Path | None = None) -> None:
        """Check conditions (unless resuming), run the actions, and record the trace."""
        outcome, error = "ok", None
        try:
            if resume is None:
                holds = self.check_all(
                    self.rule.conditions, ("conditions",), self.trace["conditions"]
                )
                if not holds:
                    outcome = "conditions_failed"
                    return
            else:
                # resume is (index, ..., "@"): the step the run stopped at before the restart
                self.trace["resumed_at"] = path_text(("actions", *resume[:-1]))
            await self.run_actions(self.rule.actions, ("actions",), self.trace["steps"], resume)
        except StopRun as stop:
            outcome = "error" if stop.error else "stopped"
            error = stop.reason or None
        except StepFailed as exc:
            outcome, error = "error", str(exc)
        except asyncio.CancelledError:
            outcome = self.outcome if self.outcome != "running" else "aborted"
            error = "the run was cancelled" if outcome == "aborted" else None
            raise
        except Exception as exc:
            _LOGGER.exception("rule %s run %s failed", self.rule.id, self.run_id)
            outcome, error = "error", f"{type(exc).__name__}: {exc}"
        finally:
            self.finish(outcome, error)

    def finish(self, outcome: str, error: str | None) -> None:
        """Close the trace and hand it to the engine (once)."""
        if self.trace.get("finished") is not None:
            return
        self.outcome = outcome
        self.trace["outcome"] = outcome
        self.trace["error"] = error
        self.trace["finished"] = self.engine.clock.time()
        self.trace["variables"] = _jsonable(
            {k: v for k, v in self.variables.items() if k != "trigger"}
        )
        self.engine.run_finished(self)

    # ----- conditions --------------------------------------------------------------------

    def check_all(
        self, conditions: Sequence[Condition], path: Path, out: list[dict[str, Any]]
    ) -> bool:
        """True if every condition holds; each one's result is traced (stops at the first no)."""
        for index, condition in enumerate(conditions):
            if not self.check(condition, (*path, index), out):
                return False
        return True

    def check(self, condition: Condition, path: Path, out: list[dict[str, Any]]) -> bool:
        """Evaluate one condition and trace it."""
        entry: dict[str, Any] = {
            "path": path_text(path),
            "pos": str(condition.pos),
            "type": _type_name(condition),
        }
        out.append(entry)
        try:
            result = self._evaluate(condition, path, entry)
        except Exception as exc:
            entry["result"] = False
            entry["error"] = str(exc)
            return False
        entry["result"] = result
        return result

    def _evaluate(self, condition: Condition, path: Path, entry: dict[str, Any]) -> bool:
        engine = self.engine
        if isinstance(condition, StateCondition):
            seen = {}
            ok = True
            for entity_id in condition.entity_ids:
                value = engine.entity_value(entity_id, condition.attribute)
                seen[entity_id] = value
                if not any(values_equal(want, value) for want in condition.state):
                    ok = False
                elif condition.for_:
                    since = engine.last_changed(entity_id)
                    held = engine.clock.time() - since if since is not None else 0.0
                    if held < condition.for_:
                        ok = False
            entry["values"] = _jsonable(seen)
            return ok
        if isinstance(condition, NumericCondition):
            seen = {}
            ok = True
            for entity_id in condition.entity_ids:
                number = _number(engine.entity_value(entity_id, condition.attribute))
                seen[entity_id] = number
                if number is None or not engine.in_range(number, condition.above, condition.below):
                    ok = False
            entry["values"] = seen
            return ok
        if isinstance(condition, TimeCondition):
            from hub.rules.schedule import in_time_window, on_weekday, parse_time_of_day

            now = engine.clock.local_now()
            entry["now"] = now.isoformat(timespec="seconds")
            after = parse_time_of_day(condition.after) if condition.after else None
            before = parse_time_of_day(condition.before) if condition.before else None
            if (after or before) and not in_time_window(now, after, before):
                return False
            return not (condition.weekdays and not on_weekday(now, condition.weekdays))
        if isinstance(condition, SunCondition):
            from hub.rules.schedule import sun_condition

            location = engine.location
            if location is None:
                raise StepFailed("a sun condition needs hub.location in hub.yaml")
            return sun_condition(
                engine.clock.local_now(),
                location,
                condition.after.value if condition.after else None,
                condition.after_offset,
                condition.before.value if condition.before else None,
                condition.before_offset,
            )
        if isinstance(condition, TriggerCondition):
            return self.trigger.get("id") in condition.ids
        if isinstance(condition, AndCondition):
            nested: list[dict[str, Any]] = []
            entry["conditions"] = nested
            return self.check_all(condition.conditions, (*path, "and"), nested)
        if isinstance(condition, OrCondition):
            nested = []
            entry["conditions"] = nested
            return any(
                self.check(c, (*path, "or", i), nested) for i, c in enumerate(condition.conditions)
            )
        if isinstance(condition, NotCondition):
            nested = []
            entry["conditions"] = nested
            return not any(
                self.check(c, (*path, "not", i), nested) for i, c in enumerate(condition.conditions)
            )
        if isinstance(condition, ExpressionCondition):
            return bool(engine.expression(condition.expression).evaluate(self.scope))
        raise StepFailed(f"unknown condition {type(condition).__name__}")

    # ----- actions -----------------------------------------------------------------------

    async def run_actions(
        self,
        actions: Sequence[Action],
        path: Path,
        out: list[dict[str, Any]],
        resume: Path | None = None,
    ) -> None:
        """Run a sequence of actions (from a resume point inside it, if given)."""
        start = 0
        inner: Path | None = None
        if resume:
            index = resume[0]
            assert isinstance(index, int)
            start, inner = index, resume[1:] or None
        for index in range(start, len(actions)):
            action = actions[index]
            await self.run_action(action, (*path, index), out, inner if index == start else None)

    async def run_action(
        self, action: Action, path: Path, out: list[dict[str, Any]], resume: Path | None
    ) -> None:
        """Run one action and trace it (its timing, result or error)."""
        step: dict[str, Any] = {
            "path": path_text(path),
            "pos": str(action.pos),
            "type": _type_name(action),
            "started": self.engine.clock.time(),
        }
        if action.alias:
            step["alias"] = action.alias
        out.append(step)
        began = time.perf_counter()
        try:
            step["result"] = await self._act(action, path, step, resume)
        except StepFailed as exc:
            step["error"] = str(exc)
            if not action.continue_on_error:
                raise
        except StopRun as stop:
            step["result"] = {"stopped": stop.reason, "error": stop.error}
            raise
        finally:
            step["duration_ms"] = round((time.perf_counter() - began) * 1000, 3)

    async def _act(
        self, action: Action, path: Path, step: dict[str, Any], resume: Path | None
    ) -> Any:
        engine = self.engine
        if isinstance(action, CommandAction):
            return await self._command(action)
        if isinstance(action, NotifyAction):
            return engine.notify(action, self)
        if isinstance(action, DelayAction):
            seconds = engine.duration(action.duration, self.scope)
            if resume is not None:
                # Resumed after a restart: the delay's remaining time was already waited.
                return {"resumed": True}
            await engine.durable_delay(self, path, seconds)
            return {"seconds": seconds}
        if isinstance(action, WaitAction):
            return await engine.wait(self, action, path, resumed=resume is not None)
        if isinstance(action, ChooseAction):
            return await self._choose(action, path, step, resume)
        if isinstance(action, RepeatAction):
            return await self._repeat(action, path, step, resume)
        if isinstance(action, ParallelAction):
            branches: list[list[dict[str, Any]]] = [[] for _ in action.branches]
            step["branches"] = branches
            await asyncio.gather(
                *(
                    self.run_actions(branch, (*path, "parallel", i), branches[i])
                    for i, branch in enumerate(action.branches)
                )
            )
            return {"branches": len(action.branches)}
        if isinstance(action, VariablesAction):
            rendered = {
                name: engine.render(value, self.scope) for name, value in action.variables.items()
            }
            self.variables.update(rendered)
            return _jsonable(rendered)
        if isinstance(action, StopAction):
            raise StopRun(engine.render_text(action.reason, self.scope), error=action.error)
        if isinstance(action, SceneAction):
            return await engine.apply_scene(action.scene, self)
        if isinstance(action, WebhookCallAction):
            return await engine.call_webhook(action, self)
        if isinstance(action, FireEventAction):
            return engine.fire_event_action(action, self)
        raise StepFailed(f"unknown action {type(action).__name__}")

    async def _command(self, action: CommandAction) -> Any:
        from hub.commands import Command, CommandError

        engine = self.engine
        target = engine.render_text(action.target, self.scope)
        params = engine.render(action.params, self.scope)
        if not isinstance(params, Mapping):
            raise StepFailed(f"params must be a mapping, got {params!r}")
        command = Command(target, action.action, self.context, dict(params))
        try:
            futures = engine.hub.commands.issue(command)
        except CommandError as exc:
            raise StepFailed(f"{target} {action.action}: {exc}") from exc
        engine.command_issued(self, target, action.action, dict(params))
        if not action.wait:
            return {"target": target, "action": action.action, "params": _jsonable(params)}
        results = await asyncio.gather(*futures)
        summary = [r.to_dict() for r in results]
        failed = [r for r in results if not r.ok]
        if failed:
            reasons = "; ".join(f"{r.entity_id}: {r.reason}" for r in failed)
            raise StepFailed(f"{target} {action.action} failed: {reasons}")
        return {"target": target, "action": action.action, "results": summary}

    async def _choose(
        self, action: ChooseAction, path: Path, step: dict[str, Any], resume: Path | None
    ) -> Any:
        if resume is not None:
            # ("choice", k, ...) or ("default", ...)
            if resume[0] == "default":
                nested: list[dict[str, Any]] = []
                step["steps"] = nested
                await self.run_actions(action.default, (*path, "default"), nested, resume[1:])
                return {"branch": "default", "resumed": True}
            index = int(resume[1])
            nested = []
            step["steps"] = nested
            await self.run_actions(
                action.choices[index].actions, (*path, "choice", index), nested, resume[2:]
            )
            return {"branch": index, "resumed": True}
        checked: list[dict[str, Any]] = []
        step["conditions"] = checked
        for index, choice in enumerate(action.choices):
            if self.check_all(choice.conditions, (*path, "choice", index, "conditions"), checked):
                nested = []
                step["steps"] = nested
                await self.run_actions(choice.actions, (*path, "choice", index), nested)
                return {"branch": index}
        if action.default:
            nested = []
            step["steps"] = nested
            await self.run_actions(action.default, (*path, "default"), nested)
            return {"branch": "default"}
        return {"branch": None}

    async def _repeat(
        self, action: RepeatAction, path: Path, step: dict[str, Any], resume: Path | None
    ) -> Any:
        engine = self.engine
        iterations: list[list[dict[str, Any]]] = []
        step["iterations"] = iterations
        first = 1
        inner: Path | None = None
        if resume is not None:
            first, inner = int(resume[1]), resume[2:]
        items: list[Any] | None = None
        if action.kind is RepeatKind.FOR_EACH:
            saved = self.variables.get("repeat", {})
            if resume is not None and isinstance(saved, dict) and "items" in saved:
                items = list(saved["items"])
            else:
                rendered = engine.render(action.items, self.scope)
                if not isinstance(rendered, list | tuple):
                    raise StepFailed(f"for_each needs a list, got {rendered!r}")
                items = list(rendered)
        count: int | None = None
        if action.kind is RepeatKind.COUNT:
            value = _number(engine.render(action.count, self.scope))
            if value is None or value < 0:
                raise StepFailed(f"repeat count must be a number >= 0, got {action.count!r}")
            count = int(value)
        index = first
        outer_repeat = self.variables.get("repeat")
        try:
            while index <= action.max_iterations:
                if count is not None and index > count:
                    break
                if items is not None and index > len(items):
                    break
                repeat_vars: dict[str, Any] = {"index": index, "first": index == 1}
                if items is not None:
                    repeat_vars["item"] = items[index - 1]
                    repeat_vars["items"] = items
                self.variables["repeat"] = repeat_vars
                if action.kind is RepeatKind.WHILE and inner is None:
                    checks: list[dict[str, Any]] = []
                    if not self.check_all(action.conditions, (*path, "while"), checks):
                        break
                nested: list[dict[str, Any]] = []
                iterations.append(nested)
                await self.run_actions(action.actions, (*path, "repeat", index), nested, inner)
                inner = None
                if action.kind is RepeatKind.UNTIL:
                    checks = []
                    if self.check_all(action.conditions, (*path, "until"), checks):
                        break
                index += 1
            else:
                raise StepFailed(f"repeat stopped after {action.max_iterations} iterations")
        finally:
            if outer_repeat is None:
                self.variables.pop("repeat", None)
            else:
                self.variables["repeat"] = outer_repeat
        return {"iterations": len(iterations)}


def _type_name(obj: object) -> str:
    name = type(obj).__name__
    for suffix in ("Condition", "Action", "Trigger"):
        if name.endswith(suffix) and name != suffix:
            name = name[: -len(suffix)]
    out = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
    return out.replace("webhook_call", "webhook_call")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
