"""The simulator's firmware profiles, each quirk as its source describes it, on a fake clock.
The bridge against each profile: tests/integration/test_firmware_profiles.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bridge.simulator import firmware, profiles
from bridge.simulator.charger import Car, SimCharger

SIMULATOR = Path(__file__).parents[2] / "bridge" / "simulator"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sim(profile: str, **kw: object) -> tuple[SimCharger, Clock]:
    clock = Clock()
    return SimCharger(profile=profile, clock=clock, **kw), clock  # type: ignore[arg-type]


def test_the_simulator_knows_go_e_not_the_bridge() -> None:
    """A wrong belief of the bridge must not become a wrong charger in the tests: nothing in
    bridge/simulator imports bridge/goe."""
    for path in sorted(SIMULATOR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom):
                module = ("." * node.level) + (node.module or "")
                assert not module.startswith(("..goe", "bridge.goe")), (path.name, module)
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("bridge.goe") for a in node.names), path.name


def test_every_profile_names_its_sources() -> None:
    for profile in profiles.PROFILES.values():
        assert profile.sources, profile.name
        assert firmware.version(profile.firmware) is not None


def test_firmware_versions_by_the_simulators_own_reading() -> None:
    assert firmware.version("051.8") == (51, 8)
    assert firmware.version("56.9") == (56, 9)
    assert firmware.version("²") is None
    assert not firmware.has("055.5", "ids") and firmware.has("055.6", "ids")
    assert not firmware.has("052.2", "psm_auto") and firmware.has("055.5", "psm_auto")


def test_042_has_its_own_amx_and_keeps_amp_stored() -> None:
    """go-eCharger-API-v1 #114, snaptec/openWB #2778."""
    charger, _ = sim("v2-042.0")
    charger.amp = charger.amp_eeprom = 16
    answer = charger.set_v1("amx=8")
    assert (answer["amp"], answer["amx"]) == ("16", "8")
    charger.amp = charger.amp_eeprom = 6
    answer = charger.set_v1("amx=10")  # above the stored value: ignored
    assert (answer["amp"], answer["amx"]) == ("6", "6")
    charger.reboot()
    assert charger.status_v1()["amx"] == "6"


@pytest.mark.parametrize("profile", ["v2-040", "v2-041"])
def test_040_041_mirror_amx_into_amp(profile: str) -> None:
    charger, _ = sim(profile)
    answer = charger.set_v1("amx=8")
    assert answer["amp"] == "8" and "amx" not in answer
    assert charger.amp_eeprom == 16  # volatile
    charger.reboot()
    assert charger.status_v1()["amp"] == "16"


def test_033_has_no_amx() -> None:
    charger, _ = sim("v2-033")
    assert charger.set_v1("amx=8")["amp"] == "16"  # evcc #2711


def test_v3_legacy_shows_amx_late() -> None:
    """go-eCharger-API-v1 #56, #57: the answer shows the new amp and the old amx."""
    charger, _ = sim("v3-051", legacy_v1=True)
    answer = charger.set_v1("amx=13")
    assert (answer["amp"], answer["amx"]) == ("13", "16")
    assert charger.status_v1()["amx"] == "13"


def test_v3_052_legacy_api_reports_amps_and_watts() -> None:
    """go-eCharger-API-v1 #100: nrg in A and W; #103: eto in Wh."""
    charger, clock = sim("v3-052", legacy_v1=True, alw_delay_s=0)
    charger.plug(Car(max_current_a=15))
    charger.set_v2({"frc": "2"})
    clock.now += 360
    status = charger.status_v1()
    assert status["nrg"][4:7] == [15.0, 15.0, 15.0]
    assert status["nrg"][7] == 3450 and status["nrg"][11] == round(charger.power_w())
    assert status["eto"] == str(int(charger.eto_wh))


def test_alw_follows_frc_after_seconds_on_051() -> None:
    """go-eCharger-API-v2 #5 on 051.4."""
    charger, clock = sim("v3-051")
    charger.set_v2({"frc": "1"})
    clock.now += 3
    assert charger.status_v2(["alw"])["alw"] is True
    clock.now += 3
    assert charger.status_v2(["alw"])["alw"] is False


