"""ChargerStatus → openWB chargepoint values (openwb-protocol.md §4.3, §5.1, §9). Pure.

JSON types exactly as openWB's validator (`helpermodules/setdata.py`) wants them: ints where
it wants ints (`phases_in_use`, `fault_state`), numbers never `null` inside lists, digit-only
strings quoted (`"072246"`), power factors −1…1, frequency only within 40…60.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import jsontext
from ..goe.model import ApiVersion, ChargerStatus

# openWB hardware counts a phase as in use above 3 A (openwb-protocol.md §4.3).
PHASE_THRESHOLD_A = 3.0
OK_TEXT = "Kein Fehler."
REQUIRED_SECONDARY = ("power", "currents", "imported", "exported", "phases_in_use",
                      "plug_state", "charge_state", "fault_state", "fault_str")  # fmt: skip
REQUIRED_MQTT = ("currents", "power", "plug_state", "charge_state", "phases_in_use",
                 "imported", "exported")  # fmt: skip


@dataclass(slots=True)
class MappingState:
    """What the mapping must remember between statuses."""

    phases_in_use: int = 0
    plug_state: bool = False
    last_rfid: str | None = None
    hold_plug_until: float = 0.0  # during a phase switch the plug state is held


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
    """The values openWB reads from a chargepoint, as Python values ready for json.dumps."""
    fault_state, fault_str = fault(status, unreachable)
    if status is None or unreachable is not None:
        # openwb-protocol.md §11.10: stale data is invisible to openWB, so make the loss
        # explicit instead of freezing the last values.
        return {
            "power": 0.0,
            "currents": [0.0, 0.0, 0.0],
            "powers": [0.0, 0.0, 0.0],
            "imported": _num(status.energy_total_wh) if status else 0.0,
            "exported": 0.0,
            "phases_in_use": state.phases_in_use,
            "plug_state": False,
            "charge_state": False,
            "fault_state": fault_state,
            "fault_str": fault_str,
            "evse_current": 0.0,
        }
    currents = _three(status, "current_l{}_a")
    charging = bool(status.charging)
    above = sum(1 for c in currents if c > PHASE_THRESHOLD_A)
    if above:
        state.phases_in_use = above  # keep the last value while not charging (openWB's rule)
    if status.car in (1, 2, 3, 4):
        state.plug_state = status.car in (2, 3, 4)
    if now < state.hold_plug_until:
        state.plug_state = True
    values: dict[str, Any] = {
        "power": _num(status.power_w),
        "currents": currents,
        "voltages": [min(500.0, max(0.0, v)) for v in _three(status, "voltage_l{}_v")],
        "powers": _three(status, "power_l{}_w"),
        "power_factors": [
            max(-1.0, min(1.0, round(p / 100, 4))) for p in _three(status, "power_factor_l{}_pct")
        ],
        "imported": max(0.0, _num(status.energy_total_wh)),
        "exported": 0.0,
        "phases_in_use": int(state.phases_in_use),
        "plug_state": state.plug_state,
        "charge_state": charging,
        "fault_state": fault_state,
        "fault_str": fault_str,
        "evse_current": _evse_current(status),
    }
    if status.frequency_hz is not None and 40 <= status.frequency_hz <= 60:
        values["frequency"] = round(status.frequency_hz, 2)
    if status.max_current_a is not None:
        values["max_evse_current"] = float(status.max_current_a)
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


def new_rfid(status: ChargerStatus | None, state: MappingState) -> str | None:
    """A card seen for the first time this session (sent once per scan)."""
    card = status.rfid_card if status else None
    if card and card != state.last_rfid:
        state.last_rfid = card
        return card
    if not card:
        state.last_rfid = None
    return None


def encode(value: Any) -> str:
    """openWB 2.x wants JSON for every value (strings quoted)."""
    return jsontext.dumps(value, separators=(",", ":"))


def legacy19_values(status: ChargerStatus | None, unreachable: str | None) -> dict[str, str]:
    """openWB 1.9 MQTT-EVSE + MQTT charging-power inputs: plain text (§6)."""
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


def validate_values(values: Mapping[str, Any], required: tuple[str, ...]) -> list[str]:
    """The checks openWB's validator makes on chargepoint get values; [] when all pass."""
    problems = [f"{key}: missing" for key in required if key not in values]
    for key, value in values.items():
        if key in ("currents", "voltages", "powers", "power_factors"):
            if not (isinstance(value, list) and len(value) == 3):
                problems.append(f"{key}: expected a list of three numbers")
            elif any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
                problems.append(f"{key}: every element must be a number (no null)")
            elif key == "voltages" and any(not 0 <= v <= 500 for v in value):
                problems.append(f"{key}: out of 0..500")
            elif key == "power_factors" and any(not -1 <= v <= 1 for v in value):
                problems.append(f"{key}: out of -1..1")
        elif key in ("phases_in_use", "fault_state"):
            high = 3 if key == "phases_in_use" else 2
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
                problems.append(f"{key}: expected an integer 0..{high}")
        elif key in ("plug_state", "charge_state"):
            if not isinstance(value, bool):
                problems.append(f"{key}: expected a bool")
        elif key in ("power", "imported", "exported", "evse_current", "max_evse_current",
                     "frequency"):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(f"{key}: expected a number")
            elif key in ("imported", "exported") and value < 0:
                problems.append(f"{key}: must be >= 0")
            elif key == "frequency" and not 40 <= value <= 60:
                problems.append(f"{key}: out of 40..60")
        elif key in ("fault_str", "serial_number", "rfid") and not isinstance(value, str):
            problems.append(f"{key}: expected a string")
    return problems
