"""hub.yaml loading: all errors at once at their exact line and column, defaults, plug-ins."""

import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from hub.config import (
    HubConfig,
    LoadedConfig,
    load_config,
    resolve_sqlite_url,
    validate_model,
)
from hub.durations import Duration
from hub.model import Aggregate
from hub.secrets import redact
from hub.yamlsource import ConfigError, load_yaml

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "hub.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(issue) for issue in caught.value.issues]


def test_every_error_is_reported_at_once_with_its_position(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        hub:
          name: Home
          base_topic: hub/#
          command_timeout: abc
          location:
            longitude: 4.9
        mqtt:
          url: http://broker
          keepalive: 2
          protocl: 5
        logging:
          level: verbose
        areas:
          - id: kitchen
            name: Kitchen
        groups:
          - id: lights
            name: Lights
            members: [area:kitchn]
            aggregate: avg
        """,
    )
    assert errors_of(path) == [
        f"{path}:3:15: hub.base_topic: topic 'hub/#' must not contain the wildcards '+' or '#'",
        f"{path}:4:20: hub.command_timeout: expected a number of seconds or a duration "
        "like '5s', got 'abc'",
        f"{path}:5:3: hub.location: missing required key 'latitude'",
        f"{path}:8:8: mqtt.url: the broker URL must start with mqtt:// or mqtts://, "
        "got 'http://broker'",
        f"{path}:9:14: mqtt.keepalive: must be at least 5, got 2",
        f"{path}:10:3: mqtt: unknown key 'protocl' (did you mean 'protocol'?)",
        f"{path}:12:10: logging.level: expected one of 'debug', 'info', 'warning', 'error', "
        "got 'verbose'",
        f"{path}:19:15: groups[0].members[0]: unknown area 'kitchn' (did you mean 'kitchen'?)",
        f"{path}:20:16: groups[0].aggregate: expected one of 'any', 'all', 'average', 'sum', "
        "'min', 'max', got 'avg' (did you mean 'average'?)",
    ]


def test_unknown_top_level_key_gets_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "hub:\n  name: x\nfrontend:\n  discord: {}\n")
    assert errors_of(path) == [
        f"{path}:3:1: <root>: unknown key 'frontend' (did you mean 'frontends'?)"
    ]


def test_duplicate_key_and_schema_errors_come_together(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        mqtt:
          keepalive: 30
          keepalive: 60
        database:
          flush_interval: -1
        """,
    )
    assert errors_of(path) == [
        f"{path}:3:3: mqtt.keepalive: duplicate key 'keepalive' (first given on line 2)",
        f"{path}:5:19: database.flush_interval: a duration cannot be negative, got -1",
    ]


def test_yaml_syntax_error_position(tmp_path: Path) -> None:
    path = write(tmp_path, 'hub:\n  name: "Home\nmqtt:\n  keepalive: 30\n')
    (issue,) = errors_of(path)
    assert issue.startswith(f"{path}:5:1: <root>: YAML syntax:")
    assert "unexpected end of stream" in issue


def test_missing_file_is_one_issue_at_line_one(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "hub.yaml"
    assert errors_of(path) == [f"{path}:1:1: <root>: file not found"]


def test_empty_file_and_empty_sections_load_with_defaults(tmp_path: Path) -> None:
    for text in ("", "# nothing yet\n", "hub:\nmqtt:\nadapters:\nareas:\n"):
        loaded = load_config(write(tmp_path, text))
        config = loaded.config
        assert config.hub.name == "Home"
        assert config.hub.base_topic == "hub"
        assert config.hub.device_topic == "home"
        assert config.hub.command_timeout == 5.0
        assert config.mqtt.url is None
        assert config.mqtt.embedded
        assert config.mqtt.session_expiry == 3600.0
        assert config.database.url == "sqlite+aiosqlite:///hub.db"
        assert config.logging.level == "info"
        assert config.areas == ()
        assert config.adapters == {}


def test_a_list_at_the_top_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "- hub\n- mqtt\n")
    assert errors_of(path) == [
        f"{path}:1:1: <root>: the configuration must be a mapping of sections "
        "(hub:, mqtt:, ...), got a list"
    ]


