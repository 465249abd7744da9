"""`hub rules ...` and `hub why`: rule tests, traces, replays, run-time control, causes."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.config import LoadedConfig
    from hub.rules.model import RuleSet
    from hub.storage import Storage

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
RUNTIME_FILE = ".hub-runtime.json"


def _loaded(args: argparse.Namespace) -> LoadedConfig | None:
    from hub.cli import load_or_report

    return load_or_report(args.config, allow_missing=True)


def _ruleset(args: argparse.Namespace, loaded: LoadedConfig) -> RuleSet | None:
    from hub.rules.loader import load_rules
    from hub.yamlsource import ConfigError, SecretResolver

    explicit = bool(getattr(args, "rules", None))
    paths = (
        list(args.rules)
        if explicit
        else list(loaded.config.rules.resolved_paths(loaded.path.parent))
    )
    try:
        return load_rules(
            paths,
            missing_ok=not (explicit or loaded.config.rules.configured),
            secrets=SecretResolver(loaded.secrets_path),
        )
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return None


def _tz(loaded: LoadedConfig) -> tuple[str, Any]:
    from hub.rules.schedule import Location

    loc = loaded.config.hub.location
    if loc is None:
        return "UTC", None
    return loc.time_zone, Location(loc.latitude, loc.longitude, loc.elevation, loc.time_zone)


async def _with_storage(loaded: LoadedConfig, work: Any) -> Any:
    from hub.storage import Storage

    storage = Storage(loaded.config.database.resolved_url)
    await storage.start()
    try:
        return await work(storage)
    finally:
        await storage.close()


async def _stored_registry(storage: Storage) -> Any:
    from hub.model import Registry

    registry = Registry()
    await storage.load_into(registry)
    return registry


def _configured(loaded: LoadedConfig) -> Any:
    """A registry of hub.yaml's areas and groups: rule tests can use the groups."""
    from hub.model import Area, Group, Registry

    registry = Registry()
    for area in loaded.config.areas:
        registry.areas[area.id] = Area(area.id, area.name)
    for group in loaded.config.groups:
        registry.groups[group.id] = Group(
            group.id, group.name, list(group.members), group.aggregate, group.kind
        )
    return registry


def _when(ts: float | None, tz: str = "UTC") -> str:
    if ts is None:
        return "-"
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")


# ----- hub rules test ------------------------------------------------------------------------


def cmd_test(args: argparse.Namespace) -> int:
    """Run the rules' own tests."""
    from hub.rules.sandbox import run_rule_tests

    loaded = _loaded(args)
    if loaded is None:
        return EXIT_FAILED
    ruleset = _ruleset(args, loaded)
    if ruleset is None:
        return EXIT_FAILED
    unknown = [r for r in args.rule if r not in ruleset.rules]
    if unknown:
        print(f"hub rules test: no rule called {', '.join(unknown)}", file=sys.stderr)
        return EXIT_USAGE
    tz, location = _tz(loaded)
    results = asyncio.run(
        run_rule_tests(
            ruleset, registry=_configured(loaded), tz=tz, location=location, only=args.rule
        )
    )
    failed = [r for r in results if not r.passed]
    if args.json:
        print(
            json.dumps(
                {
                    "passed": len(results) - len(failed),
                    "failed": len(failed),
                    "tests": [r.to_dict() for r in results],
                },
                indent=2,
                default=str,
            )
        )
    else:
        for result in results:
            mark = "PASS" if result.passed else "FAIL"
            print(f"{mark}  {result.rule_id}: {result.name}")
            if not result.passed:
                print(f"      at {result.pos}")
                for problem in result.problems:
                    print(f"      - {problem}")
        untested = [r for r in ruleset.rules.values() if not r.tests]
        if untested and not args.rule:
            print(
                f"note: {len(untested)} rule(s) have no tests: {', '.join(r.id for r in untested)}"
            )
        print(f"rules: {len(results) - len(failed)} passed, {len(failed)} failed")
    return EXIT_FAILED if failed else EXIT_OK


# ----- hub rules trace -----------------------------------------------------------------------


def _print_steps(steps: list[dict[str, Any]], indent: str) -> None:
    for step in steps:
        took = f" {step.get('duration_ms', 0):.1f} ms" if "duration_ms" in step else ""
        status = f"ERROR {step['error']}" if step.get("error") else _brief(step.get("result"))
        print(f"{indent}{step['path']} {step['type']}{took}: {status}   ({step['pos']})")
        for key in ("steps",):
            if step.get(key):
                _print_steps(step[key], indent + "  ")
        for i, iteration in enumerate(step.get("iterations") or [], 1):
            print(f"{indent}  iteration {i}")
            _print_steps(iteration, indent + "    ")
        for i, branch in enumerate(step.get("branches") or [], 1):
            print(f"{indent}  branch {i}")
            _print_steps(branch, indent + "    ")


