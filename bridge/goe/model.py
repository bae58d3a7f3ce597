"""The charger-side data model: decoded status in SI units, intents, errors.

Pure: nothing here imports aiohttp or aiomqtt, nothing awaits.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: JSON-like value as it travels to a charger (`amp=16`, `frc=2`, `alw=false`).
WireValue = int | float | bool | str | None


class ApiVersion(enum.StrEnum):
    V1 = "v1"
    V2 = "v2"


# Keys that carry secrets. They are dropped at decode time so they can never reach a
# topic, a log line or `goe-bridge decode` output (docs/design.md#secrets).
SECRET_KEYS = frozenset(
    {
        "wke",  # WiFi key (v1)
        "wak",  # WiFi AP key
        "mck",  # MQTT key
        "cak",  # cloud API key (v2)
        "mcu",  # MQTT broker URL, may embed credentials
        "mqcc",  # MQTT client certificate
        "mqck",  # MQTT client key
        "mqss",  # MQTT server certificate
        "dll",  # data-export link carrying a token
        "wifis",  # list of WiFi networks with their keys (v2)
        "cwe",
        # v1 RFID card UIDs: a UID is enough to clone a card (the fixtures mask them too).
        *("rca", "rcr", "rcd", "rc4", "rc5", "rc6", "rc7", "rc8", "rc9", "rc1"),
    }
)

CAR_STATES: Mapping[int, str] = {
    0: "unknown",
    1: "idle",
    2: "charging",
    3: "waiting_for_car",
    4: "complete",
    5: "error",
    6: "initializing",
}

# go-e `err`. Codes 0-10 agree between the v1 doc, apikeys-en.md and the 59.4-60.4 exports;
# from 11 up the two v2 lists disagree (docs/protocol/go-e.md#enums), so those stay numeric
# ("unknown").
ERRORS_V1: Mapping[int, str] = {0: "none", 1: "rccb", 3: "phase", 8: "no_ground", 10: "internal"}
ERRORS_V2: Mapping[int, str] = {
    0: "none",
    1: "fi_ac",
    2: "fi_dc",
    3: "phase",
    4: "overvolt",
    5: "overamp",
    6: "diode",
    7: "pp_invalid",
    8: "gnd_invalid",
    9: "contactor_stuck",
    10: "contactor_miss",
}

FORCE_STATES: Mapping[int, str] = {0: "neutral", 1: "off", 2: "on"}
FORCE_CODES: Mapping[str, int] = {word: code for code, word in FORCE_STATES.items()}

# modelStatus 22 NotChargingBecauseSimulateUnplugging, 23 NotChargingBecausePhaseSwitch
# (60.4 export): where the firmware reports them, they say so directly (055.8 stopped
# setting 23 during a switch, go-eCharger-API-v2 #194).
SWITCH_MODEL_STATUS = frozenset({22, 23})

# modelStatus, "reason why we allow charging or not right now", named as in the newest key
# export, go-eCharger-API-v2 API_KEYS_FIRMWARE/apikeys_Firmware_60.4_sorted.md (copied to
# tests/fixtures/goe/apikeys-60.4-modelStatus.md, which a test compares this table with).
# The older apikeys-en.md differs in 0 (NotCharging…), 2 (…AccessControlWait), 13/14/16
# (…FallbackGoE…), 38 (…Undervoltage) and lacks 36-41; the newer export wins.
MODEL_STATUS: Mapping[int, str] = {
    0: "charging_because_no_charge_ctrl_data",
    1: "not_charging_because_overtemperature",
    2: "not_charging_because_access_control",
    3: "charging_because_force_state_on",
    4: "not_charging_because_force_state_off",
    5: "not_charging_because_scheduler",
    6: "not_charging_because_energy_limit",
    7: "charging_because_awattar_price_low",
    8: "charging_because_automatic_stop_test_ladung",
    9: "charging_because_automatic_stop_not_enough_time",
    10: "charging_because_automatic_stop",
    11: "charging_because_automatic_stop_no_clock",
    12: "charging_because_pv_surplus",
    13: "charging_because_fallback_v2_default",
    14: "charging_because_fallback_v2_scheduler",
    15: "charging_because_fallback_default",
    16: "not_charging_because_fallback_v2_awattar",
    17: "not_charging_because_fallback_awattar",
    18: "not_charging_because_fallback_automatic_stop",
    19: "charging_because_car_compatibility_keep_alive",
    20: "charging_because_charge_pause_not_allowed",
    22: "not_charging_because_simulate_unplugging",
    23: "not_charging_because_phase_switch",
    24: "not_charging_because_min_pause_duration",
    26: "not_charging_because_error",
    27: "not_charging_because_load_management_doesnt_want",
    28: "not_charging_because_ocpp_doesnt_want",
    29: "not_charging_because_reconnect_delay",
    30: "not_charging_because_adapter_blocking",
    31: "not_charging_because_underfrequency_control",
    32: "not_charging_because_unbalanced_load",
    33: "charging_because_discharging_pv_battery",
    34: "not_charging_because_grid_monitoring",
    35: "not_charging_because_ocpp_fallback",
    36: "not_charging_because_floor_detected",
    37: "not_charging_because_ocpp_inoperable",
    38: "not_charging_because_undervoltage_control",
    39: "not_charging_because_zero_setpoint",
    40: "not_charging_because_initializing",
    41: "not_charging_because_failsafe_limit",
}


class ChargerError(Exception):
    """The one error family the charger side raises."""


class ChargerUnavailable(ChargerError):
    """The charger could not be reached or its answer could not be decoded."""


class CodecError(ChargerUnavailable):
    """A payload that cannot be converted. Per the v1 spec this makes the poll a
    communication error, never a crash."""


class WriteRejected(ChargerError):
    """The charger answered a write but did not accept it; carries the charger's text."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ChargerStatus:
    """One decoded charger status in SI units. ``None`` = the API did not report it."""

    api_version: ApiVersion
    # state
    car_state: str | None = None
    car: int | None = None
    plugged: bool | None = None
    charging: bool | None = None
    allow_charging: bool | None = None
    force_state: str | None = None
    error: str | None = None
    error_code: int | None = None
    model_status: str | None = None
    model_status_code: int | None = None
    # current limits
    current_limit_a: int | None = None
    effective_current_a: float | None = None
    max_current_a: int | None = None
    cable_current_a: int | None = None
    # power
    power_w: float | None = None
    power_l1_w: float | None = None
    power_l2_w: float | None = None
    power_l3_w: float | None = None
    power_n_w: float | None = None
    # currents, voltages
    current_l1_a: float | None = None
    current_l2_a: float | None = None
    current_l3_a: float | None = None
    voltage_l1_v: float | None = None
    voltage_l2_v: float | None = None
    voltage_l3_v: float | None = None
    voltage_n_v: float | None = None
    # power factors
    power_factor_l1_pct: float | None = None
    power_factor_l2_pct: float | None = None
    power_factor_l3_pct: float | None = None
    power_factor_n_pct: float | None = None
    # phases
    phases_in_use: int | None = None
    phases: int | str | None = None  # 1, 3, or "auto" (psm 0)
    phase_l1_available: bool | None = None
    phase_l2_available: bool | None = None
    phase_l3_available: bool | None = None
    # energy
    energy_total_wh: float | None = None
    # v2: from `eto` since plug-in (goe.derive.SessionEnergy); v1: `dws`
    energy_session_wh: float | None = None
    # the charger's own session counter (`wh` / `dws`), which resets on a V3+ phase switch
    energy_session_charger_wh: float | None = None
    # access: `acs` (v2) "open" / "wait" / "evcms"; a session is authorised when `trx` is
    # not null (0 = without card)
    access_control: str | None = None
    session_authorized: bool | None = None
    # an all-zero `nrg` while charging (goe.derive.meter_fault)
    meter_fault: bool | None = None
    # device
    temperature_c: float | None = None
    firmware: str | None = None
    serial: str | None = None
    hardware: str | None = None
    variant_kw: int | None = None
    rfid_card: str | None = None
    wifi_rssi_dbm: int | None = None
    frequency_hz: float | None = None
    # how old the data was when read (go-e cloud only: v1 `age`, v2 `last-modified`)
    data_age_s: float | None = None
    # every key the charger sent, secrets removed; never used for control decisions
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # Values the decoder could not read and left out (the key and why): one odd value does
    # not cost the whole poll (see codec_common.Lenient).
    dropped: tuple[str, ...] = field(default=(), compare=False)

    def fields(self) -> dict[str, Any]:
        """The reported fields (absent ones left out), as published and printed."""
        # Called for every poll of every charger: a plain loop over the precomputed names
        # (dataclasses.fields() per call showed in the profile, bench/RESULTS.md).
        out: dict[str, Any] = {"api_version": self.api_version.value}
        for name in _VALUE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @property
    def firmware_major(self) -> int | None:
        return firmware_major(self.firmware)


