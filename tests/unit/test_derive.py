"""Values derived across polls: session energy from `eto`, the all-zero meter fault and
the settings that fight a controller."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from bridge.goe import codec_v2
from bridge.goe.derive import SessionEnergy, setting_warnings
from bridge.goe.model import ApiVersion, ChargerStatus, evolve

NRG = [230, 231, 229, 1, 16, 16, 16, 3680, 3696, 3664, 0, 11040, 99, 99, 99, 0]


def v2(car: int, eto: float, wh: float) -> ChargerStatus:
    return codec_v2.decode({"car": car, "eto": eto, "wh": wh})


def test_session_energy_counts_eto_from_plug_in_through_a_wh_reset() -> None:
    energy = SessionEnergy()
    assert energy.apply(v2(1, 10_000, 900)).energy_session_wh == 900  # last session, no car
    assert energy.apply(v2(3, 10_000, 0)).energy_session_wh == 0  # plugged in
    assert energy.apply(v2(2, 12_000, 2000)).energy_session_wh == 2000
    after_switch = energy.apply(v2(2, 12_500, 100))  # phase switch: go-e's wh restarted
    assert after_switch.energy_session_wh == 2500
    assert after_switch.energy_session_charger_wh == 100
    assert energy.apply(v2(1, 12_500, 100)).energy_session_wh == 2500  # unplugged: stays
    assert energy.apply(v2(3, 12_500, 0)).energy_session_wh == 0  # the next car


def test_a_bridge_started_mid_session_takes_what_the_charger_counted_before() -> None:
    energy = SessionEnergy()
    assert energy.apply(v2(2, 20_000, 3000)).energy_session_wh == 3000
    assert energy.apply(v2(2, 20_400, 3400)).energy_session_wh == 3400


def test_v1_keeps_dws_as_the_session_energy() -> None:
    status = ChargerStatus(ApiVersion.V1, plugged=True, energy_total_wh=1e6,
                           energy_session_wh=1907.8, energy_session_charger_wh=1907.8)  # fmt: skip
    out = SessionEnergy().apply(status)
    assert out.energy_session_wh == out.energy_session_charger_wh == 1907.8


def test_all_zero_meter_while_charging_is_a_fault_not_0_w() -> None:
    faulty = codec_v2.decode({"car": 2, "nrg": [0] * 16})
    assert faulty.meter_fault is True
    assert faulty.power_w is None and faulty.voltage_l1_v is None
    assert "power_w" not in faulty.fields()
    idle = codec_v2.decode({"car": 1, "nrg": [0] * 16})
    assert idle.meter_fault is False and idle.power_w == 0
    fine = codec_v2.decode({"car": 2, "nrg": NRG})
    assert fine.meter_fault is False and fine.power_w == 11040


def test_settings_that_fight_the_controller() -> None:
    assert setting_warnings({"lmo": 3, "fup": False, "acs": 0, "mcr": True}) == {}
    found = setting_warnings({"lmo": 5, "fup": True, "acs": 1, "mcr": True}, mqtt_writes=True)
    assert set(found) == {"lmo", "fup", "acs", "mcr"}
    assert "next_trip" in found["lmo"] and "trx=0" in found["acs"]
    assert setting_warnings({"lmo": True, "acs": "1"}) == {}  # odd types: no guess


def test_evolve_is_dataclasses_replace() -> None:
    """The per-poll copy gives what `dataclasses.replace` gives, raw and dropped included."""
    payload = json.loads(
        (Path(__file__).parents[1] / "fixtures/goe/v2-status-full-idle.json").read_text()
    )
    status = dataclasses.replace(codec_v2.decode(payload), dropped=("x: odd",))
    for changes in ({}, {"energy_session_wh": 1.5}, {"power_w": None, "phases": "auto"}):
        new = evolve(status, **changes)
        old = dataclasses.replace(status, **changes)  # type: ignore[arg-type]
        assert new == old and new.raw == old.raw and new.dropped == old.dropped
        assert new is not status
    with pytest.raises(TypeError, match="no field 'nope'"):
        evolve(status, nope=1)
