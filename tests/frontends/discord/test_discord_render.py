"""The Discord front-end without a network: embeds, buttons, settings, mentions, locales."""

from __future__ import annotations

from pathlib import Path

import pytest

from frontends.discord.bot import HubButton, language_of, strip_mentions
from frontends.discord.render import (
    BUTTONS_MAX,
    CUSTOM_ID_MAX,
    DESCRIPTION_MAX,
    EMBED_TOTAL_MAX,
    FIELD_VALUE_MAX,
    ButtonCommands,
    delivery_embed,
    embed_text,
    reply_actions,
    reply_embed,
    reply_view,
    thread_name,
)
from frontends.discord.settings import Settings
from hub.config import validate_model
from hub.conversation import Reply, ReplyAction, ReplyField, ReplyStatus, Role
from hub.notify import Delivery
from hub.yamlsource import load_yaml


def test_a_reply_becomes_an_embed_coloured_by_its_status() -> None:
    reply = Reply(
        ReplyStatus.DONE,
        "Kitchen light is on.",
        title="Kitchen light",
        fields=(ReplyField("Brightness", "50 %"), ReplyField("Area", "Kitchen", inline=False)),
    )
    embed = reply_embed(reply)
    assert embed.title == "Kitchen light"
    assert embed.description == "Kitchen light is on."
    assert [(f.name, f.value, f.inline) for f in embed.fields] == [
        ("Brightness", "50 %", True),
        ("Area", "Kitchen", False),
    ]
    refused = reply_embed(Reply(ReplyStatus.REFUSED, "You are not allowed to do that."))
    assert refused.colour != embed.colour
    assert refused.title is None  # no empty title for Discord to refuse


def test_long_answers_are_cut_to_discords_limits() -> None:
    reply = Reply(
        ReplyStatus.ANSWER,
        "x" * 10_000,
        title="t" * 1000,
        fields=tuple(ReplyField(f"f{i}", "v" * 5000) for i in range(40)),
    )
    embed = reply_embed(reply)
    assert len(embed.description or "") == DESCRIPTION_MAX
    assert (embed.description or "").endswith("…")
    assert len(embed.title or "") == 256
    assert all(len(f.value or "") <= FIELD_VALUE_MAX for f in embed.fields)
    assert len(embed) <= EMBED_TOTAL_MAX  # discord.py's own count of what Discord limits
    # Empty field parts would be refused by Discord: they become a zero-width space.
    empty = reply_embed(Reply(ReplyStatus.ANSWER, "ok", fields=(ReplyField("", ""),)))
    assert empty.fields[0].name == "\u200b"


def test_choices_and_actions_become_buttons_carrying_their_command() -> None:
    commands = ButtonCommands()
    reply = Reply(
        ReplyStatus.ASK,
        "Which light?",
        choices=(
            ReplyAction("Kitchen light", "turn on kitchen_light.light"),
            ReplyAction("Hall light", "turn on hallway_light.light", "primary"),
        ),
        actions=(ReplyAction("Movie", "scene movie", "success"),),
    )
    view = reply_view(reply_actions(reply), commands)
    assert view is not None
    items = view.children
    assert [getattr(i, "label", None) for i in items] == ["Kitchen light", "Hall light", "Movie"]
    ids = [getattr(i, "custom_id", "") for i in items]
    assert ids == [
        "hub:turn on kitchen_light.light",
        "hub:turn on hallway_light.light",
        "hub:scene movie",
    ]
    # The ids are what HubButton's template matches, so a press finds its command again.
    match = HubButton.__discord_ui_compiled_template__.fullmatch(ids[2])
    assert match is not None
    assert commands.command(match["kind"], match["value"]) == "scene movie"
    assert reply_view((), commands) is None


