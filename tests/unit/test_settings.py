"""The one settings loader: precedence flag > env > file > default, value parsing, and errors
that name every problem (setting and source) at once."""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from control_plane.config import ControlPlaneSettings
from floe.settings import (
    ConfigError,
    add_arguments,
    load_settings,
    parse_duration,
    parse_host_port,
    reference_table,
    setting,
)


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "floe.yaml"
    path.write_text(text)
    return path


def load(
    config_file: Path | None = None,
    flags: dict[str, object] | None = None,
    environ: dict[str, str] | None = None,
) -> ControlPlaneSettings:
    return load_settings(ControlPlaneSettings, config_file=config_file, flags=flags, environ=environ or {})


def problems_of(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    assert str(exc.value).startswith("Invalid configuration:")
    for p in exc.value.problems:  # the message carries every problem
        assert p in str(exc.value)
    return exc.value.problems


# -- precedence --------------------------------------------------------------------------------


def test_defaults_when_nothing_is_set() -> None:
    s = load()
    assert s == ControlPlaneSettings()
    assert s.grpc_listen == "127.0.0.1:9090"
    assert s.http_listen == "127.0.0.1:9091"
    assert s.data_dir == Path("floe-data")
    assert s.access_token_ttl == 900.0
    assert s.drain_timeout == 30.0
    assert s.signing_key_path == Path("floe-data") / "jwt-signing.pem"
    assert s.admin_key_path == Path("floe-data") / "admin.key"


def test_os_environ_is_the_default_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOE_LOG_LEVEL", "debug")
    assert load_settings(ControlPlaneSettings).log_level == "debug"


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path,
        "grpc_listen: 127.0.0.1:1001\n"  # file, env and flag: the flag wins
        "http_listen: 127.0.0.1:2001\n"  # file and env: env wins
        "log_level: warning\n"  # file only: file wins
        "access_token_ttl: 10m\n"  # file and flag: the flag wins
        "data_dir: /srv/from-file\n",  # file and an empty env var: the file wins
    )
    environ = {
        "FLOE_GRPC_LISTEN": "127.0.0.1:1002",
        "FLOE_HTTP_LISTEN": "127.0.0.1:2002",
        "FLOE_DATA_DIR": "",  # empty means unset
        "FLOE_DRAIN_TIMEOUT": "5s",  # env only
        "FLOE_UNRELATED": "ignored",
    }
    flags: dict[str, object] = {
        "grpc_listen": "127.0.0.1:1003",
        "access_token_ttl": "30s",
        "http_listen": None,  # argparse leaves unset flags as None: lower layers apply
        "target": "127.0.0.1:9999",  # other CLI options in vars(args) are not settings
        "group": "control-plane",
    }
    s = load(config, flags, environ)
    assert s.grpc_listen == "127.0.0.1:1003"
    assert s.http_listen == "127.0.0.1:2002"
    assert s.log_level == "warning"
    assert s.access_token_ttl == 30.0
    assert s.data_dir == Path("/srv/from-file")
    assert s.drain_timeout == 5.0
    assert s.refresh_token_ttl == 7 * 86400.0  # set nowhere: the default


@pytest.mark.parametrize(
    ("layer", "expected"),
    [("default", 900.0), ("file", 120.0), ("env", 60.0), ("flag", 1.5)],
)
def test_each_layer_overrides_the_ones_below(tmp_path: Path, layer: str, expected: float) -> None:
    order = ["default", "file", "env", "flag"]
    upto = order.index(layer)
    config = write_yaml(tmp_path, "access_token_ttl: 2m\n") if upto >= 1 else None
    environ = {"FLOE_ACCESS_TOKEN_TTL": "1m"} if upto >= 2 else {}
    flags: dict[str, object] = {"access_token_ttl": "1500ms"} if upto >= 3 else {}
    assert load(config, flags, environ).access_token_ttl == expected


def test_yaml_accepts_dashed_keys_and_native_types(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path,
        "grpc-listen: '[::1]:0'\nauth-failure-burst: 7\nauth_failure_rate: 2\n"
        "drain_timeout: 12\njwt_key_file: ~/k.pem\n",
    )
    s = load(config)
    assert s.grpc_listen == "[::1]:0"
    assert s.auth_failure_burst == 7
    assert s.auth_failure_rate == 2.0
    assert s.drain_timeout == 12.0
    assert s.jwt_key_file == Path("~/k.pem").expanduser()
    assert s.signing_key_path == s.jwt_key_file


