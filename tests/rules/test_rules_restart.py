"""Pending `for:` timers, delays, waits and schedules survive a hub restart (real SQLite)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruleharness import Harness, write_rules

from hub.events import StateChanged
from hub.model import Registry
from hub.rules.loader import load_rules
from hub.rules.sandbox import sandbox_hub
from hub.storage import Storage
from hub.storage.rules import RuleStore

RULES = """
- id: unlocked_too_long
  catch_up: {catch_up}
  triggers:
    - state: door.lock
      to: unlocked
      for: 10m
  actions:
    - notify: "locking after {{{{ trigger.for }}}} s"
- id: delayed_off
  catch_up: {catch_up}
  triggers: [{{command: go}}]
  actions:
    - notify: before
    - delay: 10m
    - notify: "after {{{{ level }}}}"
  variables: {{level: 7}}
- id: waits
  catch_up: {catch_up}
  triggers: [{{command: wait}}]
  actions:
    - wait: {{state: door.contact, to: "on"}}
      timeout: 10m
    - notify: "waited {{{{ wait.timed_out }}}}"
- id: nightly
  catch_up: {catch_up}
  triggers: [{{time: "12:05"}}]
  actions: [{{notify: nightly}}]
"""


class Life:
    """One hub lifetime: storage, a harness on it, with the clock at a given time."""

    def __init__(self, tmp_path: Path, start: str, catch_up: bool) -> None:
        self.tmp_path = tmp_path
        self.start_at = start
        self.catch_up = catch_up

    async def __aenter__(self) -> Harness:
        self.storage = Storage(
            f"sqlite+aiosqlite:///{self.tmp_path / 'hub.db'}", flush_interval=3600
        )
        await self.storage.start()
        self.store = RuleStore(self.storage)
        folder = write_rules(
            self.tmp_path / "rules", RULES.format(catch_up="true" if self.catch_up else "false")
        )
        registry = Registry()
        await self.storage.load_into(registry)
        hub = sandbox_hub(registry)
        for entity_id, state in registry.states.items():
            hub.registry.states[entity_id] = state
        hub.storage = self.storage
        # As in a running hub: every state is queued for storage, so it survives the restart.
        hub.bus.subscribe(StateChanged, lambda e: self.storage.queue_state(e.new), owner="test")
        self.harness = Harness(load_rules([folder]), start=self.start_at, store=self.store, hub=hub)
        return self.harness

    async def __aexit__(self, *exc: Any) -> None:
        await self.harness.stop()
        await self.storage.close()  # the final flush writes the pending timers


async def _before_shutdown(h: Harness) -> None:
    await h.start()
    await h.set("door.lock", "locked")
    await h.set("door.contact", "off")
    await h.set("door.lock", "unlocked")  # for: 10m starts at 12:00
    await h.command("go")  # delay 10m starts at 12:00
    await h.command("wait")  # wait 10m starts at 12:00
    await h.advance(60)
    assert h.notifications == ["before"]


async def test_timers_fire_at_their_time_after_a_restart(tmp_path: Path) -> None:
    async with Life(tmp_path, "2026-01-05T12:00:00", catch_up=True) as h:
        await _before_shutdown(h)
    # The hub is down from 12:01 to 12:03, then everything fires at 12:10 as it would have.
    async with Life(tmp_path, "2026-01-05T12:03:00", catch_up=True) as h:
        await h.start()
        await h.advance(60)  # 12:04
        assert h.notifications == []
        await h.advance(60)  # 12:05: the schedule fires normally
        assert h.notifications == ["nightly"]
        await h.advance(5 * 60 - 1)  # 12:09:59
        assert h.notifications == ["nightly"]
        await h.advance(2)
        assert sorted(h.notifications) == sorted(
            ["nightly", "locking after 600.0 s", "after 7", "waited True"]
        )
        resumed = [t for t in h.traces("delayed_off") if t["outcome"] == "ok"]
        assert resumed[0]["resumed_at"] == "actions[1]"


async def test_timers_due_while_down_fire_at_start_with_catch_up(tmp_path: Path) -> None:
    async with Life(tmp_path, "2026-01-05T12:00:00", catch_up=True) as h:
        await _before_shutdown(h)
    async with Life(tmp_path, "2026-01-05T12:30:00", catch_up=True) as h:
        await h.start()
        await h.idle()
        assert sorted(h.notifications) == sorted(
            ["locking after 600.0 s", "after 7", "waited True", "nightly"]
        )


async def test_timers_due_while_down_are_skipped_without_catch_up(tmp_path: Path) -> None:
    async with Life(tmp_path, "2026-01-05T12:00:00", catch_up=False) as h:
        await _before_shutdown(h)
    async with Life(tmp_path, "2026-01-05T12:30:00", catch_up=False) as h:
        await h.start()
        await h.advance(3600)
        assert h.notifications == []
        skipped = [t for t in h.traces("delayed_off") if t["outcome"] == "skipped"]
        assert "was due while the hub was down" in skipped[0]["error"]


async def test_a_wait_resumed_after_restart_still_sees_its_trigger(tmp_path: Path) -> None:
    async with Life(tmp_path, "2026-01-05T12:00:00", catch_up=True) as h:
        await _before_shutdown(h)
    async with Life(tmp_path, "2026-01-05T12:03:00", catch_up=True) as h:
        await h.start()
        await h.set("door.contact", "on")
        assert "waited False" in h.notifications


async def test_traces_are_stored_and_read_back_newest_first(tmp_path: Path) -> None:
    async with Life(tmp_path, "2026-01-05T12:00:00", catch_up=True) as h:
        await h.start()
        for _ in range(3):
            await h.command("go")
            await h.advance(601)
    storage = Storage(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}")
    await storage.start()
    store = RuleStore(storage)
    try:
        traces = await store.traces("delayed_off")
    finally:
        store.detach()
        await storage.close()
    assert [t.outcome for t in traces] == ["ok", "ok", "ok"]
    assert traces[0].started > traces[-1].started
    steps = traces[0].trace["steps"]
    assert [s["type"] for s in steps] == ["notify", "delay", "notify"]
    assert steps[1]["result"] == {"seconds": 600.0}
