"""Codec tables over every recorded payload, with the expected SI values written out."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.goe import codec_v1, codec_v2, detect
from bridge.goe.model import SECRET_KEYS, ApiVersion, CodecError, WriteRejected
from tests.conftest import fixture_path, load_fixture

IDLE_NRG_ZERO = {
    "power_w": 0.0, "power_l1_w": 0.0, "power_l2_w": 0.0, "power_l3_w": 0.0, "power_n_w": 0.0,
    "current_l1_a": 0.0, "current_l2_a": 0.0, "current_l3_a": 0.0,
    "power_factor_l1_pct": 0.0, "power_factor_l2_pct": 0.0, "power_factor_l3_pct": 0.0,
    "power_factor_n_pct": 0.0, "phases_in_use": 0, "meter_fault": False,
}  # fmt: skip

EXPECTED: dict[str, dict[str, Any]] = {
    "v1-status-fw033-idle.json": {
        "api_version": "v1", "car_state": "idle", "car": 1, "plugged": False, "charging": False,
        "allow_charging": True, "error": "none", "error_code": 0, "current_limit_a": 10,
        "max_current_a": 16, "voltage_l1_v": 227.0, "voltage_l2_v": 224.0, "voltage_l3_v": 222.0,
        "voltage_n_v": 2.0, "phase_l1_available": True, "phase_l2_available": True,
        "phase_l3_available": True, "energy_total_wh": 0.0, "energy_session_wh": 0.0,
        "temperature_c": 7.0, "firmware": "033", "serial": "009823", **IDLE_NRG_ZERO,
    },
    "v1-status-fw041-finished.json": {
        "api_version": "v1", "car_state": "complete", "car": 4, "plugged": True,
        "charging": False, "allow_charging": True, "error": "none", "error_code": 0,
        "current_limit_a": 6, "max_current_a": 32, "cable_current_a": 32,
        "voltage_l1_v": 221.0, "voltage_l2_v": 0.0, "voltage_l3_v": 0.0, "voltage_n_v": 2.0,
        "phase_l1_available": True, "phase_l2_available": False, "phase_l3_available": False,
        # eto "95930" in 0.1 kWh; dws "686812" deca-watt-seconds / 360
        "energy_total_wh": 9_593_000.0, "energy_session_wh": 1907.811,
        "temperature_c": 16.0, "firmware": "041.0", "serial": "005434", **IDLE_NRG_ZERO,
    },
    "seed-v1-example.json": {
        "api_version": "v1", "car_state": "idle", "car": 1, "plugged": False, "charging": False,
        "allow_charging": True, "error": "none", "error_code": 0, "current_limit_a": 10,
        "max_current_a": 32,
        # pha "8" (only L1) and nrg[3]=235 > nrg[0]=2: the app's L1-on-N rule.
        # The app copies (N keeps its 235 V), it does not swap.
        "voltage_l1_v": 235.0, "voltage_l2_v": 0.0, "voltage_l3_v": 0.0, "voltage_n_v": 235.0,
        "phase_l1_available": True, "phase_l2_available": False, "phase_l3_available": False,
        "energy_total_wh": 12_000.0, "energy_session_wh": 0.0, "temperature_c": 30.0,
        "firmware": "020-rc1", "serial": "000000", **IDLE_NRG_ZERO,
    },
    "cloud-v1-status.json": {
        "api_version": "v1", "car_state": "idle", "car": 1, "plugged": False, "charging": False,
        "allow_charging": True, "error": "none", "error_code": 0, "current_limit_a": 10,
        "max_current_a": 32, "voltage_l1_v": 227.0, "voltage_l2_v": 230.0,
        "voltage_l3_v": 229.0, "voltage_n_v": 1.0, "phase_l1_available": True,
        "phase_l2_available": True, "phase_l3_available": True, "energy_total_wh": 594_000.0,
        "energy_session_wh": 0.0, "temperature_c": 35.0, "firmware": "033", "serial": "012345",
        **IDLE_NRG_ZERO,
    },
    "v2-status-full-idle.json": {
        "api_version": "v2", "car_state": "idle", "car": 1, "plugged": False, "charging": False,
        "allow_charging": True, "force_state": "neutral", "error": "none", "error_code": 0,
        "model_status": "charging_because_awattar_price_low", "model_status_code": 7,
        "current_limit_a": 20, "effective_current_a": 10.0, "max_current_a": 16,
        "voltage_l1_v": 232.0, "voltage_l2_v": 231.0, "voltage_l3_v": 232.0, "voltage_n_v": 1.0,
        "phases": 3, "phase_l1_available": True, "phase_l2_available": True,
        "phase_l3_available": True, "energy_total_wh": 0.0, "energy_session_wh": 0.0,
        "temperature_c": 27.5, "firmware": "56.9", "hardware": "go-eCharger", "variant_kw": 11,
        "wifi_rssi_dbm": -66, "frequency_hz": 49.94400024, "access_control": "open",
        # acs 0 (open): every session is authorised, without a transaction (trx null)
        "session_authorized": True, **IDLE_NRG_ZERO,
    },
}  # fmt: skip


for _expected in EXPECTED.values():  # go-e's own counter, before SessionEnergy (derive.py)
    _expected["energy_session_charger_wh"] = _expected["energy_session_wh"]


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=lambda n: n.removesuffix(".json"))
def test_fixture_decodes_to_expected_si_values(name: str) -> None:
    status, _ = detect.decode_text(fixture_path(name).read_text("utf-8"))
    assert status.fields() == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=lambda n: n.removesuffix(".json"))
def test_no_secret_survives_decoding(name: str) -> None:
    status, _ = detect.decode_text(fixture_path(name).read_text("utf-8"))
    assert not SECRET_KEYS & set(status.raw)
    for value in status.raw.values():
        assert value != "****"
    # unknown keys are kept (minus secrets)
    payload = load_fixture(name)
    payload = payload.get("data", payload)
    assert set(status.raw) == set(payload) - SECRET_KEYS


def test_mqtt_capture_replays_to_the_full_status() -> None:
    status, meta = detect.decode_text(fixture_path("v2-mqtt-capture-excerpt.txt").read_text())
    expected = load_fixture("v2-status-full-idle.json")
    assert meta == {"source": "mqtt-v2-capture"}
    assert dict(status.raw) == {k: v for k, v in expected.items() if k not in SECRET_KEYS}


def test_cloud_wrapper_reports_age() -> None:
    _, meta = detect.decode_text(fixture_path("cloud-v1-status.json").read_text())
    assert meta == {"source": "cloud-v1", "data_age_s": 0.347}


# ------------------------------------------------------------------- charging payloads

V2_CHARGING_1P = [227.2, 228.2, 230.0, 2.5, 13.53, 0, 0, 3042.1, 0, 0, 0, 3042.1, 98.96, 0, 0, 100]
V1_LEGACY_V3 = [226, 227, 226, 1, 58, 0, 0, 13, 0, 0, 0, 136, 100, 1, 1, 84]


def test_v2_charging_single_phase() -> None:
    # shaped after evcc #10452 (docs/protocol/go-e.md#nrg)
    status = codec_v2.decode(
        {"car": 2, "alw": True, "frc": 2, "nrg": V2_CHARGING_1P, "psm": 1, "acu": 14,
         "pha": [True, False, False, True, True, True], "modelStatus": 3, "eto": 12345678,
         "wh": 4321.5, "trx": 1, "cards": [{"name": "Anna", "energy": 0, "cardId": True}]}
    )  # fmt: skip
    assert status.car_state == "charging" and status.charging and status.plugged
    assert status.force_state == "on"
    assert status.current_l1_a == 13.53
    assert status.power_w == 3042.1
    assert status.power_l1_w == 3042.1
    assert status.power_factor_l1_pct == 98.96
    assert status.phases_in_use == 1
    assert status.phases == 1
    assert status.energy_total_wh == 12345678
    assert status.energy_session_wh == 4321.5
    assert status.model_status == "charging_because_force_state_on"
    assert status.rfid_card == "Anna"


def test_v1_units_on_the_v3_legacy_api() -> None:
    # evcc PR #1609, fw 051.4: 5.8 A and 1360 W total; pha 57 with fsp 1
    status = codec_v1.decode(
        {"car": "2", "alw": "1", "nrg": V1_LEGACY_V3, "pha": "57", "fsp": "1", "eto": "130"}
    )
    assert status.current_l1_a == 5.8
    assert status.power_l1_w == 1300.0
    assert status.power_w == 1360.0
    assert status.phases_in_use == 1
    # fsp is the charging logic's result, "always false, use psm": not the phase setting
    assert status.phases is None
    assert status.energy_total_wh == 13_000.0
    assert status.hardware == "V3+ (legacy API v1)"
    with_psm = codec_v1.decode({"car": "2", "nrg": V1_LEGACY_V3, "fsp": "0", "psm": "1"})
    assert with_psm.phases == 1


def test_model_status_names_follow_the_newest_key_export() -> None:
    """Every code and name as in go-e's 60.4 key export (fixture copied from it)."""
    import re

    from bridge.goe.model import MODEL_STATUS

    row = fixture_path("apikeys-60.4-modelStatus.md").read_text("utf-8")
    exported = {
        int(code): re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
        for name, code in re.findall(r"([A-Za-z0-9]+)=(\d+)", row)
    }
    assert exported[41] == "not_charging_because_failsafe_limit"
    assert dict(MODEL_STATUS) == exported


