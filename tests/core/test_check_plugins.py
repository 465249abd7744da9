"""The plug-in check hook: `hub check` asks each enabled plug-in with valid settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

import hub.plugins
from hub.api import CheckContext, ConfigIssue, Plugin
from hub.config import load_config


class _Settings(BaseModel):
    table: str = "table.csv"


class _ChecksItsFile(Plugin):
    """Says where its settings' file is missing, as a real plug-in's hook would."""

    settings_model = _Settings
    seen: ClassVar[list[tuple[Any, CheckContext]]] = []

    @classmethod
    def check(cls, settings: Any, where: CheckContext) -> list[ConfigIssue]:
        cls.seen.append((settings, where))
        if (where.config_dir / settings.table).is_file():
            return []
        return [where.issue(("table",), f"{settings.table} does not exist")]


class _Crashes(Plugin):
    @classmethod
    def check(cls, settings: Any, where: CheckContext) -> list[ConfigIssue]:
        raise RuntimeError("bug in the hook")


class _NoHook(Plugin):
    """Has no check of its own: the default finds nothing."""


PLUGINS: dict[str, type[Plugin]] = {"files": _ChecksItsFile, "crashy": _Crashes, "plain": _NoHook}


@pytest.fixture(autouse=True)
def _installed(monkeypatch: pytest.MonkeyPatch) -> None:
    # These test plug-ins are not installed packages: stand in for the entry-point lookup only.
    monkeypatch.setattr(hub.plugins, "load_plugin_class", lambda _kind, name: PLUGINS[name])
    _ChecksItsFile.seen.clear()


def _check(tmp_path: Path, text: str) -> list[ConfigIssue]:
    path = tmp_path / "hub.yaml"
    path.write_text(text)
    loaded = load_config(path)
    return hub.plugins.check_plugins(loaded.config, loaded.source)


def test_the_hook_places_its_issue_at_the_setting_in_hub_yaml(tmp_path: Path) -> None:
    issues = _check(tmp_path, "adapters:\n  plain: {}\n  files:\n    table: rates.csv\n")
    assert [str(i) for i in issues] == [
        f"{tmp_path / 'hub.yaml'}:4:5: adapters.files.table: rates.csv does not exist"
    ]
    (settings, where) = _ChecksItsFile.seen[0]
    assert isinstance(settings, _Settings)  # validated settings, not the raw mapping
    assert where.config_dir == tmp_path

    (tmp_path / "rates.csv").write_text("peak,0.3\n")
    assert _check(tmp_path, "adapters:\n  files:\n    table: rates.csv\n") == []


def test_invalid_settings_or_a_disabled_plugin_skip_the_hook(tmp_path: Path) -> None:
    issues = _check(tmp_path, "adapters:\n  files:\n    table: [1]\n")
    assert len(issues) == 1
    assert "adapters.files.table" in issues[0].path
    _check(tmp_path, "adapters:\n  files:\n    enabled: false\n")
    assert _ChecksItsFile.seen == []


def test_a_crashing_hook_is_an_error_and_does_not_hide_the_others(tmp_path: Path) -> None:
    issues = _check(tmp_path, "adapters:\n  crashy: {}\n  files:\n    table: nope.csv\n")
    messages = [(i.path, i.message) for i in issues]
    assert (
        "adapters.crashy",
        "adapter 'crashy': its check failed: RuntimeError: bug in the hook",
    ) in messages
    assert ("adapters.files.table", "nope.csv does not exist") in messages
    assert all(i.severity == "error" for i in issues)
