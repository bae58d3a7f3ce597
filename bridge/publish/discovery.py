"""Home Assistant MQTT device discovery (one `homeassistant/device/<node>/config` per
charger, plus one for the bridge itself). Pure.

https://www.home-assistant.io/integrations/mqtt/#device-discovery-payload
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import __version__, jsontext
from ..goe.model import ApiVersion, ChargerStatus
from .fields import Topics, bridge_state_topic

BRIDGE_NODE = "goe_bridge"
# go-e's highest charging current (`amp`/`ama` ≤ 32 A on every model)
MAX_CURRENT_A = 32


# A cleared topic (an empty retained message: the value became unknown) shows as unknown, and
# the control topics' `none` ("leave as it is") too; Home Assistant treats a rendered None so.
UNKNOWN_TEMPLATE = "{{ value if value not in ('', 'none') else None }}"
# for a field whose value can be the word `none` (`error`: no error), only a cleared topic
CLEARED_TEMPLATE = "{{ value if value != '' else None }}"


@dataclass(frozen=True, slots=True)
class Entity:
    """How one field of the topic contract appears in Home Assistant."""

    field: str
    name: str
    platform: str = "sensor"
    device_class: str | None = None
    unit: str | None = None
    state_class: str | None = None
    diagnostic: bool = False
    enabled: bool = True  # False: noisy or technical, enabled by the user when wanted
    options: tuple[str, ...] | None = None
    template: str | None = None  # default: UNKNOWN_TEMPLATE


def _meter(field: str, name: str, device_class: str, unit: str, **kw: Any) -> Entity:
    return Entity(field, name, device_class=device_class, unit=unit, state_class="measurement",
                  **kw)  # fmt: skip


# Every field of the topic contract; the controllable ones (allow_charging, current_limit_a,
# phases) are controls while control.source is mqtt (see charger_config).
ENTITIES: tuple[Entity, ...] = (
    _meter("power_w", "Power", "power", "W"),
    *(_meter(f"power_l{n}_w", f"Power L{n}", "power", "W") for n in (1, 2, 3)),
    _meter("power_n_w", "Power N", "power", "W", diagnostic=True, enabled=False),
    *(_meter(f"current_l{n}_a", f"Current L{n}", "current", "A") for n in (1, 2, 3)),
    *(_meter(f"voltage_l{n}_v", f"Voltage L{n}", "voltage", "V") for n in (1, 2, 3)),
    _meter("voltage_n_v", "Voltage N", "voltage", "V", diagnostic=True, enabled=False),
    *(
        _meter(
            f"power_factor_l{n}_pct",
            f"Power factor L{n}",
            "power_factor",
            "%",
            diagnostic=True,
            enabled=False,
        )
        for n in (1, 2, 3)
    ),
    _meter(
        "power_factor_n_pct", "Power factor N", "power_factor", "%", diagnostic=True, enabled=False
    ),
    Entity(
        "energy_total_wh",
        "Energy total",
        device_class="energy",
        unit="Wh",
        state_class="total_increasing",
    ),
    Entity(
        "energy_session_wh",
        "Energy this session",
        device_class="energy",
        unit="Wh",
        state_class="total_increasing",
    ),
    Entity(
        "energy_session_charger_wh",
        "Energy this session (charger's counter)",
        device_class="energy",
        unit="Wh",
        state_class="total_increasing",
        diagnostic=True,
        enabled=False,
    ),
    _meter("effective_current_a", "Effective current", "current", "A", diagnostic=True),
    Entity("max_current_a", "Maximum current", device_class="current", unit="A", diagnostic=True),
    Entity("cable_current_a", "Cable current", device_class="current", unit="A", diagnostic=True),
    Entity("phases_in_use", "Phases in use", state_class="measurement"),
    _meter("temperature_c", "Temperature", "temperature", "°C", diagnostic=True),
    _meter("wifi_rssi_dbm", "WiFi signal", "signal_strength", "dBm", diagnostic=True),
    _meter("frequency_hz", "Grid frequency", "frequency", "Hz", diagnostic=True),
    Entity(
        "car_state",
        "Car state",
        device_class="enum",
        options=(
            "idle",
            "charging",
            "waiting_for_car",
            "complete",
            "error",
            "initializing",
            "unknown",
        ),
    ),
    Entity("car", "Car state code", diagnostic=True, enabled=False),
    Entity(
        "force_state",
        "Force state",
        device_class="enum",
        options=("neutral", "off", "on"),
        diagnostic=True,
    ),
    # `none` is a value here (no error), not "unknown"
    Entity("error", "Error", diagnostic=True, template=CLEARED_TEMPLATE),
    Entity("error_code", "Error code", diagnostic=True, enabled=False),
    Entity("model_status", "Charging reason", diagnostic=True),
    Entity(
        "access_control",
        "Access control",
        device_class="enum",
        options=("open", "wait", "evcms", "unknown"),
        diagnostic=True,
    ),
    Entity("session_authorized", "Session authorised", platform="binary_sensor", diagnostic=True),
    Entity(
        "meter_fault",
        "Meter fault",
        platform="binary_sensor",
        device_class="problem",
        diagnostic=True,
    ),
    Entity("model_status_code", "Charging reason code", diagnostic=True, enabled=False),
    Entity("api_version", "API version", diagnostic=True, enabled=False),
    Entity("firmware", "Firmware", diagnostic=True, enabled=False),
    Entity("serial", "Serial number", diagnostic=True, enabled=False),
    Entity("hardware", "Hardware", diagnostic=True, enabled=False),
    Entity(
        "variant_kw", "Rated power", device_class="power", unit="kW", diagnostic=True, enabled=False
    ),
    Entity("rfid_card", "RFID card", diagnostic=True),
    Entity("data_age_s", "Cloud data age", device_class="duration", unit="s", diagnostic=True),
    Entity("plugged", "Plugged in", platform="binary_sensor", device_class="plug"),
    Entity("charging", "Charging", platform="binary_sensor", device_class="battery_charging"),
    *(
        Entity(
            f"phase_l{n}_available",
            f"Mains L{n}",
            platform="binary_sensor",
            device_class="power",
            diagnostic=True,
            enabled=False,
        )
        for n in (1, 2, 3)
    ),
)
CONTROLLABLE = ("allow_charging", "current_limit_a", "phases")
FIELD_ENTITIES = frozenset(entity.field for entity in ENTITIES)
_COMMON = frozenset({
    "allow_charging", "car", "car_state", "charging", "current_l1_a", "current_l2_a",
    "current_l3_a", "current_limit_a", "energy_session_charger_wh", "energy_session_wh",
    "energy_total_wh", "error", "error_code", "firmware", "max_current_a", "meter_fault",
    "phase_l1_available", "phase_l2_available", "phase_l3_available", "phases_in_use", "plugged",
    "power_factor_l1_pct", "power_factor_l2_pct", "power_factor_l3_pct", "power_factor_n_pct",
    "power_l1_w", "power_l2_w", "power_l3_w", "power_n_w", "power_w", "serial", "temperature_c",
    "voltage_l1_v", "voltage_l2_v", "voltage_l3_v", "voltage_n_v", "cable_current_a",
    "rfid_card", "data_age_s", "api_version",
})  # fmt: skip
# Every field each API can report (tests/unit/test_publish.py checks the codecs against it):
# an entity announced before for a field of the charger's API stays announced while the field
# is empty, so its history has no gap; one the API cannot report goes (API v2 → v1).
API_FIELDS: Mapping[ApiVersion, frozenset[str]] = {
    ApiVersion.V1: _COMMON,
    ApiVersion.V2: _COMMON | {
        "access_control", "effective_current_a", "force_state", "frequency_hz", "hardware",
        "model_status", "model_status_code", "phases", "session_authorized", "variant_kw",
        "wifi_rssi_dbm",
    },
}  # fmt: skip


# Fields an API reports as null at times (no car, not charging, no card): a charger with that
# API has them even when one status does not show them.
SOMETIMES_NULL: Mapping[ApiVersion, frozenset[str]] = {
    ApiVersion.V2: frozenset({"effective_current_a", "cable_current_a", "rfid_card", "phases"}),
    ApiVersion.V1: frozenset({"cable_current_a", "rfid_card"}),
}


# Chargers of one kind have the same capabilities: one shared set each (a fleet of 500 held
# 1,000 equal frozensets, bench/floor.py), and no new set per poll when nothing was added.
_SHARED_CAPABILITIES: dict[frozenset[str], frozenset[str]] = {}


def capabilities(
    known: frozenset[str], status: ChargerStatus, fields: Iterable[str] | None = None
) -> frozenset[str]:
    """The fields a charger has: every field it ever reported, plus those its API reports as
    null at times. Grows; the discovery follows it. `fields`: the status's field names,
    when the caller has them already."""
    names = status.fields().keys() if fields is None else fields
    sometimes = SOMETIMES_NULL.get(status.api_version, frozenset())
    if known.issuperset(names) and known.issuperset(sometimes):
        return known
    grown = known.union(names, sometimes)
    return _SHARED_CAPABILITIES.setdefault(grown, grown)


def removals(announced: Mapping[str, str], current: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Components announced before and gone now, in the form Home Assistant deletes them by:
    the component id with only its platform (`{"p": "number"}`)."""
    return {cid: {"p": platform} for cid, platform in announced.items() if cid not in current}


