from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from bridge import config, logs
from bridge.config import ConfigError, Secret

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """
brokers: {home: {host: localhost}}
chargers:
  - id: garage
    connection: {type: http, host: 192.168.178.50}
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.loads(text, env)
    return info.value.problems


def test_example_config_loads_and_is_documented() -> None:
    cfg = config.load(ROOT / "config.example.yaml", env={})
    assert cfg.chargers[0].key == "garage"
    assert cfg.publish_broker == "home"
    assert cfg.chargers[0].connection.port == 80  # type: ignore[union-attr]
    # every key of the model appears in the example, so the example documents them all
    text = (ROOT / "config.example.yaml").read_text()

    def keys(value: object) -> set[str]:
        out: set[str] = set()
        if isinstance(value, dict):
            for k, v in value.items():
                out.add(k)
                out |= keys(v)
        elif isinstance(value, list):
            for v in value:
                out |= keys(v)
        return out

    for key in keys(config.normalized(cfg)):
        assert f"{key}" in text, key


def test_defaults_and_frozen() -> None:
    cfg = config.loads(MINIMAL)
    charger = cfg.chargers[0]
    assert charger.control.source == "none"
    assert charger.control.min_command_interval_s == 5
    assert charger.control.failsafe.timeout_s is None
    assert charger.limits.max_current_a == 32
    with pytest.raises(AttributeError):
        charger.id = "x"  # type: ignore[misc]


def test_every_problem_is_reported_with_its_path() -> None:
    found = problems(
        """
log: {level: loud}
brokers: {home: {port: 70000, tls: {enabled: yes, extra: 1}}}
publish: {base_topic: "goe/#"}
chargers:
  - id: "a/b"
    connection: {type: http, host: x, port: "80", api: v3}
    limits: {max_current_a: 40}
    control: {source: openwb, failsafe: {action: explode}}
  - connection: {type: carrier-pigeon}