def test_a_long_command_travels_by_reference_and_buttons_are_capped() -> None:
    commands = ButtonCommands(limit=3)
    long = "run " + "y" * 200
    custom_id = commands.custom_id(long)
    assert len(custom_id) <= CUSTOM_ID_MAX
    match = HubButton.__discord_ui_compiled_template__.fullmatch(custom_id)
    assert match is not None
    assert commands.command(match["kind"], match["value"]) == long
    for n in range(3):
        commands.custom_id(f"run {'z' * 120}{n}")
    # The oldest reference is forgotten (bounded); its button then says it has expired.
    assert commands.command(match["kind"], match["value"]) is None
    many = [ReplyAction(f"b{i}", f"scene s{i}") for i in range(40)]
    view = reply_view([*many, ReplyAction("dup", "scene s0")], ButtonCommands())
    assert view is not None
    assert len(view.children) == BUTTONS_MAX


def test_alert_embeds_and_thread_names() -> None:
    delivery = Delivery(
        id="1", channel="discord", address="alerts", title="Freezer\nwarm", text="-8 °C", key="f"
    )
    assert thread_name(delivery) == "Freezer warm"
    assert "-8 °C" in embed_text(delivery_embed(delivery))
    untitled = Delivery(id="2", channel="discord", address="alerts", title="", text="t", key="k")
    assert thread_name(untitled) == "k"
    urgent = Delivery(id="3", channel="discord", address="a", title="x", text="y", urgent=True)
    resolved = Delivery(id="4", channel="discord", address="a", title="x", text="y", resolved=True)
    assert delivery_embed(urgent).colour != delivery_embed(resolved).colour


def test_mentions_of_the_bot_are_stripped_and_others_kept() -> None:
    assert strip_mentions("<@42> turn on the light", 42) == "turn on the light"
    assert strip_mentions("<@!42> hi <@7>", 42) == "hi <@7>"
    assert language_of("pt-BR") == "pt"
    assert language_of("de") == "de"
    assert language_of(None) is None


def _settings(tmp_path: Path, text: str) -> tuple[Settings | None, list[str]]:
    path = tmp_path / "hub.yaml"
    path.write_text(text)
    source = load_yaml(path)
    settings, issues = validate_model(
        Settings, source.data["frontends"]["discord"], source, ("frontends", "discord")
    )
    return settings, [f"{i.line}:{i.col}: {i.path}: {i.message}" for i in issues]


def test_settings_accept_ids_as_numbers_or_text(tmp_path: Path) -> None:
    settings, issues = _settings(
        tmp_path,
        "frontends:\n"
        "  discord:\n"
        "    token: abc.def\n"
        "    guild_ids: [123456789012345678, '223456789012345678']\n"
        "    channels: {alerts: '323456789012345678'}\n"
        "    roles: {Family: member, '423456789012345678': guest}\n"
        "    shard_count: 0\n",
    )
    assert issues == []
    assert settings is not None
    assert settings.guild_ids == (123456789012345678, 223456789012345678)
    assert settings.channels == {"alerts": 323456789012345678}
    assert settings.roles == {"Family": Role.MEMBER, "423456789012345678": Role.GUEST}
    assert settings.api_base == "https://discord.com/api/v10"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("    guild_ids: [home]\n", "expected a Discord id"),
        ("    channels: {Alerts Channel: 1}\n", "channel name 'Alerts Channel'"),
        ("    roles: {Family: owner}\n", "roles.Family"),
        ("    shard_count: -1\n", "shard_count"),
        ("    api_base: ftp://x\n", "api_base must be an http(s) URL"),
        ("    tokn: x\n", "tokn"),
    ],
)
def test_bad_settings_say_where_and_why(tmp_path: Path, line: str, expected: str) -> None:
    settings, issues = _settings(tmp_path, "frontends:\n  discord:\n    token: abc\n" + line)
    assert settings is None
    assert any(expected in issue for issue in issues), issues
    assert all(issue.split(":")[0] == "4" for issue in issues), issues  # the line it is on