def announced_components(payload: bytes) -> dict[str, str]:
    """The real components (more than the removal form) of a device config as published."""
    return {cid: p for cid, (p, real) in _components(payload).items() if real}


def removed_components(payload: bytes) -> dict[str, str]:
    """The components a device config carries in the removal form (`{"p": …}`)."""
    return {cid: p for cid, (p, real) in _components(payload).items() if not real}


def _device_config(payload: bytes) -> dict[str, Any] | None:
    """A retained device config as a JSON object (None: not one; anyone may publish there)."""
    try:
        return jsontext.loads_object(payload)
    except ValueError:
        return None


def _components(payload: bytes) -> dict[str, tuple[str, bool]]:
    config = _device_config(payload)
    cmps = (config or {}).get("cmps") or {}
    if not isinstance(cmps, dict):
        return {}
    return {
        str(cid): (c["p"], len(c) > 1)
        for cid, c in cmps.items()
        if isinstance(c, dict) and isinstance(c.get("p"), str)
    }


# Removals that reach a Home Assistant that was away. Home Assistant acts on a removal form
# (`{"p": …}`) or an empty device config only for what it discovered since its own start
# (homeassistant/components/mqtt/discovery.py); an entity it restored from its registry stays
# "unavailable (restored)" for good. What reaches it: after its birth message, the component
# once more in a valid form on topics nothing publishes to, then the removal, back to back (it
# queues them in order). Measured with Home Assistant 2026.11 (docs/design.md#lifecycle).
_DEAD_SUFFIX = "bridge/removed"