FIELD_NAMES: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(ChargerStatus) if f.name not in ("raw", "dropped")
)
_VALUE_FIELDS = FIELD_NAMES[1:]  # every field but api_version, the one enum
assert FIELD_NAMES[0] == "api_version"
_ALL_FIELDS = tuple(f.name for f in dataclasses.fields(ChargerStatus))
_FIELD_SET = frozenset(_ALL_FIELDS)


def evolve(status: ChargerStatus, **changes: Any) -> ChargerStatus:
    """`dataclasses.replace` for the per-poll path (session energy on every poll while
    charging): a copy slot by slot, half the time of replace's __init__ with every field
    as a keyword (bench/RESULTS.md). No __post_init__ exists to skip."""
    unknown = changes.keys() - _FIELD_SET
    if unknown:
        raise TypeError(f"ChargerStatus has no field {sorted(unknown)[0]!r}")
    new = object.__new__(ChargerStatus)
    put = object.__setattr__
    for name in _ALL_FIELDS:
        put(new, name, changes[name] if name in changes else getattr(status, name))
    return new


# A firmware version is at most this many digits a part: "051.8", "56.9", "60.5". A longer
# run of digits is no version (and int() of 4,300+ digits raises).
_VERSION = re.compile(r"\s{0,8}([0-9]{1,6})(?:\.([0-9]{1,6}))?(?![0-9])")