def test_v1_l1_on_n_rule_copies_like_the_app() -> None:
    # API v1 EN doc, nrg "App logic": nrg[0]=nrg[3]; nrg[7]=nrg[10]; nrg[12]=nrg[15]
    nrg = [2, 0, 0, 231, 0, 0, 0, 0, 0, 0, 37, 370, 0, 0, 0, 99]
    status = codec_v1.decode({"car": "2", "pha": "9", "nrg": nrg})
    assert (status.voltage_l1_v, status.power_l1_w, status.power_factor_l1_pct) == (231, 3700, 99)
    assert (status.voltage_n_v, status.power_n_w, status.power_factor_n_pct) == (231, 3700, 99)


def test_unknown_enum_values_pass_through_as_numbers() -> None:
    status = codec_v2.decode({"car": 9, "err": 23, "modelStatus": 99, "frc": 7})
    assert (status.car, status.car_state) == (9, "unknown")
    assert (status.error_code, status.error) == (23, "unknown")
    assert (status.model_status_code, status.model_status) == (99, "unknown")
    assert status.force_state == "unknown_7"


def test_v2_null_values_are_absent() -> None:
    status = codec_v2.decode({"car": None, "cbl": None, "pha": None, "acu": None, "fhz": 0})
    assert status.fields() == {"api_version": "v2", "car_state": "unknown"}


