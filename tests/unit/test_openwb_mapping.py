"""go-e status → openWB values: types exactly as openWB's validator wants them."""

from __future__ import annotations

import json

import pytest

from bridge.goe import codec_v1, codec_v2
from bridge.goe.model import ApiVersion, ChargerStatus
from bridge.openwb import mapping
from tests.conftest import load_fixture
from tests.openwb_standins import REQUIRED_MQTT, REQUIRED_SECONDARY, openwb_check

CHARGING_1P = codec_v2.decode({
    "car": 2, "alw": True, "acu": 13, "ama": 16, "fhz": 49.98, "sse": "072246",
    "nrg": [227.2, 228.2, 230.0, 2.5, 13.53, 0, 0, 3042.1, 0, 0, 0, 3042.1, 98.96, 0, 0, 100],
    "eto": 1234567, "trx": 1, "cards": [{"name": "0123", "energy": 0, "cardId": True}],
})  # fmt: skip


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(CHARGING_1P, id="v2-charging"),
        pytest.param(
            codec_v2.decode(load_fixture("v2-status-full-idle.json")), id="v2-idle-fixture"
        ),
        pytest.param(
            codec_v1.decode(load_fixture("v1-status-fw041-finished.json")), id="v1-finished-fixture"
        ),
        pytest.param(ChargerStatus(ApiVersion.V2), id="empty"),
        pytest.param(codec_v2.decode({"car": 5, "err": 5}), id="error"),
    ],
)
def test_values_pass_openwbs_validation(status: ChargerStatus) -> None:
    values = mapping.chargepoint_values(status, mapping.MappingState())
    # through JSON, as on the wire
    values = json.loads(json.dumps(values))
    assert openwb_check(values, REQUIRED_SECONDARY) == []
    assert openwb_check(values, REQUIRED_MQTT) == []


def test_charging_values() -> None:
    state = mapping.MappingState()
    values = mapping.chargepoint_values(CHARGING_1P, state)
    assert values["power"] == 3042.1
    assert values["currents"] == [13.53, 0.0, 0.0]
    assert values["power_factors"] == [0.9896, 0.0, 0.0]
    assert values["imported"] == 1234567.0 and values["exported"] == 0.0
    assert values["phases_in_use"] == 1 and isinstance(values["phases_in_use"], int)
    assert (values["plug_state"], values["charge_state"]) == (True, True)
    assert (values["fault_state"], values["fault_str"]) == (0, "Kein Fehler.")
    assert values["evse_current"] == 13.0
    assert values["max_evse_current"] == 16.0
    assert values["serial_number"] == "072246"
    assert mapping.encode(values["serial_number"]) == '"072246"'
    assert values["frequency"] == 49.98


def test_rfid_follows_the_card_and_openwbs_clear() -> None:
    state = mapping.MappingState()
    assert mapping.update_rfid(CHARGING_1P, state, 1000.0) is True
    assert (state.rfid, state.rfid_timestamp) == ("0123", 1000.0)
    assert mapping.update_rfid(CHARGING_1P, state, 1001.0) is False  # the same scan
    mapping.clear_rfid(state)  # openWB's clear_rfid
    assert mapping.update_rfid(CHARGING_1P, state, 1002.0) is False
    assert state.rfid is None  # stays cleared while the charger still reports the card
    idle = codec_v2.decode({"car": 1})
    mapping.update_rfid(idle, state, 1003.0)
    assert mapping.update_rfid(CHARGING_1P, state, 1004.0) is True  # scanned again
    assert state.rfid == "0123"


def test_phases_in_use_starts_at_one() -> None:
    idle = codec_v2.decode({"car": 1, "nrg": [230, 230, 230, 0] + [0] * 12})
    assert mapping.chargepoint_values(idle, mapping.MappingState())["phases_in_use"] == 1


def test_phases_in_use_is_kept_while_not_charging() -> None:
    state = mapping.MappingState()
    mapping.chargepoint_values(CHARGING_1P, state)
    idle = codec_v2.decode({"car": 4, "nrg": [230, 230, 230, 0] + [0] * 12})
    assert mapping.chargepoint_values(idle, state)["phases_in_use"] == 1