def firmware_version(fwv: str | None) -> tuple[int, int] | None:
    """(major, minor) of a go-e firmware string: "051.8"→(51, 8), "56.9"→(56, 9),
    "040"→(40, 0), "35.6-1-ga0d44e5"→(35, 6) (the format drifts: docs/protocol/go-e.md#firmware);
    None when it does not start with a version of ASCII digits. Never raises: the string comes
    from the charger, or from anyone answering its unauthenticated HTTP on the LAN."""
    if not isinstance(fwv, str):
        return None
    match = _VERSION.match(fwv)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def firmware_major(fwv: str | None) -> int | None:
    """Leading integer of a go-e firmware string: "033"→33, "040.0"→40, "56.9"→56,
    "35.6-1-ga0d44e5"→35; None for anything else ("²", "56.¹" is 56, 5,000 digits)."""
    version = firmware_version(fwv)
    return version[0] if version else None


def firmware_at_least(fwv: str | None, since: tuple[int, int]) -> bool | None:
    """Whether `fwv` is `since` or later; None when the version cannot be read."""
    version = firmware_version(fwv)
    return None if version is None else version >= since


# Firmware gates (docs/protocol/go-e.md#firmware-gates). User reports, not go-e statements:
# `psm` (phase switch mode) from 051.8: go-eCharger-API-v2 #58, one user comment.
PSM_SINCE = (51, 8)
# `psm=0` (automatic phase switching) from 055.5: syssi/homeassistant-goecharger-mqtt #89,
# one user report on 0.55.5-beta.
PSM_AUTO_SINCE = (55, 5)
# `ids` (the PV surplus input) from 055.6: syssi/homeassistant-goecharger-mqtt PR #104
# (its README: "requires firmware 0.55.6 or newer").
IDS_SINCE = (55, 6)
# MQTT writes answered on `<key>/result` from 051.5 (go-eCharger-API-v2 mqtt-de.md).
MQTT_RESULT_SINCE = (51, 5)


@dataclass(frozen=True, slots=True)
class Target:
    """What a controller wants: allow charging, at which current, on how many phases.

    ``current_a`` below 6 A means stop (docs/design.md#control); ``None`` = leave that part as it
    is.
    """

    allow: bool | None
    current_a: float | None = None
    phases: int | str | None = None  # 1, 3, or "auto" (psm 0)