def test_empty_yaml_file_means_defaults(tmp_path: Path) -> None:
    assert load(write_yaml(tmp_path, "")) == ControlPlaneSettings()
    assert load(write_yaml(tmp_path, "# only a comment\n")) == ControlPlaneSettings()


def test_flags_from_argparse_feed_the_loader() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, ControlPlaneSettings)
    args = parser.parse_args(["--grpc-listen", "127.0.0.1:0", "--access-token-ttl", "5m"])
    s = load(flags=vars(args), environ={"FLOE_HTTP_LISTEN": "127.0.0.1:0", "FLOE_ACCESS_TOKEN_TTL": "1h"})
    assert (s.grpc_listen, s.http_listen, s.access_token_ttl) == ("127.0.0.1:0", "127.0.0.1:0", 300.0)
    help_text = parser.format_help()
    for f in dataclasses.fields(ControlPlaneSettings):
        assert "--" + f.name.replace("_", "-") in help_text
        assert "FLOE_" + f.name.upper() in help_text


def test_reference_table_lists_every_setting() -> None:
    table = reference_table(ControlPlaneSettings)
    for f in dataclasses.fields(ControlPlaneSettings):
        assert f"`{f.name}`" in table
        assert f"`FLOE_{f.name.upper()}`" in table


# -- errors ------------------------------------------------------------------------------------


def test_every_invalid_value_is_reported_at_once_with_its_source(tmp_path: Path) -> None:
    config = write_yaml(tmp_path, "grpc_listen: nonsense\nbogus_key: 1\nauth_failure_burst: many\n")
    with pytest.raises(ConfigError) as exc:
        load(
            config,
            flags={"http_listen": "127.0.0.1:99999", "drain_timeout": "soon"},
            environ={"FLOE_ACCESS_TOKEN_TTL": "abc", "FLOE_MAX_MESSAGE_BYTES": "4MB"},
        )
    problems = problems_of(exc)
    assert len(problems) == 7, problems
    text = "\n".join(problems)
    assert f"grpc_listen (file {config})" in text
    assert f"bogus_key (file {config}): unknown setting" in text
    assert "known: access_token_ttl" in text  # the message lists what is accepted
    assert f"auth_failure_burst (file {config})" in text
    assert "http_listen (flag --http-listen)" in text
    assert "drain_timeout (flag --drain-timeout)" in text
    assert "access_token_ttl (env FLOE_ACCESS_TOKEN_TTL): 'abc' is not a duration" in text
    assert "max_message_bytes (env FLOE_MAX_MESSAGE_BYTES)" in text


def test_cross_field_checks_report_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as exc:
        load(
            flags={"log_level": "loud", "log_format": "xml", "access_token_ttl": "0s", "max_message_bytes": "1024"},
            environ={"FLOE_AUTH_FAILURE_BURST": "0", "FLOE_QUERY_GRANT_TTL": "2h"},
        )
    problems = problems_of(exc)
    text = "\n".join(problems)
    names = (
        "log_level",
        "log_format",
        "access_token_ttl",
        "auth_failure_burst",
        "max_message_bytes",
        "query_grant_ttl",
    )
    for name in names:
        assert name in text, (name, problems)
    assert len(problems) == 6, problems


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ConfigError, match="grpc_listen"):
        ControlPlaneSettings(grpc_listen="nonsense")
    with pytest.raises(ValueError, match="key_recheck_interval"):
        ControlPlaneSettings(key_recheck_interval=0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("log_level: [a, b]\n", "log_level"),  # becomes a string, then fails the level check
        ("access_token_ttl: .nan\n", "access_token_ttl"),
        ("access_token_ttl: .inf\n", "access_token_ttl"),
        ("drain_timeout: -3\n", "drain_timeout"),
        ("auth_failure_burst: 2.5\n", "auth_failure_burst"),  # no silent truncation to 2
        ("auth_failure_burst: true\n", "auth_failure_burst"),
        ("auth_failure_rate: .nan\n", "auth_failure_rate"),
        ("http_listen: 9091\n", "http_listen"),
    ],
)
def test_bad_values_in_yaml_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load(write_yaml(tmp_path, text))
    assert any(p.startswith(expected) for p in problems_of(exc)), exc.value.problems


def test_integral_yaml_float_is_accepted_for_an_integer(tmp_path: Path) -> None:
    assert load(write_yaml(tmp_path, "auth_failure_burst: 3.0\n")).auth_failure_burst == 3


