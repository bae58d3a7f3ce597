"""Target + last status → the go-e keys that make the Target true (docs/design.md#control). Pure.

- current < 6 A (including 0) means stop, never a current write;
- currents are floored to whole amps and clamped to [6, min(32, limit, ama, cable)];
- enable = `alw=1` (v1) / `frc=2` (`enable_mode: force`) or `frc=0` (`neutral`) on v2;
  disable = `alw=0` / `frc=1`;
- current = `amx` on v1 firmware ≥ 040 (never `amp`: EEPROM wear), `amp` on older v1 and v2;
- phases = `psm=1|2`, or `psm=0` for "auto" (the charger's own logic), API v2 only, where
  the firmware has them (`phase_support`).

`plan()` never raises, whatever the status holds: it runs on every reconcile step of every
charger, and a status comes from the charger (or anyone answering its HTTP on the LAN).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..goe.codec_v2 import PHASES_TO_PSM, PSM_TO_PHASES
from ..goe.model import (
    FORCE_CODES,
    FORCE_STATES,
    PSM_AUTO_SINCE,
    PSM_SINCE,
    ApiVersion,
    ChargerStatus,
    Target,
    WireValue,
    firmware_at_least,
    firmware_major,
)

MIN_CURRENT_A = 6
MAX_CURRENT_A = 32


@dataclass(frozen=True, slots=True)
class Plan:
    """The writes still needed, by kind: enable/disable goes out at once, current changes
    are spaced, phase switches are rate limited."""

    switch: dict[str, WireValue] = field(default_factory=dict)
    current: dict[str, WireValue] = field(default_factory=dict)
    phases: dict[str, WireValue] = field(default_factory=dict)
    #: Things the Target asks for that this charger cannot do (shown, never written).
    unsupported: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.switch or self.current or self.phases)


def current_cap(status: ChargerStatus | None, limit_a: int) -> int:
    cap = min(MAX_CURRENT_A, limit_a)
    if status is not None:
        for other in (status.max_current_a, status.cable_current_a):
            if other:
                cap = min(cap, other)
    return max(cap, MIN_CURRENT_A)


def effective(target: Target, status: ChargerStatus | None, limit_a: int) -> Target:
    """The Target as it will be written: stop below 6 A, floor, clamp."""
    allow = target.allow
    current = target.current_a
    if current is not None:
        if not math.isfinite(current) or current < MIN_CURRENT_A:
            return Target(allow=False, current_a=None, phases=target.phases)
        current = float(min(math.floor(current), current_cap(status, limit_a)))
    return Target(allow=allow, current_a=current, phases=target.phases)


def phase_support(status: ChargerStatus | None, phases: int | str) -> str | None:
    """Why this charger cannot be set to `phases`, or None when it can (or is not known)."""
    if phases not in PHASES_TO_PSM:
        return f"{phases} is not 1, 3 or auto"
    if status is None:
        return None
    if status.api_version is ApiVersion.V1:
        return "API v1 chargers cannot switch phases"
    if firmware_at_least(status.firmware, PSM_SINCE) is False:
        # go-eCharger-API-v2 #58 (one user comment): psm from 051.8
        return f"phase switching needs firmware 051.8 or later (this charger: {status.firmware})"
    if phases == "auto" and firmware_at_least(status.firmware, PSM_AUTO_SINCE) is False:
        # syssi/homeassistant-goecharger-mqtt #89 (one user report): psm=0 from 055.5
        return f"phases auto needs firmware 055.5 or later (this charger: {status.firmware})"
    if status.raw and "psm" not in status.raw:
        # the poll asks for psm: a charger that leaves it out does not have it (the V5
        # firmware's key exports, go-eCharger-API-v2 API_KEYS_FIRMWARE, have no psm)
        return "this charger does not report psm (no phase switching)"
    return None


def plan(
    target: Target,
    status: ChargerStatus,
    *,
    limit_a: int,
    enable_mode: str = "force",
    authorize: bool = False,
) -> Plan:
    want = effective(target, status, limit_a)
    switch: dict[str, WireValue] = {}
    current: dict[str, WireValue] = {}
    phases: dict[str, WireValue] = {}
    unsupported: list[str] = []

    if status.api_version is ApiVersion.V1:
        if want.allow is not None and status.allow_charging is not want.allow:
            switch["alw"] = 1 if want.allow else 0
        if want.current_a is not None and want.allow is not False:
            amps = int(want.current_a)
            if status.current_limit_a != amps:
                major = firmware_major(status.firmware)
                # amx needs firmware ≥ 040 (evcc #2711); 033 and older only know amp.
                key = "amx" if major is None or major >= 40 else "amp"
                current[key] = amps
        if want.phases is not None:
            unsupported.append(f"phases: {phase_support(status, want.phases)}")
    else:
        if want.allow is not None:
            frc = (2 if enable_mode == "force" else 0) if want.allow else 1
            force = FORCE_CODES.get(status.force_state or "")
            if force != frc:
                switch["frc"] = frc
            if (
                authorize
                and want.allow
                and status.access_control == "wait"
                and status.plugged
                and status.session_authorized is False
            ):
                # Access control waits for a card: authorise the session without one,
                # `trx=0` (apikeys-en.md; syssi's and marq24's Home Assistant integrations
                # write `trx`, evcc does not), on opt-in.
                switch["trx"] = 0
        if want.current_a is not None and want.allow is not False:
            amps = int(want.current_a)
            if status.current_limit_a != amps:
                current["amp"] = amps
        if want.phases is not None:
            reason = phase_support(status, want.phases)
            if reason is not None:
                unsupported.append(f"phases: {reason}")
            elif status.phases != want.phases:
                phases["psm"] = PHASES_TO_PSM[want.phases]
    return Plan(switch, current, phases, tuple(unsupported))


def assume_written(status: ChargerStatus, changes: Mapping[str, WireValue]) -> ChargerStatus:
    """The status as it will be once the charger applied `changes`, which it confirmed.

    Until the next read verifies them, planning starts from here: a Target that changes
    back right after a write is then written again instead of being mistaken for done."""
    fields: dict[str, object] = {}
    for key, value in changes.items():
        if key in ("amp", "amx") and isinstance(value, int):
            fields["current_limit_a"] = value
        elif key == "frc" and isinstance(value, int):
            fields["force_state"] = FORCE_STATES.get(value)
        elif key == "alw":
            fields["allow_charging"] = bool(value)
        elif key == "psm" and isinstance(value, int):
            fields["phases"] = PSM_TO_PHASES.get(value)
        elif key == "trx":
            fields["session_authorized"] = True
    return dataclasses.replace(status, **fields) if fields else status  # type: ignore[arg-type]


_WORDS: dict[str, dict[WireValue, str]] = {
    "frc": {0: "allow charging: on (charger's own logic)", 1: "allow charging: off",
            2: "allow charging: on"},
    "psm": {0: "phases: auto", 1: "phases: 1", 2: "phases: 3"},
    "trx": {0: "authorise the session (access control)"},
}  # fmt: skip


def describe(key: str, value: WireValue) -> str:
    """A go-e write in the words of the command that caused it (the status page's list)."""
    if key in _WORDS and not isinstance(value, bool) and value in _WORDS[key]:
        return _WORDS[key][value]
    if key == "alw":
        return f"allow charging: {'on' if value else 'off'}"
    if key in ("amp", "amx"):
        return f"current limit: {value} A"
    return f"{key}={value}"
