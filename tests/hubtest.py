"""Helpers for the core suites: test configs and polling the running hub."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hub.core import Hub

REPO = Path(__file__).resolve().parents[1]


def hub_cli(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m hub ARGS`` from this checkout, as a user would; its output as text."""
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=timeout,
        check=False,
    )


HubFactory = Callable[..., Awaitable[Hub]]


def write_config(
    tmp_path: Path,
    mqtt_url: str | None,
    extra: str = "",
    *,
    name: str = "hub.yaml",
    db: str = "hub.db",
    base: str | None = None,
    devices: str | None = None,
) -> Path:
    """Write a hub.yaml for a test: private base topics so tests never see each other."""
    suffix = uuid.uuid4().hex[:8]
    base = base or f"t{suffix}/hub"
    devices = devices or f"t{suffix}/home"
    url_line = f"  url: {mqtt_url}\n" if mqtt_url else ""
    path = tmp_path / name
    path.write_text(
        "hub:\n"
        f"  base_topic: {base}\n"
        f"  device_topic: {devices}\n"
        "  command_timeout: 3s\n"
        "mqtt:\n"
        f"{url_line}"
        f"  client_id: hub-test-{suffix}\n"
        "database:\n"
        f"  url: sqlite+aiosqlite:///{tmp_path / db}\n"
        "  flush_interval: 0.2s\n"
        f"{extra}"
    )
    return path


async def eventually(check: Callable[[], Any], timeout: float = 5.0, message: str = "") -> Any:
    """Await until ``check()`` is truthy (polling the loop, so the hub keeps running)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(message or f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)
