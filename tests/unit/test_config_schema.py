"""The config's published forms: the JSON Schema kept equal to the model
(goe-bridge.schema.json, `goe-bridge schema`; not `config.schema.json`: the Supervisor takes
every `config.*` in the repository for an add-on, supervisor/store/data.py), and
config.example.yaml's normalized form (a golden test, as sml2mqtt's
tests/config/test_default.py does for its default config)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bridge import config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.yaml"
SCHEMA_FILE = ROOT / "goe-bridge.schema.json"


def test_the_committed_schema_is_the_models() -> None:
    """After a change to the model: goe-bridge schema > goe-bridge.schema.json (compared as
    JSON: pydantic versions differ in writing a bound as 1 or 1.0)"""
    assert json.loads(SCHEMA_FILE.read_text()) == config.schema()


def test_the_example_names_the_schema_for_editors() -> None:
    first = EXAMPLE.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=./goe-bridge.schema.json"


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_example_passes_the_schema() -> None:
    assert list(validator().iter_errors(yaml.safe_load(EXAMPLE.read_text()))) == []


@pytest.mark.parametrize(
    "text",
    [
        "brokers: {home: {port: 70000}}",
        "brokers: {'a+b': {}}",
        "brokers: {home: {password: 0123}}",
        "log: {level: loud}",
        "chargers: [{connection: {type: carrier-pigeon}}]",
        "chargers: [{connection: {type: http}}]",
        "chargers: [{connection: {type: http, host: h}, colour: red}]",
        "chargers: [{id: 'a/b', connection: {type: http, host: h}}]",
        "chargers: [{connection: {type: http, host: h}, limits: {max_current_a: 40}}]",
    ],
)
def test_what_the_model_refuses_the_schema_refuses(text: str) -> None:
    with pytest.raises(config.ConfigError):
        config.loads(text)
    assert list(validator().iter_errors(yaml.safe_load(text)))


GOLDEN: dict[str, Any] = {
    "log": {"level": "info", "format": "auto"},
    "brokers": {
        "home": {
            "host": "localhost",
            "port": 1883,
            "username": None,
            "password": None,
            "client_id": None,
            "protocol": "auto",
            "session_expiry_s": 3600,
            "keepalive_s": 60,
            "tls": {
                "enabled": False,
                "ca_file": None,
                "cert_file": None,
                "key_file": None,
                "insecure": False,
            },
        }
    },
    "publish": {
        "broker": "home",
        "base_topic": "goe",
        "raw": False,
        "refresh_s": 300.0,
        "home_assistant": {"enabled": True, "prefix": "homeassistant"},
    },
    "chargers": [
        {
            "connection": {
                "type": "http",
                "host": "192.168.178.50",
                "port": 80,
                "api": "auto",
                "poll_interval_s": 5.0,
                "timeout_s": 5.0,
            },
            "id": "garage",
            "limits": {"max_current_a": 16},
            "control": {
                "source": "mqtt",
                "broker": "home",
                "duo_num": 0,
                "chargepoint_id": 1,
                "lp": 1,
                "legacy_topics": False,
                "enable_mode": "force",
                "authorize": False,
                "pv_input_timeout_s": 8.0,
                "min_command_interval_s": 5.0,
                "phase_switch_min_interval_s": None,
                "failsafe": {"timeout_s": None, "action": "stop", "current_a": 6},
            },
        }
    ],
    "http": {"enabled": False, "host": "127.0.0.1", "port": 8080},
    "state_file": None,
}


def test_the_example_config_normalized_golden() -> None:
    cfg = config.load(EXAMPLE, env={})
    # the order of the keys too: check-config prints them in this order
    assert json.dumps(config.normalized(cfg), indent=2) == json.dumps(GOLDEN, indent=2)
    assert isinstance(cfg.chargers[0].connection, config.HttpConnection)
    assert cfg.source == str(EXAMPLE) and cfg.warnings == ()


def test_secrets_are_masked_in_the_normalized_form(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("t0k3n\n")
    cfg = config.loads(
        f"brokers: {{home: {{username: u, password: hunter2}}}}\n"
        f"chargers: [{{connection: {{type: cloud, serial: '1', token_file: {secret}}}}}]"
    )
    out = config.normalized(cfg)
    assert out["brokers"]["home"]["password"] == "***"
    assert out["chargers"][0]["connection"]["token"] == "***"
    # the file's path is not part of the effective config, as before
    assert "token_file" not in out["chargers"][0]["connection"]
    assert "hunter2" not in json.dumps(out) and "t0k3n" not in json.dumps(out)