def test_relative_sqlite_path_is_resolved_beside_the_config(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    loaded = load_config(write(folder, "database:\n  url: sqlite+aiosqlite:///data/hub.db\n"))
    assert loaded.config.database.url == "sqlite+aiosqlite:///data/hub.db"
    assert loaded.config.database.resolved_url == f"sqlite+aiosqlite:///{folder}/data/hub.db"
    assert loaded.path == folder / "hub.yaml"


@pytest.mark.parametrize(
    ("url", "resolved"),
    [
        ("sqlite:///hub.db", "sqlite:////base/hub.db"),
        ("sqlite+aiosqlite:////var/lib/hub.db", "sqlite+aiosqlite:////var/lib/hub.db"),
        ("sqlite:///hub.db?timeout=5", "sqlite:////base/hub.db?timeout=5"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql+asyncpg://hub@db/hub", "postgresql+asyncpg://hub@db/hub"),
    ],
)
def test_resolve_sqlite_url(url: str, resolved: str) -> None:
    assert resolve_sqlite_url(url, Path("/base")) == resolved


def test_secrets_file_beside_the_config_and_missing_secret(tmp_path: Path) -> None:
    (tmp_path / "secrets.yaml").write_text("mqtt_password: very-secret-1\n")
    good = write(tmp_path, "mqtt:\n  username: hub\n  password: !secret mqtt_password\n")
    loaded = load_config(good)
    assert loaded.secrets_path == tmp_path / "secrets.yaml"
    assert loaded.config.mqtt.password == "very-secret-1"
    assert loaded.config.mqtt.login == ("hub", "very-secret-1")
    assert redact("pw=very-secret-1") == "pw=***"

    bad = write(tmp_path, "mqtt:\n  password: !secret mqtt_pass\n", "bad.yaml")
    assert errors_of(bad) == [
        f"{bad}:2:13: mqtt.password: secret 'mqtt_pass' not found in "
        f"{tmp_path / 'secrets.yaml'} (did you mean 'mqtt_password'?)"
    ]


def test_explicit_secrets_file(tmp_path: Path) -> None:
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "s.yaml").write_text("client: hub-client-7\n")
    path = write(tmp_path, "mqtt:\n  client_id: !secret client\nsecrets_file: private/s.yaml\n")
    loaded = load_config(path)
    assert loaded.config.mqtt.client_id == "hub-client-7"
    assert loaded.secrets_path == tmp_path / "private" / "s.yaml"
    missing = write(tmp_path, "secrets_file: nope.yaml\n", "other.yaml")
    assert errors_of(missing) == [
        f"{missing}:1:15: secrets_file: secrets file not found: {tmp_path / 'nope.yaml'}"
    ]


def test_a_secret_value_is_never_printed_in_an_error(tmp_path: Path) -> None:
    (tmp_path / "secrets.yaml").write_text("keepalive: not-a-number-xyz\n")
    path = write(tmp_path, "mqtt:\n  keepalive: !secret keepalive\n")
    assert errors_of(path) == [
        f"{path}:2:14: mqtt.keepalive: expected a whole number, got the value of secret 'keepalive'"
    ]


def test_env_default_and_unset_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_TEST_KEEPALIVE", raising=False)
    path = write(tmp_path, "mqtt:\n  keepalive: !env HUB_TEST_KEEPALIVE:45\n")
    assert load_config(path).config.mqtt.keepalive == 45
    monkeypatch.setenv("HUB_TEST_KEEPALIVE", "90")
    assert load_config(path).config.mqtt.keepalive == 90

    monkeypatch.delenv("HUB_TEST_CLIENT", raising=False)
    bad = write(tmp_path, "mqtt:\n  client_id: !env HUB_TEST_CLIENT\n", "bad.yaml")
    (issue,) = errors_of(bad)  # one issue: no second "expected text" for the same value
    assert issue.startswith(
        f"{bad}:2:14: mqtt.client_id: environment variable 'HUB_TEST_CLIENT' is not set"
    )


def test_duplicate_ids_and_bad_members(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        areas:
          - id: kitchen
            name: Kitchen
          - id: kitchen
            name: Kitchen again
          - id: Garage
            name: Garage
        groups:
          - id: lights
            name: Lights
            members: [lights, "bulb:one", kitchen_plug.Power]
          - id: lights
            name: More lights
            members: []
        """,
    )
    assert errors_of(path) == [
        f"{path}:4:9: areas[1].id: duplicate area id 'kitchen' (first used by areas[0] on line 2)",
        f"{path}:6:9: areas[2].id: invalid area id 'Garage': use 1-64 lowercase letters, "
        "digits, '_' or '-'",
        f"{path}:11:15: groups[0].members[0]: a group cannot contain itself",
        f"{path}:11:23: groups[0].members[1]: unknown member kind 'bulb' in 'bulb:one': "
        "use entity:, device:, group:, area: or tag:",
        f"{path}:11:35: groups[0].members[2]: invalid entity id 'kitchen_plug.Power': use "
        "<device>.<key>, each 1-64 lowercase letters, digits, '_' or '-'",
        f"{path}:12:9: groups[1].id: duplicate group id 'lights' (first used by groups[0] on "
        "line 9)",
        f"{path}:14:14: groups[1].members: must not be empty",
    ]


def test_group_named_like_an_area_is_a_warning(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        areas: [{id: garden, name: Garden}]
        groups: [{id: garden, name: Garden things, members: [area:garden]}]
        """,
    )
    loaded = load_config(path)
    assert [str(w) for w in loaded.warnings] == [
        f"{path}:2:15: groups[0].id: warning: group id 'garden' is also an area id; an "
        "unprefixed 'garden' means the group (write 'area:garden' for the area)"
    ]


def test_mqtt_url_forms(tmp_path: Path) -> None:
    path = write(tmp_path, "mqtt:\n  url: mqtts://hub:zz%40pass-4711@broker.lan\n  protocol: 5\n")
    mqtt = load_config(path).config.mqtt
    assert (mqtt.host, mqtt.port, mqtt.tls) == ("broker.lan", 8883, True)
    assert mqtt.login == ("hub", "zz@pass-4711")
    assert mqtt.protocol == "5"
    assert redact("pw zz@pass-4711 zz%40pass-4711") == "pw *** ***"
    bad = write(tmp_path, "mqtt:\n  url: mqtt://u:topsecret@broker:70000\n", "bad.yaml")
    assert errors_of(bad) == [
        f"{bad}:2:8: mqtt.url: the broker URL 'mqtt://u:***@broker:70000' has an invalid "
        "port: use 1-65535"
    ]


def test_plugin_sections_expose_settings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        adapters:
          zigbee2mqtt:
            base_topic: zigbee2mqtt
          zeroconf:
            enabled: false
        frontends:
          dashboard:
          Bad.Name: {}
        """,
    )
    (issue,) = errors_of(path)
    assert issue.startswith(f"{path}:8:3: frontends['Bad.Name']: invalid plug-in name")
    path.write_text(path.read_text().replace("  Bad.Name: {}\n", ""))
    config = load_config(path).config
    assert config.adapters["zigbee2mqtt"].enabled
    assert config.adapters["zigbee2mqtt"].settings == {"base_topic": "zigbee2mqtt"}
    assert not config.adapters["zeroconf"].enabled
    assert config.adapters["zeroconf"].settings == {}
    assert config.frontends["dashboard"].enabled


class ZigbeeSettings(BaseModel):
    """A small plug-in schema, as a plug-in would declare it."""

    model_config = ConfigDict(extra="forbid")

    base_topic: str = "zigbee2mqtt"
    permit_join: bool = False
    poll: Duration = 60.0
    devices: list[str] = []


def test_validate_model_reports_positions_inside_the_plugin_section(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        hub:
          name: Home
        adapters:
          zigbee:
            enabled: true
            base_topik: z2m
            permit_join: perhaps
            poll: 5 parsecs
            devices: [a, [b]]
        """,
    )
    loaded = load_config(path)
    section = loaded.config.adapters["zigbee"]
    settings, issues = validate_model(
        ZigbeeSettings, section.settings, loaded.source, ("adapters", "zigbee")
    )
    assert settings is None
    assert sorted(str(issue) for issue in issues) == [
        f"{path}:6:5: adapters.zigbee: unknown key 'base_topik' (did you mean 'base_topic'?)",
        f"{path}:7:18: adapters.zigbee.permit_join: expected true or false, got 'perhaps'",
        f"{path}:8:11: adapters.zigbee.poll: unknown duration unit 'parsecs' in '5 parsecs': "
        "use ms, s, m, h, d or w",
        f"{path}:9:18: adapters.zigbee.devices[1]: expected text, got a list",
    ]
    good, none = validate_model(
        ZigbeeSettings, {"poll": "2m"}, loaded.source, ("adapters", "zigbee")
    )
    assert none == []
    assert good is not None
    assert good.poll == 120.0


