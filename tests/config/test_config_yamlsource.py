"""The YAML loader: positions, duplicate keys, syntax errors, !secret, !env and ${NAME}."""

import io
import logging
import textwrap
import uuid
from pathlib import Path

import pytest

from hub.secrets import RedactingFilter
from hub.yamlsource import (
    ConfigError,
    ConfigIssue,
    SecretResolver,
    SourceError,
    format_path,
    load_yaml,
)


def write(tmp_path: Path, text: str, name: str = "doc.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load_issues(path: Path, **kwargs: object) -> list[str]:
    with pytest.raises(SourceError) as caught:
        load_yaml(path, **kwargs)  # type: ignore[arg-type]
    return [str(issue) for issue in caught.value.issues]


def test_positions_of_keys_values_and_list_items(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        hub:
          name: Home
        groups:
          - id: a
            members: [x, y]
          - id: b
        """,
    )
    doc = load_yaml(path)
    assert doc.file == str(path)
    assert doc.data == {
        "hub": {"name": "Home"},
        "groups": [{"id": "a", "members": ["x", "y"]}, {"id": "b"}],
    }
    assert doc.position(("hub",)) == (1, 1)
    assert doc.position(("hub", "name")) == (2, 3)
    assert doc.value_position(("hub", "name")) == (2, 9)
    assert doc.position(("groups", 1)) == (6, 5)
    assert doc.position(("groups", 0, "members")) == (5, 5)
    assert doc.position(("groups", 0, "members", 1)) == (5, 18)
    # A path that was never written falls back to its nearest written ancestor.
    assert doc.position(("groups", 1, "members", 3)) == (6, 5)
    assert doc.position(()) == (1, 1)


def test_yaml_12_scalars_keep_on_off_and_clock_times_as_text(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        state: on
        other: off
        answer: yes
        at: 12:30
        count: 010
        hex: 0x1f
        ratio: 1.5e3
        flag: true
        nothing: ~
        quoted: "5"
        """,
    )
    assert load_yaml(path).data == {
        "state": "on",
        "other": "off",
        "answer": "yes",
        "at": "12:30",
        "count": 10,
        "hex": 31,
        "ratio": 1500.0,
        "flag": True,
        "nothing": None,
        "quoted": "5",
    }


def test_duplicate_key_is_an_error_at_the_second_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        mqtt:
          url: mqtt://a
          keepalive: 30
          url: mqtt://b
        """,
    )
    assert load_issues(path) == [
        f"{path}:4:3: mqtt.url: duplicate key 'url' (first given on line 2)",
    ]


def test_syntax_error_reports_the_line_and_column(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        hub:
          name: Home
          base_topic: hub: oops
        """,
    )
    with pytest.raises(SourceError) as caught:
        load_yaml(path)
    assert caught.value.doc is None
    (issue,) = caught.value.issues
    assert (issue.line, issue.col) == (3, 18)
    assert "mapping values are not allowed here" in issue.message


def test_unclosed_flow_list_points_into_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "members: [a, b\nnext: 1\n")
    (issue,) = load_issues(path)
    assert issue.startswith(f"{path}:2:")
    assert "YAML syntax" in issue


def test_non_string_keys_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "areas:\n  1: kitchen\n  [a]: b\n  ok: yes\n")
    with pytest.raises(SourceError) as caught:
        load_yaml(path)
    assert [str(issue) for issue in caught.value.issues] == [
        f"{path}:2:3: areas: keys must be text, got '1': put it in quotes",
        f"{path}:3:3: areas: keys must be text, got a list",
    ]
    # The rest of the document is still there for further checks.
    assert caught.value.doc is not None
    assert caught.value.doc.data == {"areas": {"ok": "yes"}}


def test_missing_file_and_non_utf8_file(tmp_path: Path) -> None:
    assert load_issues(tmp_path / "absent.yaml") == [
        f"{tmp_path / 'absent.yaml'}:1:1: <root>: file not found"
    ]
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"a: 1\nname: caf\xe9\n")
    assert load_issues(path) == [f"{path}:2:10: <root>: the file is not UTF-8 text (byte 0xe9)"]


def test_secret_tag_resolves_from_the_secrets_file(tmp_path: Path) -> None:
    secrets = write(tmp_path, "mqtt_password: hunter2-hunter2\nport: 8883\n", "secrets.yaml")
    path = write(tmp_path, "password: !secret mqtt_password\nport: !secret port\n")
    doc = load_yaml(path, secrets=SecretResolver(secrets))
    assert doc.data == {"password": "hunter2-hunter2", "port": 8883}
    assert doc.origin(("password",)) == "secret 'mqtt_password'"
    assert doc.origin(("elsewhere",)) is None


def test_missing_secret_says_which_and_where_without_any_value(tmp_path: Path) -> None:
    secrets = write(tmp_path, "mqtt_password: do-not-print-me\n", "secrets.yaml")
    path = write(tmp_path, "a: 1\npassword: !secret mqtt_pasword\ntoken: !secret token\n")
    issues = load_issues(path, secrets=SecretResolver(secrets))
    assert issues == [
        f"{path}:2:11: password: secret 'mqtt_pasword' not found in {secrets} "
        "(did you mean 'mqtt_password'?)",
        f"{path}:3:8: token: secret 'token' not found in {secrets}",
    ]
    assert not any("do-not-print-me" in issue for issue in issues)


