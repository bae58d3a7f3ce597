"""Values derived across polls: session energy from `eto`, the all-zero meter fault and
the settings that fight a controller."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from bridge.goe import codec_v2
from bridge.goe.derive import SWITCH_HOLD_S, SessionEnergy, setting_warnings
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


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def status_v2(car: int | None, eto: float, wh: float, **keys: object) -> ChargerStatus:
    return codec_v2.decode({"car": car, "eto": eto, "wh": wh, **keys})


def test_the_chargers_own_phase_switch_is_no_unplug() -> None:
    """go-eCharger-API-v2 #198: after `psm` the charger shows car=1 and frc=0 for seconds,
    then the car is back with `wh` restarted. Plug, car state and session hold."""
    clock = Clock()
    energy = SessionEnergy(clock)
    charging = energy.apply(status_v2(2, 10_000, 0, frc=2, psm=2))
    charging = energy.apply(status_v2(2, 12_000, 2000, frc=2, psm=2))
    assert charging.energy_session_wh == 2000 and charging.car_state == "charging"
    energy.phase_switch_written()
    clock.now += 15
    window = energy.apply(status_v2(1, 12_010, 2010, frc=0, psm=1))
    assert window.plugged is True and window.car_state == "charging" and energy.held
    assert window.energy_session_wh == 2010
    assert window.car == 1  # go-e's own code stays as it is
    clock.now += 16
    back = energy.apply(status_v2(3, 12_010, 0.03, frc=0, psm=1))
    assert back.plugged is True and back.energy_session_wh == 2010 and not energy.held
    resumed = energy.apply(status_v2(2, 12_500, 490, frc=2, psm=1))
    assert resumed.energy_session_wh == 2500
    assert resumed.energy_session_charger_wh == 490
    # the switch is over: a real unplug is one
    clock.now += 10
    gone = energy.apply(status_v2(1, 12_500, 490, frc=0, psm=1))
    assert gone.plugged is False and gone.car_state == "idle"
    assert gone.energy_session_wh == 2500  # the session's value stays until the next car


def test_a_switch_the_status_shows_holds_too() -> None:
    """modelStatus 22/23 where the firmware reports them; a `psm` that changed in the status
    (the app, another client) starts the same window."""
    for keys_during in ({"modelStatus": 23}, {"modelStatus": 22}):
        energy = SessionEnergy(Clock())
        energy.apply(status_v2(2, 10_000, 500, psm=2))
        held = energy.apply(status_v2(1, 10_000, 500, psm=2, **keys_during))
        assert held.plugged is True and held.energy_session_wh == 500
    clock = Clock()
    energy = SessionEnergy(clock)
    energy.apply(status_v2(2, 10_000, 500, psm=2))
    energy.apply(status_v2(2, 10_000, 500, psm=1))  # switched in the app
    clock.now += 20
    assert energy.apply(status_v2(1, 10_000, 500, psm=1)).plugged is True


def test_the_switch_hold_ends() -> None:
    clock = Clock()
    energy = SessionEnergy(clock)
    energy.apply(status_v2(2, 10_000, 500))
    energy.phase_switch_written()
    clock.now += SWITCH_HOLD_S + 1
    assert energy.apply(status_v2(1, 10_000, 500)).plugged is False


def test_an_unplug_without_a_switch_is_an_unplug() -> None:
    energy = SessionEnergy(Clock())
    energy.apply(status_v2(2, 10_000, 500))
    out = energy.apply(status_v2(1, 10_000, 500))
    assert out.plugged is False and out.car_state == "idle"


@pytest.mark.parametrize("car", [0, 5, 6, None])
def test_codes_that_say_nothing_about_the_plug_hold_it(car: int | None) -> None:
    energy = SessionEnergy(Clock())
    energy.apply(status_v2(2, 10_000, 500))
    held = energy.apply(status_v2(car, 10_100, 600))
    assert held.plugged is True and held.energy_session_wh == 600
    assert held.car_state == {0: "unknown", 5: "error", 6: "initializing", None: "unknown"}[car]
    # nothing known before: nothing invented
    fresh = SessionEnergy(Clock()).apply(status_v2(car, 10_000, 500))
    assert fresh.plugged is None


def test_the_session_baseline_survives_a_restart() -> None:
    """424 Wh charged, `wh` restarted by a phase switch (117 Wh since): a restarted bridge
    goes on from its saved baseline instead of dropping to go-e's 117 Wh."""
    before = SessionEnergy(Clock())
    before.apply(status_v2(2, 10_000, 0))
    before.apply(status_v2(2, 10_424, 117))  # wh restarted at 10_307
    saved = json.loads(json.dumps(before.snapshot()))
    assert saved == {"baseline": 10_000, "last": 424, "total": 10_424, "charger_wh": 117}
    after = SessionEnergy(Clock())
    assert after.restore(saved)
    assert after.apply(status_v2(2, 10_500, 193)).energy_session_wh == 500
    # without the snapshot: go-e's wh is all there is
    assert SessionEnergy(Clock()).apply(status_v2(2, 10_500, 193)).energy_session_wh == 193


def test_a_restored_baseline_is_not_taken_for_a_new_session() -> None:
    before = SessionEnergy(Clock())
    before.apply(status_v2(2, 10_000, 0))
    before.apply(status_v2(2, 10_424, 424))
    saved = before.snapshot()
    # while the bridge was away: unplugged, a new car charged 50 Wh (wh restarted)
    after = SessionEnergy(Clock())
    assert after.restore(saved)
    assert after.apply(status_v2(2, 10_600, 50)).energy_session_wh == 50
    # unplugged at the first poll: the snapshot is dropped
    gone = SessionEnergy(Clock())
    gone.restore(saved)
    gone.apply(status_v2(1, 10_600, 50))
    assert gone.apply(status_v2(2, 10_700, 100)).energy_session_wh == 100


@pytest.mark.parametrize(
    "data",
    [None, [], "x", {}, {"baseline": 1}, {"baseline": -1, "total": 5, "charger_wh": 0},
     {"baseline": float("nan"), "total": 5, "charger_wh": 0},
     {"baseline": True, "total": 5, "charger_wh": 0},
     {"baseline": 10, "total": 5, "charger_wh": 0},
     {"baseline": "1", "total": 5, "charger_wh": 0}],
)  # fmt: skip
def test_a_broken_snapshot_is_refused(data: object) -> None:
    energy = SessionEnergy(Clock())
    assert energy.restore(data) is False
    assert energy.apply(status_v2(2, 10_500, 193)).energy_session_wh == 193


def test_with_the_pv_input_eco_mode_is_right() -> None:
    """go-e's own PV logic needs lmo=4, fup=true, frc=0 (syssi README): while pv/set feeds
    it, those are not warned about, and their opposites are."""
    pv_mode = {"lmo": 4, "fup": True, "frc": 0, "acs": 0}
    assert set(setting_warnings(pv_mode)) == {"lmo", "fup"}  # an external controller
    assert setting_warnings(pv_mode, pv_input=True) == {}
    found = setting_warnings({"lmo": 3, "fup": False, "frc": 2}, pv_input=True)
    assert set(found) == {"lmo", "fup", "frc"}
    assert "lmo=4" in found["lmo"] and "enable_mode: neutral" in found["frc"]
    # the app calls lmo 4 Eco
    assert "eco (lmo=4)" in setting_warnings({"lmo": 4})["lmo"]