@pytest.mark.parametrize(
    ("decode", "payload", "error"),
    [
        pytest.param(codec_v1.decode, {"car": "x"}, "car: expected an integer, got 'x'", id="v1-car-text"),
        pytest.param(codec_v1.decode, {"nrg": [1, 2, 3]}, "nrg: expected 16 entries, got 3", id="v1-nrg-short"),
        pytest.param(codec_v1.decode, {"nrg": "0,0"}, "nrg: expected an array of numbers, got '0,0'", id="v1-nrg-text"),
        pytest.param(codec_v1.decode, {"nrg": [0] * 15 + ["a"]}, "nrg[15]: expected a number, got 'a'", id="v1-nrg-item"),
        pytest.param(codec_v1.decode, ["car"], "status: expected a JSON object, got list", id="v1-list"),
        pytest.param(codec_v2.decode, {"car": True}, "car: expected an integer, got True", id="v2-car-bool"),
        pytest.param(codec_v2.decode, {"car": {"a": 1}}, "car: expected an integer, got {'a': 1}", id="v2-car-object"),
        pytest.param(codec_v2.decode, {"nrg": [None] * 16}, "nrg[0]: expected a number, got None", id="v2-nrg-null"),
        pytest.param(codec_v2.decode, "text", "status: expected a JSON object, got str", id="v2-text"),
        # JSON allows a number of any length; float() of it raised OverflowError, which no
        # caller expected: the poller's task, and with it the daemon, ended
        pytest.param(codec_v2.decode, {"nrg": [10**400] + [0] * 15}, "nrg[0]: expected a finite number, got " + repr(10**400)[:57] + "...", id="v2-nrg-huge-int"),
        # int() of these raised ValueError out of the codec, as OverflowError above
        pytest.param(codec_v1.decode, {"car": "--2"}, "car: expected an integer, got '--2'", id="v1-car-two-signs"),
        pytest.param(codec_v1.decode, {"car": "2" * 5000}, "car: expected an integer, got " + repr("2" * 5000)[:57] + "...", id="v1-car-5000-digits"),
    ],
)  # fmt: skip
def test_malformed_core_values_fail_the_poll_with_their_exact_error(
    decode: Any, payload: Any, error: str
) -> None:
    with pytest.raises(CodecError) as info:
        decode(payload)
    assert str(info.value) == error


