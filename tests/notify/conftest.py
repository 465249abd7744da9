"""Fixtures for the notification suites: a started hub and a recording channel plug-in.

The recording channel is a real front-end plug-in, installed through an entry point the way a
package would be, that registers channels with ``PluginContext.register_channel`` and keeps
what it was asked to deliver.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

import hub.plugins

RECORDER_MODULE = '''
"""A recording notification channel (tests only)."""
from pydantic import BaseModel

from hub.api import Plugin
from hub.notify import Delivery, DeliveryResult

DELIVERED: list[Delivery] = []
ATTEMPTS: list[str] = []


class Settings(BaseModel):
    model_config = {"extra": "forbid"}
    channels: list[str] = ["email", "sms"]
    fail_first: int = 0  # refuse this many deliveries before accepting any
    raise_first: int = 0  # raise this many times (a channel breaking its promise)


class Recorder(Plugin):
    settings_model = Settings

    async def start(self):
        self.refusals = self.settings.fail_first
        self.raises = self.settings.raise_first
        for name in self.settings.channels:
            self.context.register_channel(name, Channel(name, self))


class Channel:
    def __init__(self, name, plugin):
        self.name = name
        self.plugin = plugin

    async def deliver(self, delivery):
        ATTEMPTS.append(delivery.id)
        if self.plugin.raises > 0:
            self.plugin.raises -= 1
            raise ConnectionError("the service hung up")
        if self.plugin.refusals > 0:
            self.plugin.refusals -= 1
            return DeliveryResult(False, "the service said no")
        DELIVERED.append(delivery)
        return DeliveryResult(True, "sent", external_id="ext-" + delivery.id)
'''


@pytest.fixture
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Install the recording front-end (``frontends: {recorder: ...}``); return its module."""
    site = tmp_path / "site"
    dist = site / "hubtest_recorder-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hubtest-recorder\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """
            [hub.frontends]
            recorder = hubtest_recorder:Recorder
            """
        )
    )
    (site / "hubtest_recorder.py").write_text(RECORDER_MODULE)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(hub.plugins, "INITIAL_BACKOFF", 0.05)
    sys.modules.pop("hubtest_recorder", None)
    import hubtest_recorder  # type: ignore[import-not-found]

    return hubtest_recorder  # type: ignore[no-any-return]
