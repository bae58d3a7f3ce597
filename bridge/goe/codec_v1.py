"""go-e API v1 (HW V1/V2, and the legacy emulation on V3+): status JSON → ChargerStatus,
commands → `key=value` wire form. Pure.

Source: goecharger/go-eCharger-API-v1, "go-eCharger API v1 EN.md" (docs/protocol/go-e.md#http-v1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import codec_common as c
from .codec_v2 import PSM_TO_PHASES
from .model import ERRORS_V1, ApiVersion, ChargerStatus, CodecError, WireValue

# uby = card index 1..10 → name keys, in the doc's order of the rfid cards.
CARD_NAME_KEYS = ("rna", "rnm", "rne", "rn4", "rn5", "rn6", "rn7", "rn8", "rn9", "rn1")

# Keys the bridge may send on API v1 (everything else would be a protocol error on our side).
WRITABLE = frozenset({"alw", "amx", "amp"})


def decode(payload: Mapping[str, Any]) -> ChargerStatus:
    fields, soft, nrg = c.begin(payload, ApiVersion.V1)
    err = soft.get(c.as_int, payload, "err")
    if err is not None:
        fields["error_code"] = err
        # v1 doc: "10 INTERNAL (default)": any other code is the internal error
        fields["error"] = ERRORS_V1.get(err, "internal")

    # The current in effect: `amx` where the status has its own (HW V2 on 042.0, where `amp`
    # stays the stored value: go-eCharger-API-v1 #114, MK-2001/ioBroker.go-e #238; the V3
    # legacy emulation, where it equals `amp`: evcc PR #1609), else `amp`, which 040/041
    # mirror `amx` into (go-eCharger-API-v1 #20, #37).
    amx = soft.get(c.as_int, payload, "amx")
    fields["current_limit_a"] = amx if amx is not None else soft.get(c.as_int, payload, "amp")
    fields["max_current_a"] = soft.get(c.as_int, payload, "ama")
    cable = soft.get(c.as_int, payload, "cbl")
    fields["cable_current_a"] = cable or None  # "0" = no cable limit

    bits = soft(lambda: c.pha_bits_v1(payload))
    if nrg and bits is not None:
        _apply_l1_on_n_rule(nrg, bits)
    fields.update(nrg)
    fields["phases_in_use"] = c.phases_in_use(nrg)
    fields.update(c.availability_fields(bits))

    # Only the V3+ legacy emulation carries `fsp` (API v1 DE doc, "GO-E V3" sample). It is
    # not the phase setting: "force_single_phase, the result of the charging logic"
    # (apikeys-en.md), "always false, use psm" (syssi/homeassistant-goecharger-mqtt). The
    # phase mode is `psm` where the emulation carries it, else unknown.
    if "fsp" in payload:
        fields["hardware"] = "V3+ (legacy API v1)"
        psm = soft.get(c.as_int, payload, "psm")
        if psm is not None:
            fields["phases"] = PSM_TO_PHASES.get(psm)

    eto = soft.get(c.as_number, payload, "eto")
    if eto is not None:
        # 0.1 kWh (API v1 doc). The V3 legacy emulation of 52.2 was reported to send Wh here
        # (go-eCharger-API-v1 #103, one report); one payload cannot tell, so it is not guessed.
        fields["energy_total_wh"] = eto * 100
    dws = soft.get(c.as_number, payload, "dws")
    if dws is not None:
        fields["energy_session_wh"] = round(dws / 360, 3)  # deca-watt-seconds
        fields["energy_session_charger_wh"] = fields["energy_session_wh"]

    fields["temperature_c"] = soft(lambda: c.temperature(payload))
    fields["firmware"] = soft.get(c.as_identity, payload, "fwv")
    fields["serial"] = soft.get(c.as_identity, payload, "sse")
    fields["rfid_card"] = soft(lambda: _card(payload))

    return ChargerStatus(
        api_version=ApiVersion.V1,
        raw=c.public_raw(payload),
        dropped=tuple(soft.dropped),
        **{k: v for k, v in fields.items() if v is not None},
    )


def _apply_l1_on_n_rule(nrg: dict[str, float], bits: list[bool]) -> None:
    """API v1 EN doc (`nrg` row, "App logic"): if floor(pha/8) == 1 (only L1 present before
    the contactor) and nrg[3] > nrg[0], the installation is single-phase with L1 wired to
    the N sensor: `nrg[0]=nrg[3]; nrg[7]=nrg[10]; nrg[12]=nrg[15]`. The app copies, it does
    not swap: N keeps its own readings."""
    only_l1 = bits[3] and not bits[4] and not bits[5]
    if only_l1 and nrg["voltage_n_v"] > nrg["voltage_l1_v"]:
        nrg["voltage_l1_v"] = nrg["voltage_n_v"]
        nrg["power_l1_w"] = nrg["power_n_w"]
        nrg["power_factor_l1_pct"] = nrg["power_factor_n_pct"]


def _card(payload: Mapping[str, Any]) -> str | None:
    index = c.as_int(payload, "uby")
    if not index:
        return None
    if 1 <= index <= len(CARD_NAME_KEYS):
        name = c.as_text(payload, CARD_NAME_KEYS[index - 1])
        if name:
            return name
    return f"card {index}"


def encode_command(key: str, value: WireValue) -> str:
    """One v1 command, as `/mqtt?payload=` and MQTT `cmd/req` take it: `amx=16`, `alw=0`."""
    if key not in WRITABLE:
        raise ValueError(f"{key}: not a key the bridge writes on API v1")
    if isinstance(value, bool):
        return f"{key}={int(value)}"
    if isinstance(value, int):
        return f"{key}={value}"
    raise ValueError(f"{key}: API v1 takes integers, got {value!r}")


def verify(key: str, value: WireValue, status: Mapping[str, Any]) -> bool:
    """v1 doc: "an unsuccessful command can be recognized by the fact that the value in
    the status object has not changed". An `amx` write shows in `amx` where the status has
    that key (042.0, where `amp` stays the stored value) or in `amp` (040/041 mirror it
    there; the V3 legacy emulation answers with the new `amp` and the old `amx`,
    go-eCharger-API-v1 #56, #57)."""
    expected = int(value) if isinstance(value, bool | int) else value
    shown = ("amx", "amp") if key == "amx" else (key,)
    return any(_shows(status, name, expected) for name in shown)


def _shows(status: Mapping[str, Any], key: str, expected: WireValue) -> bool:
    if key not in status:
        return False
    try:
        return c.as_int(status, key) == expected
    except CodecError:
        return False
