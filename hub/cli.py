"""The ``hub`` command line. Exit codes: 0 success, 1 a failed check or run, 2 bad usage."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.config import LoadedConfig

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        default=Path("hub.yaml"),
        help="configuration file (default: ./hub.yaml)",
    )


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document for scripts")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="hub", description="A self-hosted, MQTT-centred home-automation hub."
    )
    from hub import __version__

    parser.add_argument("--version", action="version", version=f"hub {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run the hub", description="Run the hub until Ctrl-C.")
    _add_config(run)

    demo = sub.add_parser(
        "demo",
        help="run a broker, the hub and a simulated home",
        description="Start a broker (unless hub.yaml names one), the hub, SQLite storage and a "
        "simulated home that publishes realistic traffic and obeys commands. Ctrl-C stops it.",
    )
    _add_config(demo)
    demo.add_argument(
        "--devices", type=int, default=36, help="simulated devices (default 36, at least 30)"
    )
    demo.add_argument(
        "--rate", type=float, default=10.0, help="state reports per second (default 10)"
    )
    demo.add_argument("--seed", type=int, default=1, help="random seed of the simulated home")
    demo.add_argument(
        "--dialects",
        choices=("mixed", "native"),
        default="mixed",
        help="mixed: devices speak Tasmota, Shelly, Zigbee2MQTT, discovery and the hub's own "
        "convention (default); native: only the hub's own convention",
    )
    demo.add_argument(
        "--no-frontends",
        action="store_true",
        help="do not run the Discord, SMS and e-mail front-ends against their local stand-ins",
    )

    check = sub.add_parser(
        "check",
        help="validate the configuration",
        description="Validate hub.yaml (and enabled plug-ins' settings). Prints each problem as "
        "file:line:col: path: message. Exit 1 if there is any error.",
    )
    _add_config(check)
    _add_json(check)

    simulate = sub.add_parser(
        "simulate",
        help="run the simulated home against any broker",
        description="Run the simulated home on its own against a broker, until Ctrl-C.",
    )
    _add_config(simulate)
    simulate.add_argument(
        "--broker",
        metavar="URL",
        help="broker URL (default: hub.yaml's mqtt.url, else mqtt://127.0.0.1:1883)",
    )
    simulate.add_argument("--devices", type=int, default=36, help="number of devices (default 36)")
    simulate.add_argument(
        "--rate", type=float, default=10.0, help="state reports per second in total (default 10)"
    )
    simulate.add_argument(
        "--prefix", help="device topic prefix (default: hub.yaml's hub.device_topic)"
    )
    simulate.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    simulate.add_argument(
        "--dialects",
        choices=("native", "mixed"),
        default="native",
        help="native: the hub's own convention (default); mixed: firmware dialects as in hub demo",
    )

    bench = sub.add_parser(
        "bench",
        help="measure throughput and latency",
        description="Start a private broker, the hub and the simulator; drive a fixed load and "
        "report ingest rate, loss, latency, CPU, memory and start-up time.",
    )
    _add_config(bench)
    _add_json(bench)
    bench.add_argument("--devices", type=int, default=200, help="simulated devices (default 200)")
    bench.add_argument(
        "--rate", type=float, default=2000.0, help="messages per second (default 2000)"
    )
    bench.add_argument("--duration", type=float, default=20.0, help="seconds of load (default 20)")
    bench.add_argument(
        "--scenario",
        default="core",
        help="load scenario: core, rules or firmware (Tasmota, Shelly, Zigbee2MQTT and discovery "
        "devices through the adapters); default core",
    )
    bench.add_argument("--rules", type=int, help="rules scenario: how many rules (default 100)")
    bench.add_argument(
        "--max",
        action="store_true",
        help="find the highest rate sustained with zero loss and p99 within 50 ms (a step "
        "that only falls behind is run once more before it counts as failed)",
    )
    bench.add_argument(
        "--against",
        metavar="SCENARIO",
        help="with --max: also find SCENARIO's limit (core or firmware), the two searches "
        "taking turns step by step, and report the ratio (fair on a host whose speed drifts)",
    )
    bench.add_argument(
        "--rounds",
        type=int,
        default=1,
        metavar="N",
        help="with --max: run the search N times and report the median round, with every "
        "round's limits (and ratio, with --against); default 1",
    )
    bench.add_argument(
        "--replay",
        action="store_true",
        help="replay the scenario's messages (generated as if sent at --rate) into an "
        "in-process hub and report its CPU time per message by dialect (steady on a busy "
        "machine; for comparing changes to hot paths)",
    )
    bench.add_argument(
        "--messages",
        type=int,
        default=50000,
        help="--replay: how many messages (default 50000)",
    )

    rules = sub.add_parser(
        "rules",
        help="test, trace, replay and control rules",
        description="Work with the YAML rules: run their tests, read their traces, replay "
        "history through them, and enable, disable or reload them in a running hub.",
    )
    rsub = rules.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    rtest = rsub.add_parser(
        "test",
        help="run the rules' own test cases",
        description="Run every rule's tests on a simulated clock, against no broker and no "
        "device. Exit 1 if any fails.",
    )
    rtest.add_argument("rule", nargs="*", help="only these rules")
    rtrace = rsub.add_parser(
        "trace",
        help="show a rule's recent runs",
        description="Show the stored traces of a rule: trigger, conditions, steps, outcome.",
    )
    rtrace.add_argument("rule", help="the rule id")
    rtrace.add_argument("--limit", type=int, default=5, help="how many runs (default 5)")
    rtrace.add_argument("--outcome", help="only runs with this outcome (ok, error, ...)")
    rreplay = rsub.add_parser(
        "replay",
        help="replay recorded history through the rules (dry run)",
        description="Replay the recorded event history through a (changed) rule set on a "
        "simulated clock and print the commands it would have issued. Touches nothing.",
    )
    rreplay.add_argument(
        "--since", required=True, metavar="DURATION", help="how far back, e.g. 2h or 1d"
    )
    rlist = rsub.add_parser(
        "list", help="list the rules", description="List the rules in the rule folders."
    )
    for name in ("enable", "disable"):
        p = rsub.add_parser(
            name,
            help=f"{name} a rule in the running hub",
            description=f"{name.capitalize()} a rule in the running hub (over MQTT).",
        )
        p.add_argument("rule", help="the rule id")
    rsub.add_parser(
        "reload",
        help="reload the rule files in the running hub",
        description="Ask the running hub to reload its rule files. An invalid "
        "set is refused and the running rules stay.",
    )
    for p in (
        rtest,
        rtrace,
        rreplay,
        rlist,
        *[rsub.choices[n] for n in ("enable", "disable", "reload")],
    ):
        _add_config(p)
    for p in (rtest, rtrace, rreplay, rlist):
        _add_json(p)
    for p in (rtest, rreplay, rlist):
        p.add_argument(
            "--rules",
            action="append",
            type=Path,
            metavar="DIR",
            help="rule folder(s) to use instead of hub.yaml's rules.paths",
        )

    why = sub.add_parser(
        "why",
        help="explain why an entity is in its state",
        description="Print the chain of causes behind an entity's current state: the device, "
        "the rule run (with its trigger) and the person or event that started it.",
    )
    _add_config(why)
    _add_json(why)
    why.add_argument("entity", help="the entity id, e.g. kitchen_light.light")

    devices = sub.add_parser(
        "devices",
        help="list devices with their state",
        description="List the devices the hub knows, with availability and entity states.",
    )
    _add_config(devices)
    _add_json(devices)

    from hub.scenes import add_parser as add_scene_parser  # `hub scene ...`

    add_scene_parser(sub, _add_config, _add_json)
    from hub.notify.cli import add_parser as add_notifications_parser  # `hub notifications`

    add_notifications_parser(sub, _add_config, _add_json)
    from hub.conversation.cli import add_parser as add_ask_parser  # `hub ask ...`

    add_ask_parser(sub, _add_config, _add_json)
    return parser


def load_or_report(path: Path, *, allow_missing: bool = False) -> LoadedConfig | None:
    """Load the configuration; print every issue to stderr and return None on errors."""
    from hub.config import load_config
    from hub.yamlsource import ConfigError

    if allow_missing and not path.exists():
        from hub.config import HubConfig, LoadedConfig
        from hub.yamlsource import SourceDoc

        # Commands that can work without a file (demo, simulate, devices) use the defaults.
        return LoadedConfig(HubConfig(), SourceDoc({}, str(path)), path)
    try:
        return load_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{len(exc.issues)} problem(s) in {path}", file=sys.stderr)
        return None


def setup_logging(level: str, fmt: str = "text") -> None:
    """Log to stderr, with known secrets redacted from every line."""
    from hub.secrets import RedactingFilter

    handler = logging.StreamHandler()
    if fmt == "json":
        from hub.logs import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that log every request or connection at INFO; their warnings still show.
    for noisy in (
        "amqtt",
        "transitions",
        "aiosqlite",
        "asyncio",
        "alembic",
        "aiohttp.access",
        "twilio",
        "uvicorn",
        "mail.log",
        "discord",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


async def _run_hub(loaded: LoadedConfig, *, on_started: Any = None, on_stopping: Any = None) -> int:
    from hub.core import Hub
    from hub.mqtt import MqttError
    from hub.storage import StorageError

    hub = Hub(
        loaded.config,
        config_path=loaded.path,
        source=loaded.source,
        secrets_path=loaded.secrets_path,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, hub.request_stop)
    try:
        try:
            await hub.start()
        except (MqttError, StorageError) as exc:
            logging.getLogger("hub").error("cannot start: %s", exc)
            await hub.stop()
            return EXIT_FAILED
        if on_started is not None:
            await on_started(hub)
        await hub.run_until_stopped()
    finally:
        if hub.started:
            print("stopping: flushing storage and saying goodbye on MQTT ...", file=sys.stderr)
            if on_stopping is not None:
                await on_stopping()
            await hub.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """``hub run``."""
    loaded = load_or_report(args.config)
    if loaded is None:
        return EXIT_FAILED
    setup_logging(loaded.config.logging.level, loaded.config.logging.format)
    return asyncio.run(_run_hub(loaded))


def cmd_demo(args: argparse.Namespace) -> int:
    """``hub demo``: broker, hub, simulated home; prints where to look."""
    if args.devices < 1:
        print("hub demo: --devices must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    loaded = load_or_report(args.config, allow_missing=True)
    if loaded is None:
        return EXIT_FAILED
    setup_logging(loaded.config.logging.level, loaded.config.logging.format)

    from hub.demofrontends import DemoFrontends

    simulators: list[Any] = []
    frontends = None if args.no_frontends else DemoFrontends()

    async def with_simulator(hub: Any) -> None:
        from hub.simulator import Simulator, build_home

        assert hub.mqtt is not None
        url = hub.broker.url if hub.broker is not None else loaded.config.mqtt.url
        assert url is not None  # the hub is connected, so it has a broker URL
        sim = Simulator(
            url,
            build_home(args.devices, seed=args.seed, mixed=args.dialects == "mixed"),
            rate=args.rate,
            prefix=loaded.config.hub.device_topic,
            client_id="hub-demo-simulator",
        )
        await asyncio.to_thread(sim.start)
        simulators.append(sim)
        from hub.events import Notification

        def show(note: Notification) -> None:
            # Every notification is also printed, so the demo shows it with or without front-ends.
            title = f"{note.title}: " if note.title else ""
            print(f"notification  {title}{note.message}", flush=True)

        hub.bus.subscribe(Notification, show, owner="demo")
        engine = hub.rules.engine if hub.rules is not None else None
        rule_count = len(engine.rules) if engine is not None else 0
        rule_folders = ", ".join(
            str(p) for p in loaded.config.rules.resolved_paths(loaded.path.parent)
        )
        base = hub.base_topic
        broker = (
            hub.broker.describe()
            if hub.broker is not None
            else f"{hub.mqtt.address.display()} (from {loaded.path})"
        )
        print(
            "\n".join(
                [
                    "",
                    "hub demo is running",
                    f"  broker     {broker}",
                    f"  database   {_display_db(loaded.config.database.resolved_url)}",
                    f"  simulated  {args.devices} devices, {args.rate:g} reports/s"
                    + (
                        " (Tasmota, Shelly, Zigbee2MQTT, discovery and"
                        f" {loaded.config.hub.device_topic}/#)"
                        if args.dialects == "mixed"
                        else f" on {loaded.config.hub.device_topic}/#"
                    ),
                    f"  rules      {rule_count} from {rule_folders}"
                    " (notifications are printed here)",
                    "",
                    "where to look",
                    f"  live model     mosquitto_sub -p {hub.mqtt.address.port} -t '{base}/#' -v",
                    f"  a command      mosquitto_pub -p {hub.mqtt.address.port}"
                    f" -t '{base}/devices/kitchen_light/set'"
                    """ -m '{"entity":"light","action":"turn_on","params":{"brightness":200}}'""",
                    f"  devices        hub devices --config {loaded.path}",
                    f"  rule runs      hub rules trace hallway_motion_light --config {loaded.path}",
                    f"  why            hub why hallway_light.light --config {loaded.path}",
                    "",
                    "",
                    *(frontends.banner() if frontends is not None else []),
                    "",
                    "Ctrl-C stops everything cleanly.",
                    "",
                ]
            ),
            flush=True,
        )
        if frontends is not None:
            frontends.attach(hub)

    async def stop_simulator() -> None:
        # Devices go offline before the hub stops, so the hub records it like a real home.
        for sim in simulators:
            await asyncio.to_thread(sim.stop)

    async def demo() -> int:
        from dataclasses import replace

        demo_loaded = loaded
        try:
            if frontends is not None:
                demo_loaded = replace(loaded, config=await frontends.start(loaded.config))
            return await _run_hub(
                demo_loaded, on_started=with_simulator, on_stopping=stop_simulator
            )
        finally:
            if frontends is not None:
                await frontends.stop()

    return asyncio.run(demo())


def _display_db(url: str) -> str:
    from hub.secrets import redact_url

    return redact_url(url)


def cmd_check(args: argparse.Namespace) -> int:
    """``hub check``."""
    from dataclasses import replace

    from hub.config import load_config
    from hub.plugins import check_plugins
    from hub.rules.loader import check_rule_files
    from hub.scenes import load_scene_folder
    from hub.yamlsource import ConfigError, SecretResolver

    try:
        loaded = load_config(args.config)
        issues = check_plugins(loaded.config, loaded.source)
        _, scenes, scene_issues = load_scene_folder(
            loaded.config.scenes, loaded.path.parent, loaded.source
        )
        issues += scene_issues
        paths = loaded.config.rules.resolved_paths(loaded.path.parent)
        missing_ok = not loaded.config.rules.configured
        secrets = SecretResolver(loaded.secrets_path)
        rule_issues = check_rule_files(paths, missing_ok=missing_ok, secrets=secrets)
        issues += rule_issues
        if not any(i.severity == "error" for i in rule_issues):
            # Static checks need loadable rules: unknown references, conflicts, loops.
            from hub.rules.checks import check_ruleset, known_from
            from hub.rules.loader import load_rules

            known = asyncio.run(known_from(loaded.config, loaded.config.database.resolved_url))
            known = replace(known, scenes=frozenset(scenes))  # rules may name only these
            ruleset = load_rules(paths, missing_ok=missing_ok, secrets=secrets)
            issues += check_ruleset(ruleset, known)
    except ConfigError as exc:
        issues = list(exc.issues)
    errors = [i for i in issues if i.severity == "error"]
    if args.json:
        print(
            json.dumps(
                {
                    "file": str(args.config),
                    "ok": not errors,
                    "issues": [
                        {
                            "file": i.file,
                            "line": i.line,
                            "col": i.col,
                            "path": i.path,
                            "message": i.message,
                            "severity": i.severity,
                        }
                        for i in issues
                    ],
                },
                indent=2,
            )
        )
    else:
        for issue in issues:
            print(issue)
        warnings = len(issues) - len(errors)
        note = f" ({warnings} warning(s))" if warnings else ""
        print(
            f"{args.config}: OK{note}" if not errors else f"{len(errors)} error(s) in {args.config}"
        )
    return EXIT_FAILED if errors else EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    """``hub simulate``."""
    from hub.simulator import run_simulator

    loaded = load_or_report(args.config, allow_missing=True)
    if loaded is None:
        return EXIT_FAILED
    if args.devices < 1 or args.rate <= 0:
        print("hub simulate: --devices must be >= 1 and --rate > 0", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(loaded.config.logging.level)
    url = args.broker or loaded.config.mqtt.url or "mqtt://127.0.0.1:1883"
    prefix = args.prefix or loaded.config.hub.device_topic
    print(
        f"simulating {args.devices} devices at {args.rate:g} reports/s on {prefix}/#"
        f" via {_display_db(url)}; Ctrl-C stops"
    )
    try:
        run_simulator(
            url,
            devices=args.devices,
            rate=args.rate,
            prefix=prefix,
            seed=args.seed,
            progress=lambda line: print(line, flush=True),
            mixed=args.dialects == "mixed",
        )
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # a broker that is not there, typically
        print(f"hub simulate: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_devices(args: argparse.Namespace) -> int:
    """``hub devices``: the registry as stored, with the last states."""
    loaded = load_or_report(args.config, allow_missing=True)
    if loaded is None:
        return EXIT_FAILED

    async def fetch() -> list[Any]:
        from hub.storage import Storage

        storage = Storage(loaded.config.database.resolved_url)
        await storage.start()
        try:
            return await storage.device_rows()
        finally:
            await storage.close()

    from hub.storage import StorageError

    try:
        rows = asyncio.run(fetch())
    except StorageError as exc:
        print(f"hub devices: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        out = []
        for device, entities, states in rows:
            item = device.to_dict()
            item["entities"] = [
                {**e.to_dict(), "state": states[e.id].to_dict() if e.id in states else None}
                for e in entities
            ]
            out.append(item)
        print(json.dumps(out, indent=2, default=str))
        return EXIT_OK
    if not rows:
        print("no devices yet: start `hub run` or `hub demo` and let devices announce themselves")
        return EXIT_OK
    for device, entities, states in rows:
        flag = "online " if device.available else "offline"
        print(f"{device.id:<28} {flag} {device.area or '-':<12} {device.name}")
        for entity in entities:
            state = states.get(entity.id)
            value = "-" if state is None else _format_value(state.value, entity.unit)
            print(f"    {entity.key:<20} {entity.kind.value:<14} {value}")
    return EXIT_OK


def _format_value(value: Any, unit: str | None) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    return f"{text} {unit}" if unit else text


def cmd_bench(args: argparse.Namespace) -> int:
    """``hub bench``."""
    from hub.bench import run_bench_command

    return run_bench_command(args)


def cmd_rules(args: argparse.Namespace) -> int:
    """``hub rules ...``."""
    from hub.rules.cli import main as rules_main

    return rules_main(args)


def cmd_why(args: argparse.Namespace) -> int:
    """``hub why ENTITY``."""
    from hub.rules.cli import why

    return why(args)


def cmd_scene(args: argparse.Namespace) -> int:
    """``hub scene ...``."""
    from hub.scenes import cmd_scene as scene_main

    return scene_main(args)


def cmd_ask(args: argparse.Namespace) -> int:
    """``hub ask TEXT --as PERSON``."""
    from hub.conversation.cli import cmd_ask as ask_main

    return ask_main(args)


def cmd_notifications(args: argparse.Namespace) -> int:
    """``hub notifications``."""
    from hub.notify.cli import cmd_notifications as notifications_main

    return notifications_main(args)


COMMANDS = {
    "run": cmd_run,
    "demo": cmd_demo,
    "check": cmd_check,
    "simulate": cmd_simulate,
    "bench": cmd_bench,
    "devices": cmd_devices,
    "rules": cmd_rules,
    "why": cmd_why,
    "scene": cmd_scene,
    "notifications": cmd_notifications,
    "ask": cmd_ask,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hub`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
