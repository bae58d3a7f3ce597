"""The Home Assistant add-on's options → the bridge's config (home-assistant-addon/goe-bridge).

The add-on asks for little: the chargers (id, address, optionally API and a lower current
limit), whether Home Assistant may control them, and a few defaults. The broker and its
credentials come from the Supervisor's MQTT service (`services: mqtt:need`). Pure: the caller
reads the files and validates the result with `config.from_data`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SUPERVISOR_BROKER = "homeassistant"


def config_from_options(options: Mapping[str, Any], mqtt: Mapping[str, Any]) -> dict[str, Any]:
    """A config mapping from `/data/options.json` and the Supervisor's MQTT service
    (`host`, `port`, `username`, `password`, `ssl`)."""
    default_limit = options.get("max_current_a", 32)
    chargers = []
    for item in options.get("chargers") or []:
        connection: dict[str, Any] = {
            "type": "http",
            "api": item.get("api") or "auto",
            "poll_interval_s": options.get("poll_interval_s", 5),
        }
        if item.get("host") is not None:
            connection["host"] = item["host"]
        chargers.append(
            {
                "id": item.get("id"),
                "connection": connection,
                "limits": {"max_current_a": item.get("max_current_a") or default_limit},
                "control": {"source": options.get("control", "mqtt")},
            }
        )
    broker: dict[str, Any] = {
        "host": mqtt.get("host") or "core-mosquitto",
        "port": int(mqtt.get("port") or 1883),
        "username": mqtt.get("username") or None,
        "password": mqtt.get("password") or None,
    }
    if mqtt.get("ssl"):
        broker["tls"] = {"enabled": True}
    return {
        # the add-on log is read in Home Assistant's UI: readable lines
        "log": {"level": options.get("log_level", "info"), "format": "console"},
        "brokers": {SUPERVISOR_BROKER: broker},
        "publish": {
            "broker": SUPERVISOR_BROKER,
            "base_topic": options.get("base_topic", "goe"),
            "home_assistant": {"enabled": True},
        },
        "chargers": chargers,
    }


def option_path(problem: str) -> str:
    """A config problem in the add-on's words (`chargers[0].connection.host` →
    `chargers[0].host`), so the user finds the option to fix."""
    for inner in (".connection.", ".limits.", ".control."):
        problem = problem.replace(inner, ".")
    return problem.replace("brokers.homeassistant.", "MQTT service: ")
