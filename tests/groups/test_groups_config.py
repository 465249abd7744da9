"""hub.yaml's `devices:` customisation and group members: errors at their line and column."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hub.config import load_config
from hub.model import EntityKind
from hub.yamlsource import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hub.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(issue) for issue in caught.value.issues]


def test_customisation_and_tag_members_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        areas:
          - {id: garden, name: Garden}
        devices:
          porch_light: {name: Porch, area: garden, tags: [outdoor, christmas]}
          "0x000b57fffec6a5b2":
            tags: outdoor
            entities:
              light: {name: Tree, tags: [christmas]}
        groups:
          - {id: outdoor, name: Outdoor, members: [tag:outdoor, area:garden], kind: light}
        """,
    )
    loaded = load_config(path)
    config = loaded.config
    assert loaded.warnings == ()
    porch = config.devices["porch_light"]
    assert (porch.name, porch.area, porch.tags) == ("Porch", "garden", ("outdoor", "christmas"))
    bulb = config.devices["0x000b57fffec6a5b2"]
    assert bulb.tags == ("outdoor",)  # one tag may be written without a list
    assert bulb.entities["light"].tags == ("christmas",)
    assert config.groups[0].kind is EntityKind.LIGHT
    assert config.groups[0].members == ("tag:outdoor", "area:garden")


def test_customisation_errors_point_at_the_line_with_suggestions(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        areas:
          - {id: garden, name: Garden}
        devices:
          porch_light:
            nmae: Porch
            area: gardn
            tags: [Outdoor Lights]
          Bad Device: {name: x}
          plug:
            entities:
              switch: {tgas: [x]}
              Power: {name: y}
        groups:
          - id: lights
            name: Lights
            members: [tag:Christmas, tags:outdoor]
            kind: lights
        """,
    )
    assert errors_of(path) == [
        f"{path}:5:5: devices.porch_light: unknown key 'nmae' (did you mean 'name'?)",
        f"{path}:6:11: devices.porch_light.area: unknown area 'gardn' (did you mean 'garden'?)",
        f"{path}:7:12: devices.porch_light.tags[0]: invalid tag 'Outdoor Lights': use 1-64 "
        "lowercase letters, digits, '_' or '-'",
        f"{path}:8:3: devices['Bad Device']: invalid device id 'Bad Device': use 1-64 lowercase "
        "letters, digits, '_' or '-'",
        f"{path}:11:16: devices.plug.entities.switch: unknown key 'tgas' (did you mean 'tags'?)",
        f"{path}:12:7: devices.plug.entities.Power: invalid entity key 'Power': use 1-64 "
        "lowercase letters, digits, '_' or '-'",
        f"{path}:16:15: groups[0].members[0]: invalid tag 'Christmas': use 1-64 lowercase "
        "letters, digits, '_' or '-'",
        f"{path}:16:30: groups[0].members[1]: unknown member kind 'tags' in 'tags:outdoor': use "
        "entity:, device:, group:, area: or tag: (did you mean 'tag'?)",
        f"{path}:17:11: groups[0].kind: expected one of 'switch', 'light', 'sensor', "
        "'binary_sensor', 'cover', 'climate', 'lock', 'energy_meter', 'button', 'number', "
        "'select', got 'lights' "
        "(did you mean 'light'?)",
    ]


def test_a_tag_nobody_gives_is_a_warning_with_a_suggestion(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        devices:
          porch_light: {tags: [christmas]}
        groups:
          - {id: xmas, name: Christmas, members: [tag:chrismas]}
        """,
    )
    loaded = load_config(path)
    assert [str(w) for w in loaded.warnings] == [
        f"{path}:4:43: groups[0].members[0]: warning: no device or entity is tagged 'chrismas' "
        "(did you mean 'christmas'?)"
    ]