def test_env_values_are_refused_with_their_env_name() -> None:
    for env, value in [("FLOE_AUTH_FAILURE_RATE", "nan"), ("FLOE_AUTH_FAILURE_BURST", "2.5")]:
        with pytest.raises(ConfigError) as exc:
            load(environ={env: value})
        assert f"(env {env})" in problems_of(exc)[0]


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as exc:
        load(missing)
    assert f"config file {missing}: cannot read it" in problems_of(exc)[0]


def test_config_file_that_is_not_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load(write_yaml(tmp_path, "grpc_listen: [unclosed\n"))
    assert "not valid YAML" in problems_of(exc)[0]


def test_config_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load(write_yaml(tmp_path, "- grpc_listen\n- http_listen\n"))
    assert "expected a mapping" in problems_of(exc)[0]


# -- value parsers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        ("1.5h", 5400.0),
        ("0.5s", 0.5),
        ("45", 45.0),
        (" 10 s ", 10.0),
        ("0", 0.0),
        (12, 12.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_parse_duration(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["", "abc", "-5s", "5x", "5S", "1e3", "s", "10 minutes", "1h30m", "5.s", -1, -0.5, math.nan, math.inf, "9" * 400],
)
def test_parse_duration_rejects(value: str | float) -> None:
    with pytest.raises(ValueError, match=r"duration|negative"):
        parse_duration(value)


def test_parse_duration_rejects_booleans() -> None:
    with pytest.raises(ValueError):
        parse_duration(True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9090", ("127.0.0.1", 9090)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        ("localhost:80", ("localhost", 80)),
        ("[::1]:9090", ("::1", 9090)),
        ("[::]:0", ("::", 0)),
        ("cp.example.internal:443", ("cp.example.internal", 443)),
    ],
)
def test_parse_host_port(value: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "nonsense",
        "",
        "9090",
        ":9090",
        "127.0.0.1:",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:http",
        "127.0.0.1: 80",
        "[::1]",
    ],
)
def test_parse_host_port_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        parse_host_port(value)


# -- other field types (the same loader serves every component) ---------------------------------


@dataclass(frozen=True)
class _Kinds:
    flag: bool = setting(False, "a boolean")
    count: int = setting(1, "an integer")
    names: list[str] = setting(None, "a list")
    labels: dict[str, str] = setting(None, "a mapping")
    path: Path | None = setting(None, "a path")


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("YES", True), ("1", True), ("off", False)])
def test_bool_from_env(raw: str, expected: bool) -> None:
    assert load_settings(_Kinds, environ={"FLOE_FLAG": raw}).flag is expected


def test_list_dict_and_path_from_env_and_file(tmp_path: Path) -> None:
    s = load_settings(
        _Kinds,
        environ={"FLOE_NAMES": "a, b,,c", "FLOE_LABELS": "env=prod, zone = eu-1", "FLOE_PATH": "/tmp/x"},
    )
    assert s.names == ["a", "b", "c"]
    assert s.labels == {"env": "prod", "zone": "eu-1"}
    assert s.path == Path("/tmp/x")
    config = write_yaml(tmp_path, "names: [x, y]\nlabels: {k: 1}\nflag: true\n")
    s = load_settings(_Kinds, config_file=config, environ={})
    assert (s.names, s.labels, s.flag) == (["x", "y"], {"k": "1"}, True)


def test_bad_bool_and_pairs_are_reported_together() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(_Kinds, environ={"FLOE_FLAG": "maybe", "FLOE_LABELS": "novalue", "FLOE_COUNT": "x"})
    text = "\n".join(problems_of(exc))
    assert "flag (env FLOE_FLAG): 'maybe' is not a boolean" in text
    assert "labels (env FLOE_LABELS)" in text
    assert "count (env FLOE_COUNT)" in text


def test_agent_tls_settings_name_what_is_missing_or_unreadable(tmp_path: Path) -> None:
    from agents.runtime.settings import AgentSettings

    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError) as exc:
        AgentSettings(
            config_mode="local-only",
            listen_tls_cert_file=cert,
            receiver_ca_file=tmp_path / "missing.pem",
            query_advertise="no-port",
        )
    text = "\n".join(problems_of(exc))
    assert "listen_tls_cert_file / listen_tls_key_file: set both" in text
    assert f"receiver_ca_file: {tmp_path / 'missing.pem'} is not a readable file" in text
    assert "query_advertise: 'no-port' is not host:port" in text