def dead_forms(components: Mapping[str, str], base: str) -> dict[str, dict[str, Any]]:
    """Components in a valid form that shows nothing (their topics carry no messages), for
    Home Assistant to load before it is told to remove them."""
    out: dict[str, dict[str, Any]] = {}
    for cid, platform in components.items():
        form: dict[str, Any] = {"p": platform, "unique_id": cid,
                                "state_topic": f"{base}/{_DEAD_SUFFIX}"}  # fmt: skip
        if platform in ("number", "switch", "select", "button"):
            form["command_topic"] = f"{base}/{_DEAD_SUFFIX}/set"
            form["qos"] = 1
        if platform == "select":
            form["options"] = ["-"]
        out[cid] = form
    return out


def with_components(payload: bytes, cmps: Mapping[str, Any]) -> str | None:
    """A retained device config with its components replaced (None: not a config)."""
    config = _device_config(payload)
    if config is None:
        return None
    config["cmps"] = dict(cmps)
    return json.dumps(config, ensure_ascii=False)


# What the bridge is doing, with a controller: (control key, platform, name, extra options)
_CONTROL_ENTITIES: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("in_sync", "binary_sensor", "In sync", {"payload_on": "true", "payload_off": "false"}),
    ("failsafe_active", "binary_sensor", "Failsafe active",
     {"device_class": "problem", "payload_on": "true", "payload_off": "false"}),
    ("target_allow", "sensor", "Target: allow charging", {}),
    ("target_current_a", "sensor", "Target: current",
     {"device_class": "current", "unit_of_measurement": "A"}),
    ("target_phases", "sensor", "Target: phases", {}),
)  # fmt: skip