@pytest.mark.parametrize(
    ("decode", "payload", "error"),
    [
        pytest.param(codec_v1.decode, {"alw": "2"}, "alw: expected 0/1 or true/false, got '2'", id="v1-alw-2"),
        pytest.param(codec_v1.decode, {"pha": "99"}, "pha: expected a bitmask 0..63, got '99'", id="v1-pha-range"),
        pytest.param(codec_v1.decode, {"eto": "1e999"}, "eto: expected a finite number, got '1e999'", id="v1-eto-inf"),
        pytest.param(codec_v2.decode, {"pha": [True]}, "pha: expected an array of 6 booleans, got [True]", id="v2-pha-short"),
        pytest.param(codec_v2.decode, {"amp": 16.5}, "amp: expected an integer, got 16.5", id="v2-amp-float"),
        pytest.param(codec_v2.decode, {"fwv": []}, "fwv: expected a string, got []", id="v2-fwv-list"),
        pytest.param(codec_v2.decode, {"fhz": 10**400}, "fhz: expected a finite number, got " + repr(10**400)[:57] + "...", id="v2-fhz-huge-int"),
        pytest.param(codec_v2.decode, {"amp": "--5"}, "amp: expected an integer, got '--5'", id="v2-amp-two-signs"),
        pytest.param(codec_v1.decode, {"amp": "1" * 5000}, "amp: expected an integer, got " + repr("1" * 5000)[:57] + "...", id="v1-amp-5000-digits"),
    ],
)  # fmt: skip
def test_one_odd_value_is_dropped_with_its_exact_error_and_the_rest_stands(
    decode: Any, payload: Any, error: str
) -> None:
    status = decode({"car": "2" if decode is codec_v1.decode else 2, **payload})
    assert status.dropped == (error,)
    assert status.car_state == "charging"  # the poll still counts


def test_a_null_inside_tma_does_not_cost_the_poll() -> None:
    status = codec_v2.decode({"car": 2, "tma": [None, 27.5], "amp": 16})
    assert status.current_limit_a == 16 and status.car_state == "charging"


# --------------------------------------------------------------------------- encoders


def test_v1_commands_wire_form() -> None:
    assert codec_v1.encode_command("amx", 16) == "amx=16"
    assert codec_v1.encode_command("alw", False) == "alw=0"
    assert codec_v1.encode_command("alw", 1) == "alw=1"
    with pytest.raises(ValueError, match="not a key the bridge writes"):
        codec_v1.encode_command("wke", 1)
    with pytest.raises(ValueError, match="integers"):
        codec_v1.encode_command("amx", 16.5)


def test_v2_commands_are_json_literals() -> None:
    assert codec_v2.encode_set({"amp": 16, "frc": 2}) == {"amp": "16", "frc": "2"}
    assert codec_v2.encode_set({"psm": 2}) == {"psm": "2"}
    assert codec_v2.encode_set({"trx": None}) == {"trx": "null"}
    with pytest.raises(ValueError, match="not a key the bridge writes"):
        codec_v2.encode_set({"ama": 32})


def test_v2_set_answer_check() -> None:
    codec_v2.check_set_answer({"amp": 6, "frc": 2}, {"amp": True, "frc": True})
    with pytest.raises(WriteRejected) as info:
        codec_v2.check_set_answer(
            {"amp": 5}, {"amp": "amp: failed: Value 5 exceeds range 6 to 32 (5)"}
        )
    assert info.value.key == "amp"
    assert info.value.reason == "amp: failed: Value 5 exceeds range 6 to 32 (5)"
    with pytest.raises(WriteRejected, match="answered None"):
        codec_v2.check_set_answer({"frc": 2}, {"amp": True})


def test_v1_verify_uses_amp_for_amx() -> None:
    assert codec_v1.verify("amx", 10, {"amp": "10"})
    assert not codec_v1.verify("amx", 10, {"amp": "16"})
    assert codec_v1.verify("alw", False, {"alw": "0"})
    assert not codec_v1.verify("alw", True, {})


@pytest.mark.parametrize(
    ("fwv", "major"),
    [
        ("033", 33),
        ("040.0", 40),
        ("051.4", 51),
        ("56.9", 56),
        ("35.6-1-ga0d44e5", 35),
        ("", None),
        ("x1", None),
    ],
)
def test_firmware_major(fwv: str, major: int | None) -> None:
    from bridge.goe.model import firmware_major

    assert firmware_major(fwv) == major


def test_api_detection_from_payload() -> None:
    assert detect.api_of({"car": "1"}) is ApiVersion.V1
    assert detect.api_of({"alw": True}) is ApiVersion.V2
    assert detect.api_of({"fwv": "60.5"}) is ApiVersion.V2
    assert detect.api_of({"x": 1}) is None
    with pytest.raises(detect.DecodeFailed, match="pass --api"):
        detect.decode_text('{"x": 1}')


@pytest.mark.parametrize(("psm", "phases"), [(0, "auto"), (1, 1), (2, 3), (7, None)])
def test_psm_decodes_to_phases_with_auto(psm: int, phases: object) -> None:
    assert codec_v2.decode({"car": 1, "psm": psm}).phases == phases


@pytest.mark.parametrize(("err", "word"), [("0", "none"), ("1", "rccb"), ("3", "phase"),
                                           ("8", "no_ground"), ("10", "internal"),
                                           ("2", "internal"), ("13", "internal")])  # fmt: skip