def test_errors_and_unknown_car_states_are_faults_with_the_raw_numbers() -> None:
    state = mapping.MappingState()
    mapping.chargepoint_values(CHARGING_1P, state)
    values = mapping.chargepoint_values(codec_v2.decode({"car": 5, "err": 5}), state)
    assert values["fault_state"] == 2
    assert values["fault_str"] == "go-e Fehler overamp (err=5)"
    assert values["plug_state"] is True  # car 5: the last plug state is kept
    values = mapping.chargepoint_values(codec_v2.decode({"car": None}), state)
    assert values["fault_str"] == "go-e Fahrzeugstatus unbekannt oder Fehler (car=None)"


def test_unreachable_charger_is_explicit_not_frozen() -> None:
    state = mapping.MappingState()
    mapping.chargepoint_values(CHARGING_1P, state)
    values = mapping.chargepoint_values(CHARGING_1P, state, unreachable="GET /api/status: timeout")
    assert values["power"] == 0.0 and values["currents"] == [0.0, 0.0, 0.0]
    # the plug state is kept (no false unplug edge), charging is not
    assert (values["plug_state"], values["charge_state"]) == (True, False)
    assert values["imported"] == 1234567.0  # the counter stays, never 0
    # no frozen measurements: openWB's "no data" defaults
    assert values["voltages"] == [230.0] * 3 and values["power_factors"] == [0.0] * 3
    assert values["frequency"] == 50.0 and values["evse_current"] is None
    assert values["fault_state"] == 2
    assert values["fault_str"] == "go-e nicht erreichbar: GET /api/status: timeout"
    assert openwb_check(json.loads(json.dumps(values)), REQUIRED_SECONDARY) == []


def test_unreachable_at_start_publishes_no_counter_and_no_plug() -> None:
    values = mapping.chargepoint_values(None, mapping.MappingState(), unreachable="timeout")
    assert "imported" not in values  # a 0 would be a counter reset for openWB
    assert values["plug_state"] is False and values["phases_in_use"] == 1
    assert openwb_check(json.loads(json.dumps(values)), REQUIRED_SECONDARY) == []


def test_plug_state_is_held_only_while_a_switch_runs() -> None:
    state = mapping.MappingState()
    unplugged = codec_v2.decode({"car": 1})
    assert mapping.chargepoint_values(unplugged, state, now=0)["plug_state"] is False
    state.hold_plug_until = 30.0
    # a switch with no car keeps "not plugged": the hold keeps the old state, it does not
    # invent a car
    assert mapping.chargepoint_values(unplugged, state, now=1)["plug_state"] is False
    state.hold_plug_until = 0.0
    assert mapping.chargepoint_values(CHARGING_1P, state, now=2)["plug_state"] is True
    state.hold_plug_until = 40.0
    # the go-e's simulated unplug during the switch (car=1) does not show as an unplug
    assert mapping.chargepoint_values(unplugged, state, now=3)["plug_state"] is True
    assert mapping.chargepoint_values(unplugged, state, now=41)["plug_state"] is False


def test_v1_evse_current_and_power_factor_range() -> None:
    status = codec_v1.decode(
        {
            "car": "2",
            "alw": "1",
            "amp": "10",
            "nrg": [230] * 4 + [100] * 3 + [23] * 4 + [69] + [150, 99, 99, 0],
        }
    )
    values = mapping.chargepoint_values(status, mapping.MappingState())
    assert values["evse_current"] == 10.0
    assert values["power_factors"] == [1.0, 0.99, 0.99]  # 150 % clamped into openWB's −1…1


def test_legacy19_plain_text() -> None:
    assert mapping.legacy19_values(CHARGING_1P, None) == {
        "plugStat": "1", "chargeStat": "1", "W": "3042", "kWhCounter": "1234.567",
        "VPhase1": "227.2", "VPhase2": "228.2", "VPhase3": "230.0",
        "APhase1": "13.53", "APhase2": "0.00", "APhase3": "0.00", "HzFrequenz": "49.98",
    }  # fmt: skip
    assert mapping.legacy19_values(CHARGING_1P, "gone") == {
        "plugStat": "0",
        "chargeStat": "0",
        "W": "0",
    }
