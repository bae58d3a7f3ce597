"""Home Assistant MQTT device discovery (one `homeassistant/device/<node>/config` per
charger, plus one for the bridge itself). Pure.

https://www.home-assistant.io/integrations/mqtt/#device-discovery-payload
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .. import __version__
from ..goe.model import ApiVersion, ChargerStatus
from .fields import Topics, bridge_state_topic

BRIDGE_NODE = "goe_bridge"

# field → (component, device_class, unit, state_class, name)
SENSORS: tuple[tuple[str, str | None, str | None, str | None, str], ...] = (
    ("power_w", "power", "W", "measurement", "Power"),
    ("power_l1_w", "power", "W", "measurement", "Power L1"),
    ("power_l2_w", "power", "W", "measurement", "Power L2"),
    ("power_l3_w", "power", "W", "measurement", "Power L3"),
    ("current_l1_a", "current", "A", "measurement", "Current L1"),
    ("current_l2_a", "current", "A", "measurement", "Current L2"),
    ("current_l3_a", "current", "A", "measurement", "Current L3"),
    ("voltage_l1_v", "voltage", "V", "measurement", "Voltage L1"),
    ("voltage_l2_v", "voltage", "V", "measurement", "Voltage L2"),
    ("voltage_l3_v", "voltage", "V", "measurement", "Voltage L3"),
    ("energy_total_wh", "energy", "Wh", "total_increasing", "Energy total"),
    ("energy_session_wh", "energy", "Wh", "total_increasing", "Energy this session"),
    ("temperature_c", "temperature", "°C", "measurement", "Temperature"),
    ("effective_current_a", "current", "A", "measurement", "Effective current"),
    ("phases_in_use", None, None, "measurement", "Phases in use"),
    ("wifi_rssi_dbm", "signal_strength", "dBm", "measurement", "WiFi signal"),
    ("frequency_hz", "frequency", "Hz", "measurement", "Grid frequency"),
    ("car_state", "enum", None, None, "Car state"),
    ("error", None, None, None, "Error"),
    ("model_status", None, None, None, "Charging reason"),
)
BINARY_SENSORS: tuple[tuple[str, str, str], ...] = (
    ("plugged", "plug", "Plugged in"),
    ("charging", "battery_charging", "Charging"),
)
DIAGNOSTIC = {"temperature_c", "wifi_rssi_dbm", "frequency_hz", "model_status", "error",
              "effective_current_a"}  # fmt: skip


def node_id(charger_id: str) -> str:
    return f"{BRIDGE_NODE}_{charger_id}".replace("-", "_").replace(".", "_")


def config_topic(prefix: str, node: str) -> str:
    return f"{prefix}/device/{node}/config"


def bridge_config(prefix: str, base: str) -> tuple[str, str]:
    payload = {
        "dev": {
            "ids": [BRIDGE_NODE],
            "name": "goe-bridge",
            "mf": "goe-bridge",
            "mdl": "go-e ↔ MQTT bridge",
            "sw": __version__,
        },
        "o": {"name": "goe-bridge", "sw": __version__},
        "cmps": {
            f"{BRIDGE_NODE}_state": {
                "p": "binary_sensor",
                "device_class": "connectivity",
                "name": "Bridge",
                "state_topic": bridge_state_topic(base),
                "payload_on": "online",
                "payload_off": "offline",
                "unique_id": f"{BRIDGE_NODE}_state",
                "entity_category": "diagnostic",
            }
        },
        "qos": 1,
    }
    return config_topic(prefix, BRIDGE_NODE), json.dumps(payload, ensure_ascii=False)


def charger_config(
    prefix: str,
    topics: Topics,
    status: ChargerStatus | None,
    *,
    controllable: bool,
    max_current_a: int,
) -> tuple[str, str]:
    node = node_id(topics.charger)
    reported: Mapping[str, Any] = status.fields() if status else {}
    device: dict[str, Any] = {
        "ids": [node],
        "name": f"go-e {topics.charger}",
        "mf": "go-e",
        "mdl": (status.hardware if status and status.hardware else "go-eCharger"),
        "via_device": BRIDGE_NODE,
    }
    if status and status.firmware:
        device["sw"] = status.firmware
    if status and status.serial:
        device["sn"] = status.serial
    cmps: dict[str, dict[str, Any]] = {}

    def add(field: str, component: str, name: str, **extra: Any) -> None:
        cmps[f"{node}_{field}"] = {
            "p": component,
            "name": name,
            "unique_id": f"{node}_{field}",
            "state_topic": topics.field(field),
            **{k: v for k, v in extra.items() if v is not None},
        }

    for field, device_class, unit, state_class, name in SENSORS:
        if reported and field not in reported:
            continue  # the charger's API does not report it
        add(
            field,
            "sensor",
            name,
            device_class=device_class,
            unit_of_measurement=unit,
            state_class=state_class,
            entity_category="diagnostic" if field in DIAGNOSTIC else None,
            options=(
                ["idle", "charging", "waiting_for_car", "complete", "error", "initializing",
                 "unknown"] if field == "car_state" else None
            ),
        )  # fmt: skip
    for field, device_class, name in BINARY_SENSORS:
        add(field, "binary_sensor", name, device_class=device_class,
            payload_on="true", payload_off="false")  # fmt: skip
    cmps[f"{node}_availability"] = {
        "p": "binary_sensor",
        "name": "Reachable",
        "unique_id": f"{node}_availability",
        "device_class": "connectivity",
        "state_topic": topics.availability,
        "payload_on": "online",
        "payload_off": "offline",
        "entity_category": "diagnostic",
        # shown even when the charger is offline: only the bridge's state matters here
        "availability": [{"topic": bridge_state_topic(topics.base)}],
    }
    if controllable:
        add("allow_charging", "switch", "Allow charging",
            command_topic=topics.set("allow_charging"),
            payload_on="true", payload_off="false", state_on="true", state_off="false")  # fmt: skip
        add("current_limit_a", "number", "Charging current",
            command_topic=topics.set("current_limit_a"), min=6, max=max_current_a, step=1,
            mode="slider", unit_of_measurement="A", device_class="current")  # fmt: skip
        if status is None or status.api_version is ApiVersion.V2:
            add("phases", "select", "Phases", command_topic=topics.set("phases"),
                options=["1", "3"])  # fmt: skip
    else:
        add("current_limit_a", "sensor", "Charging current", device_class="current",
            unit_of_measurement="A", state_class="measurement")  # fmt: skip
        add("allow_charging", "binary_sensor", "Charging allowed",
            payload_on="true", payload_off="false")  # fmt: skip
    payload = {
        "dev": device,
        "o": {"name": "goe-bridge", "sw": __version__},
        "cmps": cmps,
        "availability": [
            {"topic": bridge_state_topic(topics.base)},
            {"topic": topics.availability},
        ],
        "availability_mode": "all",
        "qos": 1,
    }
    return config_topic(prefix, node), json.dumps(payload, ensure_ascii=False)
