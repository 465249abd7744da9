"""`hub bench --replay`: the hub's own cost per message, without the broker's or the network's.

``hub bench --max`` measures the whole system, and on a small shared machine its figures move
by a third from run to run with what else runs. This replays a scenario's messages straight
into the hub's MQTT dispatcher, in this process, and reports the CPU time the hub spends per
message (handlers, model, mirror, storage), by dialect. It is steady enough to tell whether a
change to a hot path helps, and the dialect table shows which adapter costs what.

The hub runs as in production (its adapters, mirror and storage, connected to a private
broker); only the receiving socket is bypassed. Messages are generated before timing starts.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Messages handed to the dispatcher per loop turn: the socket reader hands over bursts too.
_BATCH = 100


@dataclass(frozen=True, slots=True)
class _Replayed:
    """What the dispatcher reads off a paho message."""

    topic: str
    payload: bytes


def _percent(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


async def _replay(
    scenario: str, devices: int, messages: int, rate: float, progress: Callable[[str], None]
) -> dict[str, Any]:
    from hub.bench import _BASE, _PREFIX, HOME_SEED, BenchHome, adapters_config
    from hub.broker import make_embedded_broker
    from hub.config import load_config
    from hub.core import Hub

    workdir = Path(tempfile.mkdtemp(prefix="hub-replay-"))
    broker = make_embedded_broker()
    await broker.start()
    protocol = "5" if broker.supports_mqtt5 else "3.1.1"
    home = BenchHome(broker.port, protocol, devices, mixed=scenario == "firmware")
    hub: Hub | None = None
    try:
        text = (
            f"hub:\n  base_topic: {_BASE}\n  device_topic: {_PREFIX}\n"
            f"mqtt:\n  url: {broker.url}\n  client_id: hub-replay\n"
            f"database:\n  url: sqlite+aiosqlite:///{workdir / 'replay.db'}\n"
            "logging:\n  level: warning\n"
        )
        if scenario == "firmware":
            text += adapters_config(home)
        config = workdir / "hub.yaml"
        config.write_text(text)
        loaded = load_config(config)
        hub = Hub(loaded.config, config_path=loaded.path, source=loaded.source)
        await hub.start()
        await asyncio.to_thread(home.connect)
        progress(f"registering {devices} devices ...")
        deadline = time.monotonic() + 60
        while len(hub.registry.devices) < devices:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the hub registered {len(hub.registry.devices)} of {devices} devices"
                )
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # replies to the hub's first queries (Tasmota's STATUS)

        # Pre-generated, round-robin over the devices as the paced load does, on a clock that
        # moves at ``rate``: devices' readings drift (and repeat) as they would at that rate.
        rng = random.Random(HOME_SEED)
        plans = [(d, home.dialect_of[d.id].report) for d in home.load_devices]
        generated: list[tuple[str, _Replayed]] = []
        clock_start = time.time()
        for number in range(messages):
            device, report = plans[number % len(plans)]
            simulated = clock_start + number / rate
            msg, _carried = report(device, device.next_report(simulated, rng))
            generated.append((device.dialect, _Replayed(msg.topic, msg.payload)))

        assert hub.mqtt is not None
        dispatch = hub.mqtt._on_message
        errors_before = hub.mqtt.stats.handler_errors
        rejected_before = hub.stats.rejected
        reports_before, changes_before = hub.stats.reports, hub.stats.state_changes
        by_dialect: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        progress(f"replaying {messages} messages ...")
        clock = time.process_time
        wall_start = time.perf_counter()
        cpu_start = clock()
        handler_cpu = 0.0
        for start in range(0, messages, _BATCH):
            for dialect, message in generated[start : start + _BATCH]:
                before = clock()
                dispatch(None, None, message)
                spent = clock() - before
                handler_cpu += spent
                tally = by_dialect[dialect]
                tally[0] += 1
                tally[1] += spent
            # Let the loop run what the batch queued: mirror publishes, storage flushes.
            await asyncio.sleep(0)
        if hub.storage is not None:
            await hub.storage.flush()  # what the messages wrote counts too
        cpu = clock() - cpu_start
        wall = time.perf_counter() - wall_start
        errors = hub.mqtt.stats.handler_errors - errors_before
        rejected = hub.stats.rejected - rejected_before
        if errors or rejected:
            raise RuntimeError(
                f"the replay was not clean: {errors} handler error(s), {rejected} rejected"
            )
        return {
            "scenario": scenario,
            "devices": devices,
            "messages": messages,
            "rate": rate,
            # The whole process: handlers plus the loop's mirror, storage and socket work.
            "cpu_us_per_msg": round(cpu / messages * 1e6, 1),
            "handler_cpu_us_per_msg": round(handler_cpu / messages * 1e6, 1),
            "wall_msgs_per_s": round(messages / wall),
            # Entity reports the messages made, and how many of them changed a state.
            "reports": hub.stats.reports - reports_before,
            "state_changes": hub.stats.state_changes - changes_before,
            "by_dialect": {
                name: {
                    "messages": int(count),
                    "share_pct": _percent(count, messages),
                    "handler_cpu_us_per_msg": round(spent / count * 1e6, 1),
                }
                for name, (count, spent) in sorted(by_dialect.items())
            },
        }
    finally:
        if hub is not None:
            await hub.stop()
        await asyncio.to_thread(home.close)
        await broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run_replay(
    *,
    scenario: str,
    devices: int,
    messages: int,
    rate: float,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Replay ``messages`` of ``scenario``'s load, generated as if sent at ``rate`` msgs/s,
    through an in-process hub; the report."""
    return asyncio.run(_replay(scenario, devices, messages, rate, progress))


def format_replay(report: dict[str, Any]) -> str:
    """The report as a small table."""
    lines = [
        f"scenario          {report['scenario']}",
        f"devices           {report['devices']}",
        f"messages          {report['messages']} (generated as at {report['rate']:g} msgs/s)",
        f"CPU per message   {report['cpu_us_per_msg']:.1f} us"
        f" (handlers {report['handler_cpu_us_per_msg']:.1f} us)",
        f"in-process rate   {report['wall_msgs_per_s']:,} msgs/s",
        f"entity reports    {report['reports']:,} ({report['state_changes']:,} changes)",
        "handler CPU by dialect:",
    ]
    for name, row in report["by_dialect"].items():
        lines.append(
            f"  {name:<14}  {row['handler_cpu_us_per_msg']:>7.1f} us"
            f"  ({row['messages']} msgs, {row['share_pct']:g} %)"
        )
    return "\n".join(lines)