def _brief(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 160 else text[:157] + "..."


def _print_conditions(conditions: list[dict[str, Any]], indent: str) -> None:
    for cond in conditions:
        mark = "yes" if cond.get("result") else "NO "
        extra = f" {cond['error']}" if cond.get("error") else ""
        seen = f" {cond['values']}" if cond.get("values") else ""
        print(f"{indent}[{mark}] {cond['path']} {cond['type']}{seen}{extra}   ({cond['pos']})")
        if cond.get("conditions"):
            _print_conditions(cond["conditions"], indent + "  ")


def print_trace(trace: dict[str, Any], tz: str) -> None:
    """A trace as people read it."""
    took = ""
    if trace.get("finished") and trace.get("started"):
        took = f" in {(trace['finished'] - trace['started']) * 1000:.1f} ms"
    print(f"run {trace['run_id']}  {_when(trace.get('started'), tz)}  -> {trace['outcome']}{took}")
    if trace.get("error"):
        print(f"  reason: {trace['error']}")
    print(f"  trigger: {_brief(trace.get('trigger'))}")
    chain = trace.get("context")
    causes = []
    while chain:
        causes.append(f"{chain['origin']} {chain['source']}")
        chain = chain.get("parent")
    if causes:
        print(f"  caused by: {' <- '.join(causes)}")
    if trace.get("conditions"):
        print("  conditions:")
        _print_conditions(trace["conditions"], "    ")
    if trace.get("steps"):
        print("  actions:")
        _print_steps(trace["steps"], "    ")


def cmd_trace(args: argparse.Namespace) -> int:
    """Show a rule's stored traces."""
    from hub.storage.rules import RuleStore

    loaded = _loaded(args)
    if loaded is None:
        return EXIT_FAILED

    async def fetch(storage: Storage) -> list[Any]:
        store = RuleStore(storage)
        try:
            return await store.traces(args.rule, limit=args.limit, outcome=args.outcome)
        finally:
            store.detach()

    traces = asyncio.run(_with_storage(loaded, fetch))
    tz, _ = _tz(loaded)
    if args.json:
        print(json.dumps([t.trace for t in traces], indent=2, default=str))
        return EXIT_OK
    if not traces:
        print(f"no stored runs of rule {args.rule!r}")
        return EXIT_OK
    for record in traces:
        print_trace(record.trace, tz)
        print()
    return EXIT_OK


# ----- hub rules replay ----------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay recorded history through the rules and print what they would have done."""
    from hub.durations import parse_duration
    from hub.rules.sandbox import replay
    from hub.storage.rules import RuleStore

    loaded = _loaded(args)
    if loaded is None:
        return EXIT_FAILED
    try:
        span = parse_duration(args.since)
    except ValueError as exc:
        print(f"hub rules replay: --since: {exc}", file=sys.stderr)
        return EXIT_USAGE
    ruleset = _ruleset(args, loaded)
    if ruleset is None:
        return EXIT_FAILED
    tz, location = _tz(loaded)
    until = time.time()
    since = until - span

    async def work(storage: Storage) -> Any:
        store = RuleStore(storage)
        try:
            history = await store.history(since, until)
            registry = await _stored_registry(storage)
        finally:
            store.detach()
        print(
            f"replaying {len(history)} recorded events since {_when(since, tz)} "
            f"through {len(ruleset.rules)} rule(s) ...",
            file=sys.stderr,
        )
        return await replay(
            ruleset, history, since=since, until=until, registry=registry, tz=tz, location=location
        )

    result = asyncio.run(_with_storage(loaded, work))
    commands = [e for e in result.effects if e["kind"] == "command"]
    if args.json:
        print(
            json.dumps(
                {
                    "since": result.since,
                    "until": result.until,
                    "events": result.events,
                    "effects": result.effects,
                    "runs": [
                        {"rule": t["rule_id"], "outcome": t["outcome"], "started": t["started"]}
                        for t in result.traces
                    ],
                },
                indent=2,
                default=str,
            )
        )
        return EXIT_OK
    for effect in result.effects:
        what = effect["kind"]
        if what == "command":
            detail = f"{effect['target']} {effect['action']} {effect.get('params') or ''}".rstrip()
        elif what == "notification":
            detail = repr(effect["message"])
        else:
            detail = _brief({k: v for k, v in effect.items() if k not in ("kind", "rule", "at")})
        print(f"{_when(effect.get('at'), tz)}  {effect.get('rule', '-'):<28} {what:<12} {detail}")
    outcomes: dict[str, int] = {}
    for trace in result.traces:
        outcomes[trace["outcome"]] = outcomes.get(trace["outcome"], 0) + 1
    summary = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) or "no runs"
    print(
        f"{result.events} events replayed; {len(result.traces)} rule runs ({summary}); "
        f"{len(commands)} command(s) would have been issued; nothing was touched"
    )
    return EXIT_OK


