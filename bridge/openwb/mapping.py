"""ChargerStatus → openWB chargepoint values (docs/protocol/openwb.md#mapping). Pure.

JSON types exactly as openWB's validator (`helpermodules/setdata.py`) wants them: ints where
it wants ints (`phases_in_use`, `fault_state`), numbers never `null` inside lists, digit-only
strings quoted (`"072246"`), power factors −1…1, frequency only within 40…60.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import jsontext
from ..goe.model import ApiVersion, ChargerStatus

# openWB hardware counts a phase as in use above 3 A (docs/protocol/openwb.md#secondary-values).
PHASE_THRESHOLD_A = 3.0
OK_TEXT = "Kein Fehler."


@dataclass(slots=True)
class MappingState:
    """What the mapping must remember between statuses, as openWB's own secondary does
    (packages/modules/internal_chargepoint_handler/chargepoint_module.py: old_plug_state,
    old_phases_in_use, old_chargepoint_state)."""

    # the secondary starts at 1 (or its retained value) and keeps the last value while no
    # phase carries more than 3 A
    phases_in_use: int = 1
    plug_state: bool = False
    imported: float | None = None  # last known lifetime energy; unknown = not published
    # RFID: the card the charger reports, and what openWB is shown (None after its clear)
    seen_card: str | None = None
    rfid: str | None = None
    rfid_timestamp: float | None = None
    # While a phase switch or CP interruption runs, the plug state is held at its value from
    # before (openWB: `phase_switch_cp_active` keeps `old_plug_state`).
    hold_plug_until: float = 0.0
    error_since: float | None = None  # wall clock, for error_timestamp
    # After the charger stopped answering, its last values stand until then (monotonic), as
    # openWB's own secondary keeps them through a short outage (OUTAGE_HOLD_S)
    outage_hold_until: float = 0.0
    # the bridge stops (an orderly stop): what openWB must read instead of stale values
    stopped: bool = False


# openWB's own secondary keeps reporting its last state for 60 s after its charger stopped
# answering, then zeros charge state, power and currents with plug, phases and counter held,
# and reports the fault from 70 s (internal_chargepoint_handler/chargepoint_module.py:
# ErrorTimerContext(timeout=60, hide_exception=True), docs/protocol/openwb.md). A shorter
# "not charging" made openWB's instant charging cut to its minimum current for a cycle after
# a 30 s WiFi drop. The bridge holds the same 60 s, with the fault shown as a warning
# (fault_state 1 changes nothing in openWB's control).
OUTAGE_HOLD_S = 60.0


def _num(value: float | None) -> float:
    return round(float(value), 2) if value is not None else 0.0


def _three(status: ChargerStatus, template: str) -> list[float]:
    return [_num(getattr(status, template.format(n))) for n in (1, 2, 3)]


def fault(status: ChargerStatus | None, unreachable: str | None) -> tuple[int, str]:
    """fault_state 0 ok / 1 warning / 2 error, with a text naming the raw numbers."""
    if unreachable is not None or status is None:
        return 2, f"go-e nicht erreichbar: {unreachable or 'noch kein Status'}"
    if status.error_code not in (None, 0):
        return 2, f"go-e Fehler {status.error} (err={status.error_code})"
    if status.car is None or status.car in (0, 5):
        return 2, f"go-e Fahrzeugstatus unbekannt oder Fehler (car={status.car})"
    return 0, OK_TEXT


def chargepoint_values(
    status: ChargerStatus | None,
    state: MappingState,
    *,
    unreachable: str | None = None,
    now: float = 0.0,
) -> dict[str, Any]:
    """The values openWB reads from a chargepoint, as Python values ready for json.dumps
    (None is published as null; a key left out is not published)."""
    fault_state, fault_str = fault(status, unreachable)
    if state.stopped:
        fault_state, fault_str = 2, "goe-bridge gestoppt: keine Werte vom go-e"
    holding = now < state.hold_plug_until
    if (
        status is not None
        and unreachable is not None
        and not state.stopped
        and now < state.outage_hold_until
    ):
        # a short outage: the last values stand, the fault is a warning
        held = chargepoint_values(status, state, now=now)
        held["fault_state"] = 1
        held["fault_str"] = f"go-e nicht erreichbar (letzte Werte): {unreachable}"
        return held
    if status is None or unreachable is not None or state.stopped:
        # As openWB's secondary reports a chargepoint it cannot read (chargepoint_module.py,
        # error_counter_exceeded): the last plug state (a false unplug edge would make openWB
        # close the session, reset the RFID and lock the chargepoint), no charging, zero
        # currents and power, the last phases in use, the counter untouched, and every
        # measurement at its "no data" default instead of frozen at its last value.
        values: dict[str, Any] = {
            "power": 0.0,
            "currents": [0.0, 0.0, 0.0],
            "powers": [0.0, 0.0, 0.0],
            "voltages": [230.0, 230.0, 230.0],
            "power_factors": [0.0, 0.0, 0.0],
            "frequency": 50.0,
            "exported": 0.0,
            "phases_in_use": state.phases_in_use,
            "plug_state": state.plug_state,
            "charge_state": False,
            "fault_state": fault_state,
            "fault_str": fault_str,
            "evse_current": None,
            "max_evse_current": None,
        }
        if state.imported is not None:
            values["imported"] = state.imported
        return values
    currents = _three(status, "current_l{}_a")
    above = sum(1 for c in currents if c > PHASE_THRESHOLD_A)
    if above:
        state.phases_in_use = above  # keep the last value while not charging (openWB's rule)
    if status.car in (1, 2, 3, 4) and not holding:
        state.plug_state = status.car in (2, 3, 4)
    if status.energy_total_wh is not None:
        state.imported = max(0.0, _num(status.energy_total_wh))
    values = {
        "power": _num(status.power_w),
        "currents": currents,
        "voltages": [min(500.0, max(0.0, v)) for v in _three(status, "voltage_l{}_v")],
        "powers": _three(status, "power_l{}_w"),
        "power_factors": [
            max(-1.0, min(1.0, round(p / 100, 4))) for p in _three(status, "power_factor_l{}_pct")
        ],
        "exported": 0.0,
        "phases_in_use": int(state.phases_in_use),
        "plug_state": state.plug_state,
        "charge_state": bool(status.charging),
        "fault_state": fault_state,
        "fault_str": fault_str,
        "evse_current": _evse_current(status),
        "frequency": (
            round(status.frequency_hz, 2)
            if status.frequency_hz is not None and 40 <= status.frequency_hz <= 60
            else 50.0
        ),
        "max_evse_current": (
            float(status.max_current_a) if status.max_current_a is not None else None
        ),
    }
    if state.imported is not None:
        values["imported"] = state.imported
    if status.serial:
        values["serial_number"] = str(status.serial)
    return values


def _evse_current(status: ChargerStatus) -> float:
    """v2: `acu` (null → 0); v1: `amp` while charging is allowed, else 0."""
    if status.api_version is ApiVersion.V2:
        return _num(status.effective_current_a)
    if status.allow_charging:
        return _num(status.current_limit_a)
    return 0.0


def update_rfid(status: ChargerStatus | None, state: MappingState, wall_now: float) -> bool:
    """Follow the card the charger reports: a card seen anew (a scan) becomes `rfid`, with
    its timestamp; openWB's clear (`clear_rfid`) sets `rfid` back to None until the next scan.
    True when `rfid` changed."""
    card = status.rfid_card if status else None
    if not card:
        state.seen_card = None  # the session ended: the same card again is a new scan
        return False
    if card == state.seen_card:
        return False
    state.seen_card = card
    state.rfid = card
    state.rfid_timestamp = round(wall_now, 3)
    return True


def clear_rfid(state: MappingState) -> None:
    state.rfid = None
    state.rfid_timestamp = None


def encode(value: Any) -> str:
    """openWB 2.x wants JSON for every value (strings quoted)."""
    return jsontext.dumps(value, separators=(",", ":"))


def legacy19_values(status: ChargerStatus | None, unreachable: str | None) -> dict[str, str]:
    """openWB 1.9 MQTT-EVSE + MQTT charging-power inputs: plain text
    (docs/protocol/openwb.md#openwb-19)."""
    if status is None or unreachable is not None:
        return {"plugStat": "0", "chargeStat": "0", "W": "0"}
    out = {
        "plugStat": "1" if status.plugged else "0",
        "chargeStat": "1" if status.charging else "0",
        "W": str(round(status.power_w or 0)),
    }
    if status.energy_total_wh is not None:
        out["kWhCounter"] = f"{status.energy_total_wh / 1000:.3f}"
    for n in (1, 2, 3):
        volts = getattr(status, f"voltage_l{n}_v")
        amps = getattr(status, f"current_l{n}_a")
        if volts is not None:
            out[f"VPhase{n}"] = f"{volts:.1f}"
        if amps is not None:
            out[f"APhase{n}"] = f"{amps:.2f}"
    if status.frequency_hz:
        out["HzFrequenz"] = f"{status.frequency_hz:.2f}"
    return out