def test_secret_without_any_secrets_file(tmp_path: Path) -> None:
    path = write(tmp_path, "password: !secret pw\n")
    assert load_issues(path) == [
        f"{path}:1:11: password: secret 'pw' not found: no secrets file is configured"
    ]
    absent = tmp_path / "secrets.yaml"
    assert load_issues(path, secrets=SecretResolver(absent)) == [
        f"{path}:1:11: password: secret 'pw' not found: the secrets file {absent} does not exist"
    ]


def test_errors_in_the_secrets_file_are_reported_there(tmp_path: Path) -> None:
    secrets = write(tmp_path, "good: zz-value-4711\nnested:\n  a: 1\n", "secrets.yaml")
    path = write(tmp_path, "x: !secret good\ny: !secret nested\n")
    issues = load_issues(path, secrets=SecretResolver(secrets))
    assert f"{secrets}:2:1: nested: secret 'nested' must be a single value" in issues
    assert any(issue.startswith(f"{path}:2:4: y: secret 'nested' not found") for issue in issues)


def test_env_tag_with_and_without_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_TEST_BROKER", "zz-broker-4711.lan")
    monkeypatch.delenv("HUB_TEST_UNSET", raising=False)
    path = write(
        tmp_path,
        """
        host: !env HUB_TEST_BROKER
        port: !env HUB_TEST_UNSET:1883
        empty_default: !env "HUB_TEST_UNSET:"
        """,
    )
    doc = load_yaml(path)
    assert doc.data == {"host": "zz-broker-4711.lan", "port": "1883", "empty_default": ""}
    assert doc.origin(("host",)) == "environment variable 'HUB_TEST_BROKER'"
    assert doc.origin(("port",)) is None


def test_unset_env_without_default_is_an_issue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HUB_TEST_UNSET", raising=False)
    path = write(tmp_path, "a: 1\nhost: !env HUB_TEST_UNSET\n")
    (issue,) = load_issues(path)
    assert issue.startswith(f"{path}:2:7: host: environment variable 'HUB_TEST_UNSET' is not set")


def test_dollar_brace_substitution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_TEST_USER", "zz-user-4711")
    monkeypatch.setenv("HUB_TEST_PASS", "zz-pass-4711")
    monkeypatch.delenv("HUB_TEST_UNSET", raising=False)
    path = write(
        tmp_path,
        """
        url: "mqtt://${HUB_TEST_USER}:${HUB_TEST_PASS}@broker"
        plain: prefix-${HUB_TEST_UNSET:-fallback}
        literal: "$${NOT_EXPANDED}"
        """,
    )
    doc = load_yaml(path)
    assert doc.data == {
        "url": "mqtt://zz-user-4711:zz-pass-4711@broker",
        "plain": "prefix-fallback",
        "literal": "${NOT_EXPANDED}",
    }
    bad = write(tmp_path, "x: 1\nurl: mqtt://${HUB_TEST_UNSET}@h\n", "bad.yaml")
    (issue,) = load_issues(bad)
    assert issue.startswith(f"{bad}:2:6: url: environment variable 'HUB_TEST_UNSET' is not set")


def test_resolved_values_are_redacted_from_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = f"env-{uuid.uuid4().hex[:10]}"
    from_file = f"file-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("HUB_TEST_TOKEN", from_env)
    secrets = write(tmp_path, f"db: {from_file}\n", "secrets.yaml")
    path = write(tmp_path, "token: !env HUB_TEST_TOKEN\ndb: !secret db\n")
    doc = load_yaml(path, secrets=SecretResolver(secrets))

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger(f"test.yaml.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("token=%s db=%s", doc.data["token"], doc.data["db"])
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == "token=*** db=***\n"


def test_unknown_tags_and_bad_explicit_scalars(tmp_path: Path) -> None:
    path = write(tmp_path, "a: !include other.yaml\nb: !!int twelve\n")
    assert load_issues(path) == [
        f"{path}:1:4: a: unknown tag '!include': the tags this file may use are !secret and !env",
        f"{path}:2:4: b: 'twelve' is not a valid int",
    ]


def test_anchors_and_merge_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        base: &base
          enabled: true
          port: 1
        one:
          <<: *base
          port: 2
        two: *base
        """,
    )
    doc = load_yaml(path)
    assert doc.data["one"] == {"enabled": True, "port": 2}
    assert doc.data["two"] == {"enabled": True, "port": 1}
    assert doc.position(("one", "port")) == (6, 3)


def test_recursive_alias_is_an_issue_not_a_crash(tmp_path: Path) -> None:
    path = write(tmp_path, "a: &x\n  - *x\n")
    (issue,) = load_issues(path)
    assert "refers to the value that contains it" in issue


def test_empty_file_has_no_data(tmp_path: Path) -> None:
    doc = load_yaml(write(tmp_path, "# only a comment\n"))
    assert doc.data is None
    assert doc.position(("anything",)) == (1, 1)


def test_issue_formatting() -> None:
    assert format_path(()) == "<root>"
    assert format_path(("groups", 1, "members")) == "groups[1].members"
    assert format_path(("adapters", "a.b")) == "adapters['a.b']"
    issue = ConfigIssue("hub.yaml", 3, 5, "", "bad")
    assert str(issue) == "hub.yaml:3:5: <root>: bad"
    warning = ConfigIssue("hub.yaml", 1, 1, "groups", "odd", severity="warning")
    error = ConfigError([issue, warning])
    assert str(error) == "hub.yaml:3:5: <root>: bad\nhub.yaml:1:1: groups: warning: odd"
    assert error.issues == [issue, warning]