# ----- hub rules list / enable / disable / reload ---------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    """List the rules in the rule folders."""
    loaded = _loaded(args)
    if loaded is None:
        return EXIT_FAILED
    ruleset = _ruleset(args, loaded)
    if ruleset is None:
        return EXIT_FAILED
    rows = [
        {
            "id": rule.id,
            "description": rule.description,
            "mode": rule.mode.value,
            "enabled": rule.enabled,
            "triggers": len(rule.triggers),
            "tests": len(rule.tests),
            "pos": str(rule.pos),
        }
        for rule in ruleset.rules.values()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for row in rows:
        flag = "" if row["enabled"] else " (disabled)"
        print(
            f"{row['id']:<32} {row['mode']:<9} {row['tests']} test(s){flag}  {row['description']}"
        )
    return EXIT_OK


def runtime_file(loaded: LoadedConfig) -> Path:
    """Where a running hub notes its broker, so that CLI commands can reach it."""
    return loaded.path.parent / RUNTIME_FILE


def _control(
    args: argparse.Namespace, topic_leaf: str, payload: bytes, *, label: str = "hub rules"
) -> int:
    """Publish a control message to the running hub; ``label`` names the command in errors."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from hub.mqtt import BrokerAddress

    loaded = _loaded(args)
    if loaded is None:
        return EXIT_FAILED
    url = loaded.config.mqtt.url
    base = loaded.config.hub.base_topic
    if url is None:
        try:
            info = json.loads(runtime_file(loaded).read_text())
            url = info["broker"]
        except (OSError, ValueError, KeyError):
            print(
                f"{label}: no running hub found (no mqtt.url and no {runtime_file(loaded)})",
                file=sys.stderr,
            )
            return EXIT_FAILED
    address = BrokerAddress.parse(url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"hub-cli-{time.time_ns():x}")
    if address.username:
        client.username_pw_set(address.username, address.password)
    try:
        client.connect(address.host, address.port, 10)
        client.loop_start()
        info = client.publish(f"{base}/{topic_leaf}", payload, qos=1)
        info.wait_for_publish(5)
    except OSError as exc:
        print(
            f"{label}: cannot reach the hub's broker at {address.display()}: {exc}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    finally:
        client.disconnect()
        client.loop_stop()
    print(f"sent to {base}/{topic_leaf}")
    return EXIT_OK


def main(args: argparse.Namespace) -> int:
    """Dispatch ``hub rules ACTION``."""
    action = args.rules_command
    if action == "test":
        return cmd_test(args)
    if action == "trace":
        return cmd_trace(args)
    if action == "replay":
        return cmd_replay(args)
    if action == "list":
        return cmd_list(args)
    if action in ("enable", "disable"):
        body = json.dumps({"enabled": action == "enable"}).encode()
        return _control(args, f"rules/{args.rule}/set", body)
    if action == "reload":
        return _control(args, "rules/reload", b"{}")
    return EXIT_USAGE


# ----- hub why -------------------------------------------------------------------------------


def why(args: argparse.Namespace) -> int:
    """Print the chain of causes behind an entity's current state."""
    from hub.storage.rules import RuleStore

    loaded = _loaded(args)
    if loaded is None:
        return EXIT_FAILED

    async def fetch(storage: Storage) -> tuple[Any, list[tuple[Any, Any]]]:
        registry = await _stored_registry(storage)
        state = registry.states.get(args.entity)
        store = RuleStore(storage)
        runs: list[tuple[Any, Any]] = []
        try:
            node = state.context if state else None
            while node is not None:
                trace = None
                if node.origin.value == "rule":
                    for record in await store.traces(node.source, limit=200):
                        if record.run_id == node.id:
                            trace = record
                            break
                runs.append((node, trace))
                node = node.parent
        finally:
            store.detach()
        return state, runs

    state, chain = asyncio.run(_with_storage(loaded, fetch))
    tz, _ = _tz(loaded)
    if state is None:
        print(f"hub why: no stored state for {args.entity!r}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(
            json.dumps(
                {
                    "entity_id": args.entity,
                    "state": state.value,
                    "since": state.last_changed,
                    "chain": [
                        {"context": node.to_dict(), "trace": trace.trace if trace else None}
                        for node, trace in chain
                    ],
                },
                indent=2,
                default=str,
            )
        )
        return EXIT_OK
    print(f"{args.entity} is {state.value!r} since {_when(state.last_changed, tz)}")
    for depth, (node, trace) in enumerate(chain):
        lead = "  " * depth + ("because " if depth else "set by ")
        what = f"{node.origin.value} {node.source}" + (f" via {node.via}" if node.via else "")
        print(f"{lead}{what}  ({_when(node.created, tz)}, context {node.id})")
        if trace is not None:
            t = trace.trace
            pad = "  " * depth + "  "
            print(f"{pad}run {t['run_id']} -> {t['outcome']}; trigger {_brief(t.get('trigger'))}")
            held = [c for c in t.get("conditions", []) if c.get("result")]
            if held:
                print(f"{pad}conditions held: {', '.join(c['path'] for c in held)}")
    return EXIT_OK
