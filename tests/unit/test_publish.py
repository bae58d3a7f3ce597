"""Status → topics (pure) and Home Assistant discovery payloads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.goe import codec_v1, codec_v2
from bridge.goe.model import ApiVersion, ChargerStatus
from bridge.publish import discovery
from bridge.publish.fields import FieldPublisher, Topics, control_messages, deadband, scalar
from tests.conftest import ROOT, load_fixture


@pytest.mark.parametrize(
    ("value", "text"),
    [(True, "true"), (False, "false"), (16, "16"), (230.0, "230"), (13.53, "13.53"),
     (0.1 + 0.2, "0.3"), (49.94400024, "49.944"), ("idle", "idle"), ([1, 2], "[1,2]"),
     ({"a": 1}, '{"a":1}'), (float("nan"), "null")],
)  # fmt: skip
def test_scalar_payloads(value: object, text: str) -> None:
    assert scalar(value) == text


def test_deadbands_by_unit() -> None:
    assert deadband("power_w") == 100
    assert deadband("frequency_hz") == 0.1
    assert deadband("voltage_l1_v") == 2
    assert deadband("current_l1_a") == 0.2
    assert deadband("energy_total_wh") == 50
    assert deadband("power_factor_l1_pct") == 2
    assert deadband("car") == 0


# Measured values that are exact on purpose: cloud data age (one poll a minute or slower).
EXACT_MEASURES = {"data_age_s"}


def test_every_measured_value_has_a_deadband() -> None:
    """A float that moves on every poll without a band is a message on every poll: the
    charger's own session counter once was 11 messages a charger-second at 1 s polls."""
    import dataclasses

    floats = {
        f.name for f in dataclasses.fields(ChargerStatus) if "float" in str(f.type)
    } - EXACT_MEASURES
    assert floats, "the model has measured values"
    assert {name for name in floats if not deadband(name)} == set()
    assert deadband("energy_session_charger_wh") == 50


def test_field_publisher_sends_changes_past_the_deadband_and_refreshes() -> None:
    pub = FieldPublisher(Topics("goe", "g"), refresh_s=60)
    first = dict(pub.update(ChargerStatus(ApiVersion.V2, power_w=1000.0, car=2), now=0))
    assert first == {"goe/g/api_version": "v2", "goe/g/power_w": "1000", "goe/g/car": "2"}
    assert pub.update(ChargerStatus(ApiVersion.V2, power_w=1090.0, car=2), now=1) == []
    assert pub.update(ChargerStatus(ApiVersion.V2, power_w=1100.0, car=2), now=2) == [
        ("goe/g/power_w", "1100")
    ]
    # crossing zero is always sent
    assert sorted(pub.update(ChargerStatus(ApiVersion.V2, power_w=0.0, car=4), now=3)) == [
        ("goe/g/car", "4"), ("goe/g/power_w", "0"),
    ]  # fmt: skip
    assert len(pub.update(ChargerStatus(ApiVersion.V2, power_w=0.0, car=4), now=63)) == 3


def test_raw_mirror_is_opt_in_and_json() -> None:
    status = codec_v2.decode(load_fixture("v2-status-full-idle.json"))
    without = FieldPublisher(Topics("goe", "g"), 60).update(status, 0)
    assert not [t for t, _ in without if "/raw/" in t]
    with_raw = dict(FieldPublisher(Topics("goe", "g"), 60, raw=True).update(status, 0))
    assert with_raw["goe/g/raw/fwv"] == '"56.9"'
    assert with_raw["goe/g/raw/pha"] == "[false,false,false,true,true,true]"
    assert "goe/g/raw/dll" not in with_raw


def test_control_topics() -> None:
    msgs = control_messages(Topics("goe", "g"), {"in_sync": True, "target_phases": None, "x": 1})
    assert msgs == [("goe/g/control/target_phases", "none"), ("goe/g/control/in_sync", "true")]


def test_discovery_payload_structure() -> None:
    status = codec_v2.decode({**load_fixture("v2-status-full-idle.json"), "sse": "072246"})
    topic, payload = discovery.charger_config(
        "homeassistant", Topics("goe", "garage"), status, controllable=True
    )
    assert topic == "homeassistant/device/goe_bridge_garage/config"
    config = json.loads(payload)
    assert config["dev"] == {
        "ids": ["goe_bridge_garage"], "name": "go-e garage", "mf": "go-e", "mdl": "go-eCharger",
        "via_device": "goe_bridge", "sw": "56.9", "sn": "072246",
    }  # fmt: skip
    assert config["availability_mode"] == "all"
    cmps = config["cmps"]
    unique_ids = [c["unique_id"] for c in cmps.values()]
    assert len(unique_ids) == len(set(unique_ids))
    assert all(uid.startswith("goe_bridge_garage_") for uid in unique_ids)
    energy = cmps["goe_bridge_garage_energy_total_wh"]
    assert (energy["device_class"], energy["state_class"], energy["unit_of_measurement"]) == (
        "energy", "total_increasing", "Wh",
    )  # fmt: skip
    power = cmps["goe_bridge_garage_power_w"]
    assert (power["p"], power["device_class"], power["unit_of_measurement"]) == (
        "sensor",
        "power",
        "W",
    )
    assert power["state_topic"] == "goe/garage/power_w"
    assert cmps["goe_bridge_garage_plugged"]["p"] == "binary_sensor"
    assert cmps["goe_bridge_garage_availability"]["state_topic"] == "goe/garage/availability"
    number = cmps["goe_bridge_garage_current_limit_a"]
    assert (number["p"], number["min"], number["max"], number["command_topic"]) == (
        "number", 6, 32, "goe/garage/current_limit_a/set",
    )  # fmt: skip
    assert cmps["goe_bridge_garage_allow_charging"]["p"] == "switch"
    assert cmps["goe_bridge_garage_phases"]["options"] == ["auto", "1", "3"]
    # every command entity asks for QoS 1 itself (HA reads qos per entity)
    for control in ("current_limit_a", "allow_charging", "phases"):
        assert cmps[f"goe_bridge_garage_{control}"]["qos"] == 1
    assert cmps["goe_bridge_garage_temperature_c"]["unit_of_measurement"] == "°C"