"""
    )
    assert found == [
        "log.level: 'loud' is not valid; choose 'debug' | 'info' | 'warning' | 'error'",
        "brokers.home.port: 70000 is above the maximum 65535",
        "brokers.home.tls.extra: unknown key; valid keys here: ca_file, cert_file, enabled, insecure, key_file",
        "publish.base_topic: 'goe/#' must not contain MQTT wildcards '+', '#' or NUL",
        "chargers[0].connection.port: expected an integer, got '80'",
        "chargers[0].connection.api: 'v3' is not valid; choose 'auto' | 'v1' | 'v2'",
        "chargers[0].id: 'a/b' must be 1-64 letters, digits, '_', '-' or '.' (it becomes an MQTT topic level)",
        "chargers[0].limits.max_current_a: 40 is above the maximum 32",
        "chargers[0].control.source: 'openwb' is not valid; choose 'none' | 'mqtt' | 'openwb-secondary' | 'openwb-mqtt' | 'openwb-1.9'",
        "chargers[0].control.failsafe.action: 'explode' is not valid; choose 'stop' | 'current'",
        "chargers[1].connection.type: 'carrier-pigeon' is not valid; choose 'http' | 'cloud' | 'mqtt'",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("chargers: [{connection: {type: http}}]", "chargers[0].connection.host: required"),
        (
            "brokers: {a: {}, b: {}}",
            "publish.broker: several brokers are configured; name the one to use",
        ),
        (
            "brokers: {a: {}}\npublish: {broker: b}",
            "publish.broker: no broker named 'b' (brokers: a)",
        ),
        (
            "brokers: {'a+b': {}}",
            "brokers.a+b: name must be 1-64 letters, digits, '_', '-' or '.' (it becomes an MQTT topic level)",
        ),
        # YAML 1.1 reads 012345 as octal: quoting is the only way to keep the serial
        (
            "chargers: [{connection: {type: mqtt, serial: 012345}}]",
            "chargers[0].connection.serial: expected a string, got the number 5349; quote it",
        ),
        (
            "brokers: {a: {}}\nchargers: [{id: x, connection: {type: http, host: h}}, {id: x, connection: {type: http, host: i}}]",
            "chargers[1].id: 'x' is also used by chargers[0]",
        ),
        ("publish: {base_topic: /goe}", "publish.base_topic: '/goe' must not start with '/'"),
        (
            "chargers: [{connection: {type: mqtt, serial: '1', prefix: 'a//b'}}]",
            "chargers[0].connection.prefix: 'a//b' must be non-empty topic levels separated by single '/'",
        ),
        (
            'chargers: [{id: "a\\0", connection: {type: http, host: h}}]',
            "chargers[0].id: 'a\\x00' must be 1-64 letters, digits, '_', '-' or '.' (it becomes an MQTT topic level)",
        ),
        ("- 1", "config: the top level must be a mapping"),
    ],
)
def test_single_problems(text: str, expected: str) -> None:
    assert expected in problems(text)


def test_go_e_prefix_may_have_a_leading_slash() -> None:
    cfg = config.loads(
        "brokers: {home: {}}\nchargers: [{connection: {type: mqtt, serial: '072246', prefix: /go-eCharger}}]"
    )
    assert cfg.chargers[0].connection.prefix == "/go-eCharger"  # type: ignore[union-attr]
    assert cfg.chargers[0].key == "072246"


def test_environment_overrides() -> None:
    cfg = config.loads(
        MINIMAL,
        env={
            "GOE_BRIDGE__BROKERS__HOME__PORT": "8883",
            "GOE_BRIDGE__BROKERS__HOME__PASSWORD": "s3cret",
            "GOE_BRIDGE__CHARGERS__GARAGE__LIMITS__MAX_CURRENT_A": "16",
            "GOE_BRIDGE__CHARGERS__0__CONTROL__SOURCE": "mqtt",
            "GOE_BRIDGE__LOG__LEVEL": "debug",
            "OTHER": "ignored",
        },
    )
    assert cfg.brokers["home"].port == 8883
    assert cfg.brokers["home"].password == "s3cret"
    assert cfg.chargers[0].limits.max_current_a == 16
    assert cfg.chargers[0].control.source == "mqtt"
    assert cfg.log.level == "debug"
    assert "GOE_BRIDGE__CHARGERS__NOPE__ID: no list item 'nope' at chargers" in problems(
        MINIMAL, {"GOE_BRIDGE__CHARGERS__NOPE__ID": "x"}
    )


def test_secrets_from_files_are_masked(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    cfg = config.loads(f"brokers: {{home: {{username: u, password_file: {secret}}}}}")
    password = cfg.brokers["home"].password
    assert isinstance(password, Secret)
    assert password.reveal() == "hunter2"
    assert "hunter2" not in repr(cfg)
    assert "hunter2" not in json.dumps(config.normalized(cfg))
    missing = problems(f"brokers: {{home: {{password_file: {tmp_path / 'nope'}}}}}")
    assert missing == [
        f"brokers.home.password_file: cannot read {tmp_path / 'nope'}: No such file or directory"
    ]


def test_config_with_secrets_readable_by_others_warns(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("brokers: {home: {username: u, password: hunter2}}\n")
    path.chmod(0o644)
    cfg = config.load(path, env={})
    assert len(cfg.warnings) == 1 and "chmod 600" in cfg.warnings[0]
    path.chmod(0o600)
    assert config.load(path, env={}).warnings == ()


def test_logs_never_show_secrets() -> None:
    stream = io.StringIO()
    logs.setup("debug", "json", stream)
    logs.register_secrets(["hunter2"])
    log = logs.get("test")
    log.info("broker.connect", password="hunter2", url="mqtt://u:hunter2@host", wke="wifikey")
    logging.getLogger("aiomqtt").warning("auth with hunter2 failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["password"] == "***"
    assert lines[0]["url"] == "mqtt://u:***@host"
    assert lines[0]["wke"] == "***"
    assert lines[1]["event"] == "auth with *** failed"
    assert "hunter2" not in stream.getvalue()


def test_unhashable_connection_type_is_a_config_error() -> None:
    """Found by the config fuzzer: a list as `type` crashed the loader."""
    assert (
        "chargers[0].connection.type: ['http'] is not valid; choose 'http' | 'cloud' | 'mqtt'"
        in problems("chargers: [{connection: {type: [http]}}]")
    )


def test_a_url_as_charger_host_is_refused_with_the_fix() -> None:
    found = problems(MINIMAL.replace("host: 192.168.178.50", 'host: "http://192.168.178.50:8080/"'))
    assert found == [
        "chargers[0].connection.host: 'http://192.168.178.50:8080/' is a URL; give the address "
        "only: host: '192.168.178.50', port: 8080"
    ]


def test_the_fast_parser_reads_what_the_pure_one_reads_and_errors_keep_the_caret() -> None:
    """libyaml parses the config (a fleet's is large); a file that does not parse is reported
    by the pure-Python parser, whose text shows the line and where in it."""
    import yaml

    example = (Path(__file__).parents[2] / "config.example.yaml").read_text()
    fleet = example + "".join(
        f"  - id: c{i}\n    connection: {{type: http, host: 10.0.0.{i % 250}}}\n"
        for i in range(300)
    )
    for text in (example, "a: yes\nb: 0o17\nc: 1_000\nd: 2026-11-23\n", fleet):
        assert yaml.load(text, Loader=config._FAST_LOADER) == yaml.safe_load(text)
    assert config._FAST_LOADER is (yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader)
    with pytest.raises(ConfigError) as err:
        config.loads("brokers:\n  b: {host: x\n")
    assert "not valid YAML" in str(err.value) and "^" in str(err.value)