def _control_entities(add: Any, topics: Topics, *, controlled: bool) -> None:
    """What the bridge is doing: the control source always; with a controller, whether the
    charger shows the Target, the failsafe, the Target itself and the last command's result
    (its reason as attributes)."""
    diag = {"entity_category": "diagnostic"}
    add("control/source", "sensor", "Control source", state_topic=topics.control("source"), **diag)
    if not controlled:
        return
    for key, platform, name, extra in _CONTROL_ENTITIES:
        add(f"control/{key}", platform, name, state_topic=topics.control(key),
            value_template=UNKNOWN_TEMPLATE, **extra, **diag)  # fmt: skip
    add(
        "result",
        "sensor",
        "Last command",
        state_topic=topics.result,
        value_template="{{ 'ok' if value_json.ok else 'rejected' }}",
        json_attributes_topic=topics.result,
        **diag,
    )


def node_id(charger_id: str) -> str:
    return f"{BRIDGE_NODE}_{charger_id}".replace("-", "_").replace(".", "_")


def bridge_node(base: str) -> str:
    """The bridge's own device: one per base topic, so bridges that share a broker and a
    discovery prefix (each with its own base topic) have a device each. The default base
    keeps the plain id it always had."""
    if base == "goe":
        return BRIDGE_NODE
    return f"{BRIDGE_NODE}_{base}".replace("-", "_").replace(".", "_").replace("/", "_")


def owned_by(payload: bytes, base: str) -> bool:
    """A retained device config this bridge (its base topic) announced: its availability,
    or the bridge device's state, is `<base>/bridge/state`."""
    config = _device_config(payload)
    if config is None:
        return False
    state = bridge_state_topic(base)
    for entry in config.get("availability") or ():
        if isinstance(entry, dict) and entry.get("topic") == state:
            return True
    cmps = config.get("cmps")
    if isinstance(cmps, dict):
        return any(isinstance(c, dict) and c.get("state_topic") == state for c in cmps.values())
    return False


def config_topic(prefix: str, node: str) -> str:
    return f"{prefix}/device/{node}/config"


def bridge_config(prefix: str, base: str) -> tuple[str, str]:
    node = bridge_node(base)
    payload = {
        "dev": {
            "ids": [node],
            "name": "goe-bridge" if base == "goe" else f"goe-bridge ({base})",
            "mf": "goe-bridge",
            "mdl": "go-e ↔ MQTT bridge",
            "sw": __version__,
        },
        "o": {"name": "goe-bridge", "sw": __version__},
        "cmps": {
            f"{node}_state": {
                "p": "binary_sensor",
                "device_class": "connectivity",
                "name": "Bridge",
                "state_topic": bridge_state_topic(base),
                "payload_on": "online",
                "payload_off": "offline",
                "unique_id": f"{node}_state",
                "entity_category": "diagnostic",
            }
        },
        "qos": 1,
    }
    return config_topic(prefix, node), json.dumps(payload, ensure_ascii=False)