def test_discovery_read_only_has_no_controls() -> None:
    status = ChargerStatus(ApiVersion.V1, power_w=0.0)
    _, payload = discovery.charger_config("ha", Topics("goe", "g"), status, controllable=False)
    cmps = json.loads(payload)["cmps"]
    assert not [c for c in cmps.values() if c["p"] in ("switch", "number", "select")]


def test_a_field_that_becomes_unknown_is_cleared_not_left_stale() -> None:
    publisher = FieldPublisher(Topics("goe", "g"), refresh_s=300)
    charging = ChargerStatus(ApiVersion.V2, power_w=11000.0, effective_current_a=16.0)
    idle = ChargerStatus(ApiVersion.V2, power_w=0.0)
    publisher.update(charging, 0)
    out = dict(publisher.update(idle, 1))
    assert out["goe/g/effective_current_a"] == ""  # an empty retained message deletes it
    assert out["goe/g/power_w"] == "0"
    assert "goe/g/effective_current_a" not in dict(publisher.update(idle, 2))  # once


def test_replay_after_a_reconnect_is_what_a_subscriber_last_saw() -> None:
    """What a broker that lost its retained messages gets again: each field as last sent
    (not as last polled: a change inside the deadband was never sent), a cleared field as a
    clear, and the raw mirror when it is on."""
    publisher = FieldPublisher(Topics("goe", "g"), refresh_s=300, raw=True)
    seen: dict[str, str] = {}
    for now, status in enumerate(
        [
            ChargerStatus(ApiVersion.V2, power_w=11000.0, effective_current_a=16.0,
                          raw={"car": 2}),
            ChargerStatus(ApiVersion.V2, power_w=11010.0, raw={"car": 2}),
        ]
    ):  # fmt: skip
        seen.update(publisher.update(status, now))
    replay = dict(publisher.replay())
    assert replay == seen
    assert replay["goe/g/power_w"] == "11000"  # 11010 was inside the band
    assert replay["goe/g/effective_current_a"] == ""
    assert replay["goe/g/raw/car"] == "2"


def test_every_field_of_the_contract_has_an_entity() -> None:
    from bridge.goe.model import FIELD_NAMES

    covered = {e.field for e in discovery.ENTITIES} | set(discovery.CONTROLLABLE)
    assert set(FIELD_NAMES) == covered


@pytest.mark.parametrize(
    ("fixture", "decode", "golden"),
    [
        ("v2-status-full-idle.json", codec_v2.decode, "discovery-v2.json"),
        ("v1-status-fw041-finished.json", codec_v1.decode, "discovery-v1.json"),
    ],
    ids=["v2", "v1"],
)
def test_the_exact_discovery_document(fixture: str, decode: Any, golden: str) -> None:
    """The whole device config for a real v1 and v2 status, as Home Assistant receives it
    (tests/fixtures/discovery-*.json; regenerate them on purpose when the entities change)."""
    status = decode(load_fixture(fixture))
    _, payload = discovery.charger_config(
        "homeassistant", Topics("goe", "garage"), status, controllable=True,
        capable=discovery.capabilities(frozenset(), status),
    )  # fmt: skip
    doc = json.loads(payload)
    doc["o"]["sw"] = "VERSION"  # the bridge's version changes with every release
    expected = json.loads((ROOT / "tests" / "fixtures" / golden).read_text())
    assert doc == expected


@pytest.mark.parametrize(
    ("api", "decode", "fixtures"),
    [
        (ApiVersion.V2, codec_v2.decode, ["v2-status-full-idle.json"]),
        (ApiVersion.V1, codec_v1.decode,
         ["v1-status-fw033-idle.json", "v1-status-fw041-finished.json"]),
    ],
    ids=["v2", "v1"],
)  # fmt: skip
def test_the_fields_each_api_can_report_cover_what_it_reports(
    api: ApiVersion, decode: Any, fixtures: list[str]
) -> None:
    """discovery.API_FIELDS keeps an entity of a field that is empty for a moment; it must
    hold every field the codec gives for real payloads and the simulator, idle and charging."""
    from bridge.simulator.charger import Car, SimCharger

    seen: set[str] = set()
    for name in fixtures:
        seen |= set(decode(load_fixture(name)).fields())
    for plugged in (False, True):
        sim = SimCharger(api=api)
        if plugged:
            sim.plug(Car())
        seen |= set(decode(sim.status_v2() if api is ApiVersion.V2 else sim.status_v1()).fields())
    assert seen <= discovery.API_FIELDS[api], seen - discovery.API_FIELDS[api]
