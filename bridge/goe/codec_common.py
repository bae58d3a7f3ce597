"""Conversions both codecs share: typed reads of go-e keys with clear errors, and every
documented unit difference between API v1 and v2 in one table (docs/protocol/go-e.md#keys).

Pure: no I/O, no await.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from .. import jsontext
from .model import CAR_STATES, SECRET_KEYS, ApiVersion, CodecError

T = TypeVar("T")

NRG_LEN = 16

# nrg index → (field, v1 factor to SI, v2 factor to SI). go-e API v1 EN doc: currents in
# 0.1 A, phase powers in 0.1 kW, total power in 0.01 kW; v2 (evcc types2.go, openHAB) V/A/W.
NRG_LAYOUT: tuple[tuple[str, float, float], ...] = (
    ("voltage_l1_v", 1, 1),
    ("voltage_l2_v", 1, 1),
    ("voltage_l3_v", 1, 1),
    ("voltage_n_v", 1, 1),
    ("current_l1_a", 0.1, 1),
    ("current_l2_a", 0.1, 1),
    ("current_l3_a", 0.1, 1),
    ("power_l1_w", 100, 1),
    ("power_l2_w", 100, 1),
    ("power_l3_w", 100, 1),
    ("power_n_w", 100, 1),
    ("power_w", 10, 1),
    ("power_factor_l1_pct", 1, 1),
    ("power_factor_l2_pct", 1, 1),
    ("power_factor_l3_pct", 1, 1),
    ("power_factor_n_pct", 1, 1),
)

_NRG_NAMES = tuple(layout[0] for layout in NRG_LAYOUT)
_NRG_FACTORS = {
    ApiVersion.V1: tuple(layout[1] for layout in NRG_LAYOUT),
    ApiVersion.V2: tuple(layout[2] for layout in NRG_LAYOUT),
}

# A phase counts as "in use" from this current on; below it is sensor noise.
PHASE_IN_USE_A = 0.5


def public_raw(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload without secret keys (docs/design.md#secrets: never published, never logged)."""
    if SECRET_KEYS.isdisjoint(payload):
        # the polls: no secret in them (a copy at C speed, not a loop over 119 keys)
        return dict(payload)
    return {k: v for k, v in payload.items() if k not in SECRET_KEYS}