def test_the_repository_hub_yaml_loads_clean() -> None:
    loaded = load_config(REPO / "hub.yaml")
    assert isinstance(loaded, LoadedConfig)
    assert loaded.warnings == ()
    config = loaded.config
    assert config.mqtt.url is None
    assert config.hub.base_topic == "hub"
    assert config.hub.device_topic == "home"
    assert {area.id for area in config.areas} >= {
        "kitchen",
        "living_room",
        "bedroom",
        "bathroom",
        "hallway",
        "office",
        "garage",
        "garden",
    }
    groups = {group.id: group for group in config.groups}
    assert groups["downstairs_lights"].aggregate is Aggregate.ANY
    assert groups["all_plugs_power"].aggregate is Aggregate.SUM
    assert config.database.resolved_url == f"sqlite+aiosqlite:///{REPO}/hub.db"


def test_the_example_secrets_file_is_a_valid_secrets_file() -> None:
    doc = load_yaml(REPO / "secrets.example.yaml")
    assert isinstance(doc.data, dict)
    assert all(isinstance(value, str) for value in doc.data.values())


def test_hub_config_defaults_without_a_file() -> None:
    config = HubConfig()
    assert config.database.resolved_url == "sqlite+aiosqlite:///hub.db"
    assert config.hub.location is None
