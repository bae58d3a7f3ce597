"""The Home Assistant add-on's options → the bridge's config (home-assistant-addon/goe-bridge).

The add-on asks for little: the chargers (id, address, optionally API and a lower current
limit), whether Home Assistant may control them, and a few defaults. The broker and its
credentials come from the Supervisor's MQTT service (`services: mqtt:need`). Pure: the caller
reads the files and validates the result with `config.from_data`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
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
        # the add-on's own persistent folder (kept across restarts and updates)
        "state_file": "/data/goe-bridge-state.json",
    }


def option_path(problem: str) -> str:
    """A config problem in the add-on's words (`chargers[0].connection.host` →
    `chargers[0].host`), so the user finds the option to fix."""
    for inner in (".connection.", ".limits.", ".control."):
        problem = problem.replace(inner, ".")
    return problem.replace("brokers.homeassistant.", "MQTT service: ")


SUPERVISOR_URL = "http://supervisor"


class AddonError(Exception):
    """The add-on cannot start: said in its log, in the user's words."""


def supervisor_mqtt(base_url: str, token: str, timeout_s: float = 10) -> dict[str, Any]:
    """The broker the Supervisor hands over (`services: mqtt:need`): its REST API's
    `GET /services/mqtt` (home-assistant/supervisor, supervisor/api/services.py), answered as
    `{"result": "ok", "data": {host, port, ssl, protocol, username, password, ...}}`."""
    request = urllib.request.Request(
        f"{base_url.rstrip('/')}/services/mqtt", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("message") or exc.reason
        except ValueError:
            message = exc.reason
        raise AddonError(
            f"the Supervisor has no MQTT broker to give ({message}): install the Mosquitto "
            "broker add-on, or set up the MQTT integration in Home Assistant"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise AddonError(f"cannot ask the Supervisor for the MQTT broker: {exc}") from None
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, dict) or not data.get("host"):
        raise AddonError("the Supervisor's MQTT service named no broker")
    return data
