"""People in hub.yaml (errors at their positions), parsing without a hub, the catalogs."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from hub.config import load_config
from hub.conversation import IdentityKind, Role
from hub.conversation.i18n import LOCALE_DIR, available_languages, gettext_for
from hub.conversation.names import entity_label
from hub.conversation.parse import BadInput, clean_text, parse
from hub.conversation.people import QuietHours
from hub.model import Device, Entity, EntityKind
from hub.yamlsource import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_people_become_persons_with_identities_limits_and_preferences(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(
        "areas: [{id: garage, name: Garage}]\n"
        "people:\n"
        "  - id: alice\n"
        "    role: admin\n"
        "    discord: 100000000000000001\n"  # a YAML number is fine
        "    phones: '+1 (555) 000-0001'\n"
        "    emails: [Alice@Example.com]\n"
        "    dashboard: Alice\n"
        "    language: de_DE\n"
        "    areas: [garage]\n"
        "    notify: {channels: [sms, email], quiet_hours: '22:00-07:00',"
        " urgent_overrides_quiet: false}\n"
        "  - id: guest_one\n"
    )
    config = load_config(path).config
    alice = config.people[0].to_person()
    assert alice.role is Role.ADMIN
    assert alice.name == "Alice"
    assert alice.address_on(IdentityKind.DISCORD) == "100000000000000001"
    assert alice.address_on(IdentityKind.PHONE) == "+15550000001"
    assert alice.address_on(IdentityKind.EMAIL) == "alice@example.com"
    assert alice.address_on(IdentityKind.DASHBOARD) == "alice"
    assert alice.language == "de"
    assert alice.areas == frozenset({"garage"})
    assert alice.notify_channels == ("sms", "email")
    assert alice.quiet_hours == QuietHours(22 * 60, 7 * 60)
    assert alice.quiet_hours.contains(23 * 60)
    assert not alice.quiet_hours.contains(12 * 60)
    assert alice.urgent_overrides_quiet is False
    guest = config.people[1].to_person()
    assert (guest.role, guest.name, guest.language) == (Role.GUEST, "Guest One", "en")


def test_people_errors_are_reported_at_their_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(
        "areas: [{id: kitchen, name: Kitchen}]\n"  # 1
        "people:\n"  # 2
        "  - id: alice\n"  # 3
        "    role: admin\n"  # 4
        "    phones: ['+15550000001']\n"  # 5
        "  - id: alice\n"  # 6
        "    role: boss\n"  # 7
        "    phones: ['+1 555 000 0001', '12']\n"  # 8
        "    emails: [not-an-address]\n"  # 9
        "    discord: abc\n"  # 10
        "    language: xx\n"  # 11
        "    areas: [kitchn]\n"  # 12
        "    notify: {quiet_hours: '25:00-07:00', channel: [sms]}\n"  # 13
        "    nickname: Al\n"  # 14
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    found = {(i.line, i.path): i.message for i in caught.value.issues}
    assert "duplicate person id 'alice'" in found[(6, "people[1].id")]
    assert "'admin'" in found[(7, "people[1].role")]
    assert "already belongs to people[0]" in found[(8, "people[1].phones[0]")]
    assert "international form" in found[(8, "people[1].phones[1]")]
    assert "e-mail address" in found[(9, "people[1].emails[0]")]
    assert "Discord user id" in found[(10, "people[1].discord")]
    assert "no replies in language 'xx'" in found[(11, "people[1].language")]
    assert "did you mean 'kitchen'" in found[(12, "people[1].areas[0]")]
    assert "quiet hours" in found[(13, "people[1].notify.quiet_hours")]
    assert "did you mean 'channels'" in found[(13, "people[1].notify")]
    assert "unknown key 'nickname'" in found[(14, "people[1]")]
    for issue in caught.value.issues:
        assert issue.col > 0


def test_the_example_household_has_an_admin_and_a_german_speaking_guest() -> None:
    people = {p.id: p for p in load_config(REPO / "hub.yaml").config.people}
    assert set(people) == {"alice", "bob"}
    assert people["alice"].role == "admin"
    assert people["bob"].role == "guest"
    assert people["bob"].language == "de"
    # hub demo talks as them through the stand-ins, which know these addresses.
    assert people["alice"].discord == "100000000000000001"
    assert people["bob"].phones == ("+15550000002",)


@pytest.mark.parametrize(
    ("text", "intent", "slots"),
    [
        ("turn on the kitchen light", "turn_on", {"target": "kitchen light"}),
        ("Switch the kitchen lights OFF!", "turn_off", {"target": "kitchen lights"}),
        ("dim the living room light to 30 %", "set_brightness", {"brightness": 30}),
        ("set the thermostat to 21.5 degrees", "set_temperature", {"temperature": 21.5}),
        ("scene movie", "scene", {"scene": "movie"}),
        ("status", "status", {}),
        ("is the front door locked", "status", {"target": "front door", "state": "locked"}),
        ("why is the hallway light on", "why", {"target": "hallway light"}),
        ("list all scenes", "list", {"what": "scenes"}),
        ("energy this week", "energy", {"period": "week"}),
        ("run a speed test", "speedtest", {}),
        ("disable rule kitchen_off", "rule_disable", {"rule": "kitchen_off"}),
        ("run movie night", "run", {"command": "movie night"}),
        ("Schalte das Küchenlicht an", "turn_on", {"target": "Küchenlicht"}),
        ("schließe die Haustür ab", "lock", {"target": "Haustür"}),
        ("Status der Küche", "status", {"target": "Küche"}),
        ("zeige alle Geräte", "list", {"what": "devices"}),
        ("Energie heute", "energy", {"period": "today"}),
        ("warum ist das Flurlicht an", "why", {"target": "Flurlicht", "state": "on"}),
    ],
)
def test_sentences_in_english_and_german(text: str, intent: str, slots: dict[str, object]) -> None:
    german = any(ch in text for ch in "äöüß") or text.split(maxsplit=1)[0] in ("zeige", "Energie")
    parsed = parse(clean_text(text), "de" if german else "en")
    assert parsed is not None, text
    assert parsed.intent == intent
    for key, value in slots.items():
        assert parsed.slots[key] == value, (text, parsed.slots)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "empty"),
        (" \t\n ", "empty"),
        ("a" * 501, "too_long"),
        ("turn on\x07 the light", "control"),
        ("turn on the \u202elight", "control"),
        ("turn on the\u200blight", "control"),
        ("\udcff", "control"),
    ],
)
def test_bad_text_is_refused_before_parsing(text: str, code: str) -> None:
    with pytest.raises(BadInput) as caught:
        clean_text(text)
    assert caught.value.code == code


def test_every_reply_text_has_a_german_translation() -> None:
    assert "de" in available_languages()
    with (LOCALE_DIR / "de" / "LC_MESSAGES" / "hub.po").open("rb") as handle:
        catalog = read_po(handle, locale="de")
    translated = {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy}
    used = {
        message
        for _file, _line, message, _comments, _context in extract_from_dir(
            REPO / "hub" / "conversation",
            method_map=[("**.py", "python")],
            keywords={"_": None, "N_": None},
        )
    }
    missing = sorted(m for m in used if m not in translated)
    assert not missing, f"no German for: {missing}"
    for message in used:  # placeholders must survive translation
        for part in ("{name}", "{count}", "{total}", "{when}", "{reason}"):
            assert (part in message) == (part in translated[message]), message
    _ = gettext_for("de")
    assert _("Turned on {name}.").format(name="X") == "Eingeschaltet: X."
    assert gettext_for("fr")("Turned on {name}.") == "Turned on {name}."  # unknown: English


@pytest.mark.parametrize(
    ("device_name", "entity_name", "entities", "label"),
    [
        ("Kitchen light", "Light", 1, "Kitchen light"),
        ("Kitchen plug", "Power", 3, "Kitchen plug power"),
        # Firmware profiles name entities after their device already.
        ("Desk plug", "Desk plug energy", 3, "Desk plug energy"),
    ],
)
def test_entities_are_called_as_people_would_call_them(
    device_name: str, entity_name: str, entities: int, label: str
) -> None:
    device = Device("d", device_name, "native", entity_ids=[f"d.e{i}" for i in range(entities)])
    entity = Entity("d.e0", "d", "e0", EntityKind.SENSOR, entity_name)
    assert entity_label(entity, device) == label