def test_keys_a_firmware_does_not_have_are_absent() -> None:
    """marq24/ha-goecharger-api2 #50: unknown keys are left out of a filtered answer."""
    old, _ = sim("v3-051")
    assert "psm" not in old.status_v2(["psm", "car"])
    gemini, _ = sim("gemini")
    assert {"psm", "cbl", "hla"}.isdisjoint(gemini.status_v2())
    assert gemini.set_v2({"psm": "1"})[1]["psm"] == "psm: unknown api key"
    v055, _ = sim("v3-055.5")
    assert v055.set_v2({"ids": '{"pGrid":-3000}'})[0] == 500  # ids from 055.6
    v052, _ = sim("v3-052")
    assert v052.set_v2({"psm": "0"})[0] == 500  # psm auto from 055.5


def charging(profile: str, car: Car | None = None) -> tuple[SimCharger, Clock]:
    charger, clock = sim(profile, alw_delay_s=0, psm=2)
    charger.plug(car or Car())
    charger.set_v2({"frc": "2"})
    clock.now += 60
    charger.advance()
    assert charger.is_charging()
    return charger, clock


def test_phase_switch_car1_style() -> None:
    """go-eCharger-API-v2 #198, #248: car 1 and frc 0 while switching, then car back with
    `wh` restarted; 055.8+ does not show modelStatus 23 (#194)."""
    charger, clock = charging("v3-056")
    assert charger.status_v2(["wh"])["wh"] > 0
    charger.set_v2({"psm": "1"})
    during = charger.status_v2(["car", "frc", "modelStatus", "alw", "wh"])
    assert (during["car"], during["frc"]) == (1, 0)
    assert during["modelStatus"] != 23 and during["wh"] > 0
    clock.now += charger.phase_switch_pause_s + 0.1
    after = charger.status_v2(["car", "frc", "wh", "pha"])
    assert after["car"] == 2 and after["frc"] == 0 and after["wh"] < 1
    assert after["pha"] == [True, False, False, True, True, True]
    assert charger.active_phases() == 1


def test_phase_switch_car4_style() -> None:
    """go-eCharger-API-v2 #121: car 4 and modelStatus 23 while switching, frc untouched."""
    charger, clock = charging("v3-055.5")
    charger.set_v2({"psm": "1"})
    during = charger.status_v2(["car", "frc", "modelStatus"])
    assert during == {"car": 4, "frc": 2, "modelStatus": 23}
    clock.now += charger.phase_switch_pause_s + 0.1
    assert charger.status_v2(["car"])["car"] == 2


def test_some_cars_do_not_resume_after_a_switch() -> None:
    """go-eCharger-API-v2 #144: car 4 until re-plugged."""
    charger, clock = charging("v3-055.5", Car(resumes_after_phase_switch=False))
    charger.set_v2({"psm": "1"})
    clock.now += charger.phase_switch_pause_s + 60
    assert charger.status_v2(["car"])["car"] == 4 and not charger.is_charging()
    charger.unplug()
    charger.plug(Car())
    charger.set_v2({"frc": "2"})
    clock.now += 1
    assert charger.is_charging()


def test_plug_in_goes_through_car_3() -> None:
    charger, clock = sim("v3-056", alw_delay_s=0)
    charger.plug(Car(wake_s=3))
    assert charger.status_v2(["car"])["car"] == 3
    clock.now += 3
    assert charger.status_v2(["car"])["car"] == 2


def test_car_codes_0_5_6_and_null() -> None:
    charger, clock = sim("v4-60", alw_delay_s=0)
    charger.plug(Car())
    charger.charge_ctrl_fault(5)
    assert charger.status_v2(["car", "err"]) == {"car": 5, "err": 5}
    charger.charge_ctrl_fault("null")
    assert charger.status_v2(["car", "err"]) == {"car": None, "err": None}
    charger.charge_ctrl_fault(0)
    assert charger.status_v2(["car"])["car"] == 0
    charger.charge_ctrl_fault(None)
    charger.reboot()  # 60.x: Initializing at boot
    assert charger.status_v2(["car", "modelStatus"]) == {"car": 6, "modelStatus": 40}
    clock.now += 3
    assert charger.status_v2(["car"])["car"] == 2