def charger_config(
    prefix: str,
    topics: Topics,
    status: ChargerStatus | None,
    *,
    controllable: bool,
    capable: frozenset[str] | None = None,
    announced: Mapping[str, str] | None = None,
    control_source: str = "mqtt",
    tombstones: Mapping[str, str] | None = None,
    phase_options: tuple[str, ...] | None = None,
) -> tuple[str, str]:
    """The device config for one charger. Until the charger answered once (`status` None),
    only what needs no capability: reachability. `capable` (see `capabilities`) decides the
    sensors; `announced` components that are gone, and `tombstones`, are sent in the removal
    form. `phase_options`: what the phases select offers (the charger's firmware decides,
    control/plan.phase_support; empty: no select); default every choice on API v2."""
    node = node_id(topics.charger)
    reported: frozenset[str] = (
        capable if capable is not None else frozenset(status.fields() if status else ())
    )
    device: dict[str, Any] = {
        "ids": [node],
        "name": f"go-e {topics.charger}",
        "mf": "go-e",
        "mdl": (status.hardware if status and status.hardware else "go-eCharger"),
        "via_device": bridge_node(topics.base),
    }
    if status and status.firmware:
        device["sw"] = status.firmware
    if status and status.serial:
        device["sn"] = status.serial
    cmps: dict[str, dict[str, Any]] = {}

    def add(field: str, component: str, name: str, *, key: str | None = None,
            **extra: Any) -> None:  # fmt: skip
        key = key or field.replace("/", "_")
        cmps[f"{node}_{key}"] = {
            "p": component,
            "name": name,
            "unique_id": f"{node}_{key}",
            "state_topic": extra.pop("state_topic", None) or topics.field(field),
            **{k: v for k, v in extra.items() if v is not None},
        }

    for entity in ENTITIES:
        if entity.field not in reported:
            continue  # the charger's API does not report it (or nothing is known yet)
        extra: dict[str, Any] = {}
        if entity.platform == "binary_sensor":
            extra.update(payload_on="true", payload_off="false")
        add(
            entity.field,
            entity.platform,
            entity.name,
            device_class=entity.device_class,
            unit_of_measurement=entity.unit,
            state_class=entity.state_class,
            entity_category="diagnostic" if entity.diagnostic else None,
            enabled_by_default=None if entity.enabled else False,
            options=list(entity.options) if entity.options else None,
            value_template=entity.template or UNKNOWN_TEMPLATE,
            **extra,
        )
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
    if status is None:
        pass  # no capability known yet: the controls come with the first answer
    elif controllable:
        # QoS is read per entity (a top-level `qos` in a device config is not applied to the
        # components' commands): QoS 1, so the broker keeps a command while the bridge is away
        # the template makes a cleared state topic read as unknown: without it Home Assistant's
        # switch, number and select ignore an empty message and keep the old value
        add("allow_charging", "switch", "Allow charging",
            command_topic=topics.set("allow_charging"), qos=1,
            payload_on="true", payload_off="false", state_on="true", state_off="false",
            value_template=UNKNOWN_TEMPLATE)  # fmt: skip
        # The state can be anything the charger itself takes (set in the go-e app): `amp` is
        # 6..32 whatever `ama` says (amp 20 beside ama 16 in syssi's 56.2/56.9 captures), and
        # Home Assistant logs an error for a state outside min..max. A command above
        # limits.max_current_a is refused with the reason on `result`.
        add("current_limit_a", "number", "Charging current",
            command_topic=topics.set("current_limit_a"), min=6, max=MAX_CURRENT_A,
            step=1, mode="slider", unit_of_measurement="A", device_class="current", qos=1,
            value_template=UNKNOWN_TEMPLATE)  # fmt: skip
        if phase_options is None and status.api_version is ApiVersion.V2:
            phase_options = ("auto", "1", "3")
        if phase_options:
            add("phases", "select", "Phases", command_topic=topics.set("phases"), qos=1,
                options=list(phase_options), value_template=UNKNOWN_TEMPLATE)  # fmt: skip
    else:
        # Read-only twins of the controls get ids of their own: a component id that changed
        # its platform (number → sensor) would not be replaced in Home Assistant; the controls'
        # ids get the removal form instead.
        add("current_limit_a", "sensor", "Charging current", key="current_limit_a_state",
            device_class="current", unit_of_measurement="A", state_class="measurement",
            value_template=UNKNOWN_TEMPLATE)  # fmt: skip
        add("allow_charging", "binary_sensor", "Charging allowed", key="allow_charging_state",
            payload_on="true", payload_off="false", value_template=UNKNOWN_TEMPLATE)  # fmt: skip
        if "phases" in reported:
            add("phases", "sensor", "Phases", key="phases_state", value_template=UNKNOWN_TEMPLATE)
    if status is not None:
        _control_entities(add, topics, controlled=control_source != "none")
    cmps.update(removals({**(tombstones or {}), **(announced or {})}, cmps))
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