def _to_float(value: int | float) -> float:
    """float(), where an integer too large for a float (JSON allows any number of digits)
    is infinite, not an OverflowError escaping the codec."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _bad(key: str, expected: str, value: Any) -> CodecError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return CodecError(f"{key}: expected {expected}, got {shown}")


def as_int(payload: Mapping[str, Any], key: str) -> int | None:
    """An integer that v1 sends as a string ("16") and v2 as a number; null = absent."""
    if key not in payload or payload[key] is None:
        return None
    value = payload[key]
    if isinstance(value, bool):
        raise _bad(key, "an integer", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        # ASCII digits only: str.isdigit() also takes "²" and "١٦"
        if text.lstrip("-").isascii() and text.lstrip("-").isdigit():
            try:
                return int(text)
            except ValueError:  # "--5", or 4,300 digits and more (sys.int_info)
                pass
    raise _bad(key, "an integer", value)


def as_number(payload: Mapping[str, Any], key: str) -> float | None:
    if key not in payload or payload[key] is None:
        return None
    value = payload[key]
    if isinstance(value, bool):
        raise _bad(key, "a number", value)
    if isinstance(value, int | float):
        number = _to_float(value)
    elif isinstance(value, str):
        try:
            number = jsontext.parse_number(value)
        except ValueError:
            raise _bad(key, "a number", value) from None
    else:
        raise _bad(key, "a number", value)
    if not math.isfinite(number):
        raise _bad(key, "a finite number", value)
    return number


def as_bool(payload: Mapping[str, Any], key: str) -> bool | None:
    """v1 sends "0"/"1", v2 true/false."""
    if key not in payload or payload[key] is None:
        return None
    value = payload[key]
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip() in ("0", "1"):
        return value.strip() == "1"
    raise _bad(key, "0/1 or true/false", value)


# Identity strings (`fwv`, `sse`, `typ`) are short: "56.9", "072246", "go-eCharger_V5".
IDENTITY_MAX = 32


def as_identity(payload: Mapping[str, Any], key: str) -> str | None:
    """A short printable ASCII string: anything else (100 kB, control characters) is no
    firmware version or serial, and left out like any other value that cannot be read."""
    text = as_text(payload, key)
    if text is None:
        return None
    if len(text) > IDENTITY_MAX or not (text.isascii() and text.isprintable()):
        raise _bad(key, f"a printable string of at most {IDENTITY_MAX} characters", text)
    return text


def as_text(payload: Mapping[str, Any], key: str) -> str | None:
    if key not in payload or payload[key] is None:
        return None
    value = payload[key]
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _bad(key, "a string", value)


_PLAIN_NUMBERS = frozenset({int, float})


def as_number_list(payload: Mapping[str, Any], key: str) -> list[float] | None:
    if key not in payload or payload[key] is None:
        return None
    value = payload[key]
    if not isinstance(value, list):
        raise _bad(key, "an array of numbers", value)
    if all(type(item) in _PLAIN_NUMBERS for item in value):  # the common case (not bool)
        try:
            out = list(map(float, value))
        except OverflowError:  # an integer too large for a float: the slow path says so
            pass
        else:
            if all(map(math.isfinite, out)):
                return out
    return [_element(key, i, item) for i, item in enumerate(value)]


def _element(key: str, index: int, item: Any) -> float:
    if isinstance(item, bool) or not isinstance(item, int | float | str):
        raise _bad(f"{key}[{index}]", "a number", item)
    try:
        number = jsontext.parse_number(item) if isinstance(item, str) else _to_float(item)
    except ValueError:
        raise _bad(f"{key}[{index}]", "a number", item) from None
    if not math.isfinite(number):
        raise _bad(f"{key}[{index}]", "a finite number", item)
    return number


# The V3 legacy API v1 emulation of fw 52.2 sends currents in A and powers in W, not in 0.1 A,
# 0.1 kW and 0.01 kW (go-eCharger-API-v1 #100: `[219,225,222,1,15.1,15.2,15.1,3300,3400,3400,
# 0,10300,100,100,100,0]` at ~15 A; #56 saw the same on 050). Which unit a payload uses is
# told from the values themselves: on each phase P ≈ U·I·pf.
_V1_AMPS = {"doc": 0.1, "si": 1.0}
_V1_WATTS = {"doc": 100.0, "si": 1.0}
# P/(U·I·pf) of the right reading is about 1; a wrong one is off by 10 or more
_UNIT_TOLERANCE = 3.0


def v1_nrg_factors(values: list[float]) -> tuple[float, ...]:
    """The API v1 scaling of this `nrg`: the documented units, or A and W where the phases'
    own P ≈ U·I·pf says so. Without current (idle) there is nothing to tell: documented."""
    best: tuple[float, str, str] | None = None
    for amps_unit, amps in _V1_AMPS.items():
        for watts_unit, watts in _V1_WATTS.items():
            error = _unit_error(values, amps, watts)
            if error is not None and (best is None or error < best[0]):
                best = (error, amps_unit, watts_unit)
    if best is None or best[0] > math.log(_UNIT_TOLERANCE):
        return _NRG_FACTORS[ApiVersion.V1]
    amps, watts = _V1_AMPS[best[1]], _V1_WATTS[best[2]]
    phase_sum = sum(values[7 + i] * watts for i in range(3))
    # the total in the unit that matches the phases' sum: 0.01 kW (10) or W (1)
    total = 1.0 if abs(values[11] - phase_sum) <= abs(values[11] * 10 - phase_sum) else 10.0
    return (1, 1, 1, 1, amps, amps, amps, watts, watts, watts, watts, total, 1, 1, 1, 1)


def _unit_error(values: list[float], amps: float, watts: float) -> float | None:
    """The worst |log(P / (U·I·pf))| over the phases that carry current; None if none."""
    worst: float | None = None
    for i in range(3):
        volts, current, power = values[i], values[4 + i] * amps, values[7 + i] * watts
        pf = values[12 + i] / 100 if 0 < values[12 + i] <= 100 else 1.0
        if volts <= 0 or current <= 0 or power <= 0:
            continue
        error = abs(math.log(power / (volts * current * pf)))
        worst = error if worst is None else max(worst, error)
    return worst


def decode_nrg(payload: Mapping[str, Any], api: ApiVersion) -> dict[str, float]:
    """nrg[16] → SI fields. Only an array of exactly 16 numbers is used (evcc types.go,
    types2.go); anything else is a communication error for this poll."""
    values = as_number_list(payload, "nrg")
    if values is None:
        return {}
    if len(values) != NRG_LEN:
        raise CodecError(f"nrg: expected {NRG_LEN} entries, got {len(values)}")
    factors = v1_nrg_factors(values) if api is ApiVersion.V1 else _NRG_FACTORS[api]
    # 0.1 * 58 = 5.800000000000001: round away float noise without losing real precision
    cleaned = [round(v * f, 6) + 0.0 for v, f in zip(values, factors, strict=True)]
    return dict(zip(_NRG_NAMES, cleaned, strict=True))


def meter_fault(car: int | None, nrg: dict[str, float]) -> bool | None:
    """An all-zero `nrg` while `car=2` is a known firmware fault (60.4, go-eCharger-API-v2
    #321): a charging car at 0 V is no measurement. Then the meter values are removed from
    `nrg` (their topics get cleared instead of showing 0 W) and the fault is reported."""
    if not nrg:
        return None
    if car == 2 and not any(nrg.values()):
        nrg.clear()
        return True
    return False


def phases_in_use(fields: Mapping[str, Any]) -> int | None:
    currents = [fields.get(f"current_l{n}_a") for n in (1, 2, 3)]
    if any(c is None for c in currents):
        return None
    return sum(1 for c in currents if c is not None and c >= PHASE_IN_USE_A)


def pha_bits_v1(payload: Mapping[str, Any]) -> list[bool] | None:
    """v1 `pha` bitmask 0b00ABCDEF: bits 0-2 L1-L3 after the contactor, bits 3-5 before it."""
    bits = as_int(payload, "pha")
    if bits is None:
        return None
    if not 0 <= bits <= 63:
        raise _bad("pha", "a bitmask 0..63", payload["pha"])
    return [bool(bits & (1 << i)) for i in range(6)]


def pha_bits_v2(payload: Mapping[str, Any]) -> list[bool] | None:
    """v2 `pha` bool[6], index i = bit i of the v1 mask."""
    if payload.get("pha") is None:
        return None
    value = payload["pha"]
    if (
        not isinstance(value, list)
        or len(value) != 6
        or not all(isinstance(v, bool) for v in value)
    ):
        raise _bad("pha", "an array of 6 booleans", value)
    return list(value)


def availability_fields(bits: Sequence[bool] | None) -> dict[str, bool]:
    if bits is None:
        return {}
    return {
        "phase_l1_available": bits[3],
        "phase_l2_available": bits[4],
        "phase_l3_available": bits[5],
    }


# `car` 1 is the only code that says "no car"; 0 (Unknown/Error), 5 (Error), 6
# (Initializing, 60.x exports) and null ("no connection to charge ctrl", 60.4 export) say
# nothing about the plug: `plugged` is then unknown, not false (an unplug edge makes openWB
# close the session, and Home Assistant automations fire on it).
PLUG_KNOWN = {1: False, 2: True, 3: True, 4: True}


def car_fields(car: int | None) -> dict[str, Any]:
    if car is None:
        return {"car_state": "unknown"}
    return {
        "car": car,
        "car_state": CAR_STATES.get(car, "unknown"),
        "plugged": PLUG_KNOWN.get(car),
        "charging": car == 2,
    }


def temperature(payload: Mapping[str, Any]) -> float | None:
    """`tmp` where the firmware has it (v1), else the hottest `tma` sensor."""
    tmp = as_number(payload, "tmp")
    if tmp is not None:
        return tmp
    sensors = as_number_list(payload, "tma")
    if sensors:
        return max(sensors)
    return None


class Lenient:
    """Decodes one field at a time: a value that cannot be read is left out and noted, so a
    `pha` that is not six booleans or a null inside `tma` does not fail the whole poll and
    make a working charger look unreachable. The core values (`car`, `nrg`) are read strictly
    by the codecs, outside of this."""

    def __init__(self) -> None:
        self.dropped: list[str] = []

    def __call__(self, read: Callable[[], T]) -> T | None:
        try:
            return read()
        except CodecError as exc:
            self.dropped.append(str(exc))
            return None

    def get(self, read: Callable[[Mapping[str, Any], str], T], payload: Mapping[str, Any],
            key: str) -> T | None:  # fmt: skip
        """`read(payload, key)`, leniently: the common case, without a lambda per value
        (a poll reads ~20 of them)."""
        try:
            return read(payload, key)
        except CodecError as exc:
            self.dropped.append(str(exc))
            return None


def check_object(payload: Any) -> None:
    if not isinstance(payload, Mapping):
        raise CodecError(f"status: expected a JSON object, got {type(payload).__name__}")


def core(payload: Mapping[str, Any], api: ApiVersion) -> tuple[dict[str, Any], dict[str, float]]:
    """The core values, read strictly (a broken `car` or `nrg` fails the poll), and the
    meter fault: the fields so far and the decoded `nrg`."""
    fields: dict[str, Any] = car_fields(as_int(payload, "car"))
    nrg = decode_nrg(payload, api)
    fields["meter_fault"] = meter_fault(fields.get("car"), nrg)
    return fields, nrg


def begin(payload: Mapping[str, Any], api: ApiVersion) -> tuple[dict[str, Any], Lenient, Any]:
    """What codec_v1's decode starts with: the payload checked, the core values, `alw`;
    returns the fields so far, the lenient reader for the rest, and the decoded `nrg`.
    codec_v2 reads the same reader by reader (codec_v2.READERS, for its Decoder)."""
    check_object(payload)
    soft = Lenient()  # one odd value costs that value, not the poll
    fields, nrg = core(payload, api)
    fields["allow_charging"] = soft.get(as_bool, payload, "alw")
    return fields, soft, nrg