def test_v1_error_codes_default_to_internal(err: str, word: str) -> None:
    """go-eCharger-API-v1: `err` 1 RCCB, 3 PHASE, 8 NO_GROUND, 10 INTERNAL (default)."""
    status = codec_v1.decode({"car": "1", "err": err})
    assert (status.error, status.error_code) == (word, int(err))


# go-eCharger-API-v1 #100 (fw 52.2, HW V3, the legacy API v1): currents in A, powers in W,
# verbatim from the report, at ~15 A on three phases
V1_LEGACY_52 = [219, 225, 222, 1, 15.1, 15.2, 15.1, 3300, 3400, 3400, 0, 10300, 100, 100, 100, 0]


def test_v1_legacy_52_units_are_told_from_the_values() -> None:
    """A documented v1 reading (0.1 A, 0.1 kW, 0.01 kW) of this payload is 1.5 A and 330 kW a
    phase, which plausibility drops: P ≈ U·I·pf says it is A and W."""
    status = codec_v1.decode({"car": "2", "nrg": V1_LEGACY_52, "fsp": "0", "fwv": "052.2"})
    assert (status.current_l1_a, status.current_l2_a, status.current_l3_a) == (15.1, 15.2, 15.1)
    assert (status.power_l1_w, status.power_l2_w, status.power_l3_w) == (3300, 3400, 3400)
    assert status.power_w == 10300
    assert status.phases_in_use == 3
    # the documented units stay what they are (evcc PR #1609 on 051.4: 5.8 A, 1360 W)
    documented = codec_v1.decode({"car": "2", "nrg": V1_LEGACY_V3})
    assert (documented.current_l1_a, documented.power_w) == (5.8, 1360.0)
    # without current there is nothing to tell, and nothing to scale wrongly
    idle = codec_v1.decode({"car": "1", "nrg": [230, 230, 230, 1] + [0] * 12})
    assert idle.power_w == 0 and idle.current_l1_a == 0


def test_v1_042_reads_the_current_in_effect_from_amx() -> None:
    """fw 042.0 keeps the stored value in `amp` and the one in effect in `amx`
    (go-eCharger-API-v1 #114); 040/041 mirror `amx` into `amp` and have no `amx` key."""
    assert codec_v1.decode({"car": "2", "amp": "16", "amx": "8"}).current_limit_a == 8
    assert codec_v1.decode({"car": "2", "amp": "16"}).current_limit_a == 16


def test_v1_verify_of_amx() -> None:
    assert codec_v1.verify("amx", 8, {"amp": "16", "amx": "8"})  # 042.0
    assert not codec_v1.verify("amx", 10, {"amp": "6", "amx": "6"})  # 042.0: above stored amp
    # the V3 legacy emulation answers with the new amp and the old amx (API v1 #56, #57)
    assert codec_v1.verify("amx", 13, {"amp": "13", "amx": "6"})


@pytest.mark.parametrize(("car", "state"), [(0, "unknown"), (5, "error"), (6, "initializing")])
def test_car_codes_that_say_nothing_about_the_plug(car: int, state: str) -> None:
    """`car` 0/5/6 are no unplug: `plugged` is unknown, not false (60.4 export: car
    Unknown/Error=0, Error=5, Initializing=6)."""
    status = codec_v2.decode({"car": car})
    assert status.car_state == state and status.plugged is None and status.charging is False
    assert "plugged" not in status.fields()
    null = codec_v2.decode({"car": None})
    assert null.car_state == "unknown" and null.plugged is None


def test_error_reads_none_without_an_error() -> None:
    assert codec_v2.decode({"car": 1, "err": 0}).error == "none"
    assert codec_v1.decode({"car": "1", "err": "0"}).error == "none"
    # err null: "null if no connection to charge ctrl established" (60.4 export): unknown
    assert codec_v2.decode({"car": 1, "err": None}).error is None


@pytest.mark.parametrize(
    ("acs", "trx", "authorized"),
    [(0, None, True), (0, 0, True), (1, None, False), (1, 0, True), (1, 2, True),
     (2, None, False), (None, None, False)],
)  # fmt: skip
def test_session_authorized_with_open_access(
    acs: int | None, trx: int | None, authorized: bool
) -> None:
    """acs 0 (Open): sessions need no authorisation, and `trx` stays null while a car
    charges; with Wait/EVCMS a running transaction (`trx` 0 or a card) authorises it."""
    status = codec_v2.decode({"car": 2, "acs": acs, "trx": trx})
    assert status.session_authorized is authorized
