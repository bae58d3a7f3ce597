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


# ------------------------------------------------------------------ strict: what YAML 1.1 makes of text

BROKER = "brokers: {{home: {{username: u, password: {}}}}}\n"


@pytest.mark.parametrize(
    ("written", "read_as"),
    [
        pytest.param("0123", "the number 83", id="octal"),
        pytest.param("012345", "the number 5349", id="octal-serial-like"),
        pytest.param("1_000", "the number 1000", id="underscores"),
        pytest.param("0x1F", "the number 31", id="hex"),
        pytest.param("0b101", "the number 5", id="binary"),
        pytest.param("1:20", "the number 80", id="sexagesimal"),
        pytest.param("+12", "the number 12", id="signed"),
        pytest.param("1.5e+3", "the number 1500.0", id="float-exponent"),
        pytest.param(".5", "the number 0.5", id="float-leading-dot"),
        pytest.param(".inf", "the number inf", id="infinity"),
        pytest.param("yes", "the boolean true", id="yes"),
        pytest.param("no", "the boolean false", id="no"),
        pytest.param("on", "the boolean true", id="on"),
        pytest.param("off", "the boolean false", id="off"),
        pytest.param("True", "the boolean true", id="True"),
        pytest.param("2026-11-23", "a date", id="date"),
        pytest.param("2026-11-23t21:59:43.10-05:00", "a date and time", id="timestamp"),
    ],
)
def test_a_secret_yaml_turned_into_something_else_is_an_error_that_says_to_quote_it(
    written: str, read_as: str
) -> None:
    """Defect: `password: 0123` was silently the password "83". The message names the
    kind, never the secret (a failed start prints it to the journal)."""
    kind = read_as.split(" ")[1]  # "the number 83" → number, "a date and time" → date
    word = {"number": "a number", "boolean": "a boolean", "date": "a date"}[kind]
    assert problems(BROKER.format(written)) == [
        f'brokers.home.password: YAML read it unquoted as {word}; quote it: password: "…"'
    ]
    cfg = config.loads(BROKER.format(f'"{written}"'))
    assert cfg.brokers["home"].password.reveal() == written  # type: ignore[union-attr]


@pytest.mark.parametrize("written", ["0o17", "1e3", "08", "y", "n", "0123abc"])
def test_forms_pyyaml_leaves_as_text_are_taken_as_written(written: str) -> None:
    """YAML 1.2's `0o17`, an exponent without a dot or sign, `08` (not octal), and `y`/`n`
    are plain text to PyYAML's YAML 1.1 resolver."""
    cfg = config.loads(BROKER.format(written))
    assert cfg.brokers["home"].password.reveal() == written  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "chargers: [{connection: {type: cloud, serial: '1', token: 0123}}]",
            'chargers[0].connection.token: YAML read it unquoted as a number; quote it: token: "…"',
        ),
        (
            "brokers: {home: {username: yes}}",
            'brokers.home.username: YAML read yes as the boolean true; quote it: username: "yes"',
        ),
        (
            "chargers: [{connection: {type: http, host: 2026-01-01}}]",
            'chargers[0].connection.host: YAML read 2026-01-01 as a date; quote it: host: "2026-01-01"',
        ),
        (
            "chargers: [{id: off, connection: {type: http, host: h}}]",
            'chargers[0].id: YAML read off as the boolean false; quote it: id: "off"',
        ),
        (
            "chargers: [{id: 007, connection: {type: http, host: h}}]",
            "chargers[0].id: expected a string, got the number 7; quote it",
        ),
        (
            "brokers: {home: {protocol: 5}}",
            'brokers.home.protocol: YAML read 5 as the number 5; quote it: protocol: "5"',
        ),
        (
            "brokers: {home: {password_file: 12}}",
            "brokers.home.password_file: expected a file path",
        ),
    ],
)
def test_text_keys_that_yaml_read_as_something_else(text: str, expected: str) -> None:
    assert expected in problems(text)


def test_a_secret_given_as_data_is_a_string_too() -> None:
    """Without the YAML text (the add-on's options, the demo), the number is all there is."""
    with pytest.raises(ConfigError) as info:
        config.from_data({"brokers": {"home": {"username": "u", "password": 83}}}, env={})
    assert info.value.problems == [
        "brokers.home.password: expected a string, got the number 83; quote it"
    ]


def test_numbers_and_booleans_where_they_belong_keep_working() -> None:
    cfg = config.loads(
        """
brokers: {home: {port: 0x75B, keepalive_s: 1:00, tls: {enabled: yes, insecure: off}}}
publish: {refresh_s: 1_000}
chargers: [{connection: {type: http, host: h, port: 1883, poll_interval_s: 0.5}}]
"""
    )
    broker = cfg.brokers["home"]
    assert (broker.port, broker.keepalive_s) == (1883, 60)
    assert broker.tls.enabled is True and broker.tls.insecure is False
    assert cfg.publish.refresh_s == 1000.0 and isinstance(cfg.publish.refresh_s, float)
    assert cfg.chargers[0].connection.poll_interval_s == 0.5  # type: ignore[union-attr]
    assert cfg.chargers[0].connection.port == 1883  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("written", "value"), [(".nan", "nan"), (".inf", "inf"), ("-.inf", "-inf")]
)
def test_a_number_must_be_finite(written: str, value: str) -> None:
    """Defect: `poll_interval_s: .nan` passed the minimum check (nan < 0.05 is false)."""
    found = problems(
        f"brokers: {{home: {{}}}}\nchargers: [{{connection: {{type: http, host: h, poll_interval_s: {written}}}}}]"
    )
    assert found == [
        f"chargers[0].connection.poll_interval_s: expected a finite number, got {value}"
    ]