def test_eco_mode_charges_on_the_surplus_and_default_mode_ignores_it() -> None:
    """syssi README: lmo=4 and fup=true; only pGrid counts; modelStatus 12."""
    charger, clock = sim("v3-056", alw_delay_s=0, lmo=4, fup=True, psm=2)
    charger.plug(Car())
    assert not charger.is_charging()
    charger.set_v2({"ids": '{"pGrid": -5000, "pPv": 6000}'})
    status = charger.status_v2(["modelStatus", "car", "nrg"])
    assert status["modelStatus"] == 12 and status["car"] == 2
    assert status["nrg"][4] == 7  # 5000 W over three phases at 230 V
    clock.now += 11  # `ids` lapses after 10 s without a refresh
    assert not charger.is_charging()
    basic, _ = sim("v3-056", alw_delay_s=0, lmo=3, fup=True)
    basic.plug(Car())
    assert basic.is_charging()  # Default mode: charges, ids or not
    assert basic.status_v2(["modelStatus"])["modelStatus"] != 12


def test_automatic_phases_in_eco_mode_toggle_at_most_once_per_mptwt() -> None:
    """psm 0 in Eco mode: three phases from `spl3` (4200 W) of surplus, at most one toggle
    per `mptwt` (600 s; 56.9 capture defaults)."""
    charger, clock = sim("v3-056", alw_delay_s=0, lmo=4, fup=True, psm=0)
    charger.plug(Car())
    assert charger.active_phases() == 1  # no surplus: its phase wish is one
    charger.set_v2({"ids": '{"pGrid": -5000}'})
    assert charger.switching() and charger.phase_switches == 1
    clock.now += 11
    charger.set_v2({"ids": '{"pGrid": -5000}'})
    assert charger.active_phases() == 3 and charger.charging_current() == 7
    charger.set_v2({"ids": '{"pGrid": -3000}'})  # one phase wanted again, mptwt not over:
    assert charger.active_phases() == 3 and not charger.is_charging()  # 4.3 A on three
    for _ in range(70):  # keep the surplus fresh until mptwt is over
        clock.now += 9
        charger.set_v2({"ids": '{"pGrid": -3000}'})
    assert charger.phase_switches == 2
    clock.now += 11
    charger.set_v2({"ids": '{"pGrid": -3000}'})
    assert charger.active_phases() == 1 and charger.charging_current() == 13


def test_pha_after_the_contactor_is_what_is_switched_through() -> None:
    """evcc PR #1609: pha 57 (mains L1-L3, L1 switched) with a 5.8 A one-phase load."""
    charger, _ = charging("v3-056", Car(phases=1))
    status = charger.status_v2(["pha", "nrg"])
    assert status["pha"] == [True, True, True, True, True, True]  # contactor closed on three
    assert status["nrg"][4:7] == [16.0, 0.0, 0.0]  # a one-phase car draws on L1 only


def test_api_lock_and_hang_last_until_reboot() -> None:
    charger, _ = sim("v3-051")
    charger.inject("api_lock", count=1)
    assert [charger.take_fault() for _ in range(3)][-1].kind == "api_lock"  # type: ignore[union-attr]
    charger.reboot()
    assert charger.take_fault() is None


def test_unknown_profile() -> None:
    with pytest.raises(ValueError, match="unknown profile 'v9'"):
        SimCharger(profile="v9")


def test_eco_mode_without_charge_pause_keeps_the_minimum() -> None:
    """acp=false: Eco mode charges on at 6 A without a surplus, modelStatus 20
    (go-eCharger-API-v2 #226, #171)."""
    charger, _ = sim("v3-056", alw_delay_s=0, lmo=4, fup=True, psm=1, acp=False)
    charger.plug(Car())
    status = charger.status_v2(["modelStatus", "car"])
    assert status == {"modelStatus": 20, "car": 2} and charger.charging_current() == 6