@pytest.mark.parametrize("reference", ["{}", "[home]", "1"])
def test_a_broker_reference_that_is_not_a_name_is_a_config_error(reference: str) -> None:
    """Defect (found comparing the loaders): a mapping or list as `publish.broker` crashed the
    loader with TypeError: unhashable type."""
    found = problems(f"brokers: {{home: {{}}}}\npublish: {{broker: {reference}}}")
    assert len(found) == 1 and found[0].startswith("publish.broker: expected a string, got")


def test_broker_references_are_checked_together_with_every_other_problem() -> None:
    found = problems(
        """
brokers: {home: {port: x}}
publish: {broker: nope}
chargers:
  - {id: a, connection: {type: mqtt, serial: "1", broker: away}, control: {source: mqtt, broker: far}}
"""
    )
    assert found == [
        "brokers.home.port: expected an integer, got 'x'",
        "publish.broker: no broker named 'nope' (brokers: home)",
        "chargers[0].connection.broker: no broker named 'away' (brokers: home)",
        "chargers[0].control.broker: no broker named 'far' (brokers: home)",
    ]


def test_a_section_left_empty_means_its_defaults() -> None:
    cfg = config.loads(
        """
brokers:
  home:
log:
publish:
  home_assistant:
chargers:
  - connection: {type: http, host: h}
    control:
"""
    )
    assert cfg.brokers["home"].host == "localhost"
    assert cfg.log.level == "info" and cfg.publish.home_assistant.prefix == "homeassistant"
    assert cfg.chargers[0].control.source == "none"
    assert "chargers[0]: expected a mapping, got 'x'" in problems("chargers: [x]")
    assert problems("brokers: {home: }\nchargers: [null]") == ["chargers[0].connection: required"]


def test_password_and_password_file_together_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    assert problems(f"brokers: {{home: {{password: a, password_file: {secret}}}}}") == [
        "brokers.home.password_file: give either password or password_file"
    ]
    token = tmp_path / "token"
    token.write_text("t0k\n")
    cfg = config.loads(
        f"chargers: [{{connection: {{type: cloud, serial: '1', token_file: {token}}}}}]\nbrokers: {{home: }}"
    )
    assert cfg.chargers[0].connection.token.reveal() == "t0k"  # type: ignore[union-attr]
    assert problems("brokers: {home: }\nchargers: [{connection: {type: cloud, serial: '1'}}]") == [
        "chargers[0].connection.token: required"
    ]


def test_models_are_frozen_all_the_way_down() -> None:
    cfg = config.loads(MINIMAL)
    with pytest.raises(AttributeError):
        cfg.brokers["home"].port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.brokers["other"] = cfg.brokers["home"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        del cfg.log.level


def test_models_built_directly_validate_too() -> None:
    """The CLI's `probe --mqtt` and the tests build a BrokerConfig themselves."""
    broker = config.BrokerConfig(host="h", port=8883, password=Secret("p"))
    assert broker.port == 8883 and broker.tls == config.TlsConfig()
    assert repr(broker.password) == "Secret('***')"
    with pytest.raises(ValueError, match="less than or equal to 65535"):
        config.BrokerConfig(port=70000)


def test_commands_that_read_no_config_do_not_import_the_model() -> None:
    """pydantic and the model cost about 0.1 s at start (README, design notes): `health`, run by
    Docker every 30 s, must not pay it."""
    import subprocess
    import sys

    code = "import sys, bridge.__main__; print(sorted(m for m in sys.modules if m.startswith(('pydantic', 'bridge.config.'))))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_config_rules_on_a_serial_are_the_configs() -> None:
    """A config's serial becomes the charger's id; `probe --cloud v1` builds a connection
    without one."""
    assert problems(
        "brokers: {h: }\nchargers: [{connection: {type: cloud, serial: ' ', token: t}}]"
    ) == ["chargers[0].connection.serial: must not be empty"]
    probe = config.CloudConnection(type="cloud", serial="", token=Secret("t"), api="v1")
    assert probe.serial == ""


def test_the_permission_warning_looks_at_the_secrets_written_in_the_file(tmp_path: Path) -> None:
    """Defect: a `password: null` anywhere in the file silenced the warning for every other
    password (the check searched the dumped YAML text for `password: null`), and a password
    given by the environment counted as one in the file."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "brokers: {a: {username: u, password: hunter2}, b: {password: null}}\n"
        "publish: {broker: a}\n"
    )
    path.chmod(0o644)
    assert [w for w in config.load(path, env={}).warnings if "chmod 600" in w]
    path.write_text("brokers: {a: {username: u}}\n")
    env = {"GOE_BRIDGE__BROKERS__A__PASSWORD": "from-env"}
    assert config.load(path, env=env).warnings == ()
