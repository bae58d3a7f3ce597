"""A simulated go-e charger with a scriptable car.

The state is kept in API v2 terms (native JSON types) and rendered as v1 (string-typed
scalars) on demand. The behaviours the bridge has to survive are modelled where they are
documented (docs/protocol/go-e.md#quirks): `amx` volatile, `frc` reset to neutral on unplug, `alw`
following `frc` after a delay, `car=4` after force-off, 6..32 A range errors, read-only
keys, phase switching with a pause, and injectable faults.

Front-ends (HTTP, cloud, MQTT) only translate requests into calls on this object.
"""

from __future__ import annotations

import collections
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..goe.model import PSM_SINCE, ApiVersion, firmware_version

# Keys that exist in the status but have no setter (go-e API v2 #30: "tried to set api key
# without setter").
READ_ONLY_V2 = frozenset(
    {"alw", "car", "acu", "nrg", "eto", "wh", "err", "modelStatus", "pha", "tma", "rbt",
     "rbc", "fwv", "sse", "typ", "var", "rssi", "utc", "loc", "fhz", "cbl", "cus"}
)  # fmt: skip

FAULT_KINDS = ("timeout", "http500", "truncated", "zero_nrg", "wrong_type", "odd_values",
               "missing_key", "slow", "not_found")  # fmt: skip


@dataclass(slots=True)
class Car:
    """The car at the plug: how much it takes and how much it still needs."""

    max_current_a: float = 16.0
    phases: int = 3
    energy_needed_wh: float = 20_000.0


@dataclass(slots=True)
class Fault:
    kind: str
    remaining: int = 1
    delay_s: float = 0.0


@dataclass(slots=True)
class WriteRecord:
    at: float  # monotonic seconds
    key: str
    value: Any
    accepted: bool
    via: str  # "http-v1", "http-v2", "mqtt-v2", "cloud-v2", …


@dataclass
class SimCharger:
    api: ApiVersion = ApiVersion.V2
    serial: str = "000001"
    firmware: str | None = None
    variant_kw: int = 11
    # go-e API v2 #5, #6: alw follows frc "after several seconds"; 1 Hz logic otherwise.
    alw_delay_s: float = 1.0
    # psmd: 10 s without current during a phase switch (docs/protocol/go-e.md#phase-switch).
    phase_switch_pause_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    # When the v1 legacy API is also on (V3 with `hla`), /status answers on a v2 charger.
    legacy_v1: bool = False
    # A charger that acknowledges writes ({"amp":true}) but does not apply them: what the
    # bridge's read-back verification exists for.
    ignore_writes: bool = False
    # HW V1/V2 wired single-phase with L1 on the N sensor: the v1 doc's app rule
    # (`floor(pha/8)==1 && nrg[3]>nrg[0]` → L1 from indices 3/10/15) exists for these.
    l1_on_n: bool = False
    # Measurement noise as a real charger has it: a 56.9 capture (tests/fixtures/goe/
    # v2-mqtt-capture-excerpt.txt, syssi/homeassistant-goecharger-mqtt docs/mqtt-traffic-
    # 056.9.log) moves within 2 s: voltages 232,232,231 → 232,231,232, fhz 49.959 → 49.847
    # → 49.944, rssi -65 → -66. Off by default (tests compare exact values); the benchmarks
    # turn it on (`simulate --noise`) so the bridge's per-poll work is that of a real one.
    noise: bool = False

    car: Car | None = None
    frc: int = 0
    alw: bool = True
    amp: int = 16
    amp_eeprom: int = 16
    # psm 0 = auto, the charger's own phase logic: the default (apikeys-en.md `psm`)
    psm: int = 0
    # Settings that fight an external controller (60.4 key export): lmo logic mode
    # (Default=3, Awattar=4, NextTrip=5), fup usePvSurplus, acs access control (Open=0,
    # Wait=1), mcr MQTT read-only; su simulateUnpluggingShort, a stored setting.
    lmo: int = 3
    fup: bool = False
    acs: int = 0
    mcr: bool = False
    su: bool = False
    # ids: the PV surplus input {"pGrid","pPv","pAkku"}, "needed all 5 seconds", "can be
    # read back within 10 seconds after set" as pgrid/ppv/pakku (apikeys-en.md)
    ids: dict[str, float] | None = None
    ids_at: float = -1e9
    cbl: int | None = None
    eto_wh: float = 0.0
    session_wh: float = 0.0
    complete: bool = False
    err: int = 0
    writes: list[WriteRecord] = field(default_factory=list)
    eeprom_writes: int = 0
    requests: int = 0
    unplug_simulations: int = 0
    # RFID cards taught to the charger (`cards[i].name`), and the running transaction:
    # go-e apikeys-en.md `trx`: null = none, 0 = without card, n = card n-1
    card_names: list[str] = field(default_factory=list)
    trx: int | None = None
    in_flight: int = 0
    max_in_flight: int = 0
    faults: collections.deque[Fault] = field(default_factory=collections.deque)
    listeners: list[Callable[[], None]] = field(default_factory=list)

    _alw_pending: tuple[float, bool] | None = None
    _phase_switch_until: float = 0.0
    _phases_active: int = 3
    _last_tick: float = 0.0
    _started: float = 0.0
    _boots: int = 1
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        self._rng.seed(self.serial)  # reproducible per charger
        if self.firmware is None:
            self.firmware = "56.9" if self.api is ApiVersion.V2 else "041.0"
        self._started = self._last_tick = self.clock()
        self._phases_active = 1 if self.psm == 1 else 3

    # ------------------------------------------------------------------ scripting

    @property
    def ama(self) -> int:
        return 16 if self.variant_kw == 11 else 32

    def plug(self, car: Car | None = None) -> None:
        self.advance()
        self.car = car or Car()
        self.complete = False
        self.session_wh = 0.0
        self.trx = None
        self._changed()

    def scan_card(self, name: str) -> None:
        """A card held at the charger: the session is authorised with it."""
        if name not in self.card_names:
            self.card_names.append(name)
        self.trx = self.card_names.index(name) + 1
        self._changed()

    def unplug(self) -> None:
        self.advance()
        self.car = None
        self.complete = False
        self.trx = None  # the transaction ends with the session
        # go-e API v2 #117: frc resets to 0 (neutral) when the car is unplugged.
        if self.api is ApiVersion.V2:
            self._set_frc(0)
        self._changed()

    def reboot(self) -> None:
        """`amx` is volatile: after a reboot `amp` is the last value written with `amp`."""
        self.amp = self.amp_eeprom
        self._boots += 1
        self._started = self.clock()
        self._changed()

    def inject(self, kind: str, count: int = 1, delay_s: float = 0.0) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; choose one of {', '.join(FAULT_KINDS)}")
        self.faults.append(Fault(kind, count, delay_s))

    def take_fault(self) -> Fault | None:
        """The fault that applies to the request being answered now, if any."""
        while self.faults:
            fault = self.faults[0]
            if fault.remaining <= 0:
                self.faults.popleft()
                continue
            if fault.remaining < 1_000_000:
                fault.remaining -= 1
            return fault
        return None

    def clear_faults(self) -> None:
        self.faults.clear()

    # ------------------------------------------------------------------ physics

    def _changed(self) -> None:
        for listener in list(self.listeners):
            listener()

    def _set_frc(self, value: int) -> None:
        self.frc = value
        wanted = value != 1
        self._alw_pending = (self.clock() + self.alw_delay_s, wanted)

    def _phases_wanted(self) -> int:
        return 1 if self.psm == 1 else 3

    def access_waiting(self) -> bool:
        """acs=1: a session waits for a card or `trx=0` (apikeys-en.md `acs`, `trx`)."""
        return self.acs == 1 and self.car is not None and self.trx is None

    def own_logic_blocks(self) -> bool:
        """Not forced (frc=0), the charger's own logic decides: in Awattar/NextTrip mode
        (lmo 4/5) or with PV surplus on (fup) and no surplus reported, it does not charge
        (modelStatus 17/18; go-e app "Eco mode"/"Next trip")."""
        if self.api is not ApiVersion.V2 or self.frc != 0:
            return False
        if self.lmo in (4, 5):
            return True
        return self.fup and not self._pv_surplus()

    def _pv_surplus(self) -> bool:
        fresh = self.ids is not None and self.clock() - self.ids_at <= 10
        return bool(fresh and self.ids and self.ids.get("pGrid", 0) < -1400)

    def charging_current(self) -> float:
        if not self.is_charging():
            return 0.0
        assert self.car is not None
        limits = [float(self.amp), self.car.max_current_a, float(self.ama)]
        if self.cbl:
            limits.append(float(self.cbl))
        return min(limits)

    def active_phases(self) -> int:
        if self.car is None:
            return 0
        switched = self._phase_switch_until and self.clock() >= self._phase_switch_until
        phases = self._phases_wanted() if switched else self._phases_active
        return min(self.car.phases, phases)

    def is_charging(self) -> bool:
        return (
            self.car is not None
            and self.alw
            and not self.access_waiting()
            and not self.own_logic_blocks()
            and not self.complete
            and self.err == 0
            and self.clock() >= self._phase_switch_until
        )

    def advance(self) -> None:
        """Bring the simulation up to now: alw follows frc, energy flows, the car fills up."""
        now = self.clock()
        if self._alw_pending and now >= self._alw_pending[0]:
            self.alw = self._alw_pending[1]
            self._alw_pending = None
            self._changed()
        if self._phase_switch_until and now >= self._phase_switch_until:
            self._phase_switch_until = 0.0
            self._phases_active = self._phases_wanted()
            self._changed()
        elapsed = max(0.0, now - self._last_tick)
        self._last_tick = now
        if self.is_charging() and elapsed > 0:
            assert self.car is not None
            energy = self.power_w() * elapsed / 3600
            self.eto_wh += energy
            self.session_wh += energy
            self.car.energy_needed_wh -= energy
            if self.car.energy_needed_wh <= 0:
                self.complete = True
                self._changed()

    def car_code(self) -> int:
        if self.car is None:
            return 1
        if self.is_charging():
            return 2
        if self.complete or (self.api is ApiVersion.V2 and self.frc == 1):
            return 4  # also after a force-off (go-e API v2 #156)
        return 3

    def model_status(self) -> int:
        if self.clock() < self._phase_switch_until:
            return 23
        if self.access_waiting():
            return 2  # NotChargingBecauseAccessControl
        if self.own_logic_blocks():
            return 17 if self.lmo == 4 else 18
        return {1: 4, 2: 3}.get(self.frc, 15)

    def voltages(self) -> tuple[float, float, float]:
        return (230.0, 231.0, 229.0)

    def _measured(self, values: tuple[float, ...] | list[float], spread: float,
                  digits: int) -> list[float]:  # fmt: skip
        """`values` as the meter reads them: with noise, each ± `spread`."""
        if not self.noise:
            return list(values)
        rng = self._rng
        return [round(v + rng.uniform(-spread, spread), digits) if v else v for v in values]

    def currents(self) -> list[float]:
        amps = self.charging_current()
        n = self.active_phases() if amps else 0
        if self.l1_on_n:
            n = min(n, 1)  # a single-phase installation
        return [amps if i < n else 0.0 for i in range(3)]

    def power_w(self) -> float:
        return sum(v * a for v, a in zip(self.voltages(), self.currents(), strict=True))

    # ------------------------------------------------------------------ v2 rendering

    def status_v2(self, keys: list[str] | None = None) -> dict[str, Any]:
        self.advance()
        volts = self._measured(self.voltages(), 1.0, 0)  # whole volts, as in the capture
        amps = self._measured(self.currents(), 0.1, 2)
        powers = [round(v * a, 1) for v, a in zip(volts, amps, strict=True)]
        pf = [99.0 if a else 0.0 for a in amps]
        nrg: list[float] = [*volts, 1.0, *amps, *powers, 0.0, round(sum(powers), 1), *pf, 0.0]
        charging_allowed_current = min(self.amp, self.ama, self.cbl or 32)
        uptime_ms = int((self.clock() - self._started) * 1000)
        blocked = self.access_waiting() or self.own_logic_blocks()
        state: dict[str, Any] = {
            "alw": self.alw and not blocked,
            "acu": charging_allowed_current if self.alw and self.car else None,
            "amp": self.amp,
            "ama": self.ama,
            "frc": self.frc,
            "car": self.car_code(),
            "err": self.err,
            "cbl": self.cbl,
            "pha": [a > 0 for a in amps] + [True, True, True],
            "wh": round(self.session_wh, 3),
            "eto": int(self.eto_wh),
            "nrg": nrg,
            "modelStatus": self.model_status(),
            "psm": self.psm,
            "fsp": self._phases_active == 1,
            "trx": self.trx,
            "cards": [{"name": n, "energy": 0, "cardId": True} for n in self.card_names],
            "tma": self._measured([23.0, 27.5], 0.25, 2),
            "rssi": -61 + (self._rng.randint(-1, 1) if self.noise else 0),
            "fhz": self._measured([49.98], 0.1, 3)[0],
            "rbt": uptime_ms,
            "rbc": self._boots,
            "fwv": self.firmware,
            "sse": self.serial,
            "typ": "go-eCharger",
            "var": self.variant_kw,
            "oem": "go-e",
            "mca": 6,
            "lmo": self.lmo,
            "fup": self.fup,
            "acs": self.acs,
            "su": self.su,
            "hai": True,
            "hla": self.legacy_v1,
            "mcr": self.mcr,
            "wke": "simulated-wifi-key",  # a secret the bridge must never publish
            "cak": "simulated-cloud-key",
        }
        if self.ids is not None and self.clock() - self.ids_at <= 10:
            state["pgrid"] = self.ids.get("pGrid")
            state["ppv"] = self.ids.get("pPv")
            state["pakku"] = self.ids.get("pAkku")
        if keys is not None:
            state = {k: state[k] for k in keys if k in state}
        return state

    def set_v2(self, params: Mapping[str, str], via: str = "http-v2") -> tuple[int, dict[str, Any]]:
        """`/api/set?k=<json>`: one answer entry per key; HTTP 500 if any key failed."""
        self.advance()
        answer: dict[str, Any] = {}
        for key, text in params.items():
            try:
                value = json.loads(text)
            except ValueError:
                answer[key] = f"invalid json IncompleteInput: {text}"
                self._record(key, text, False, via)
                continue
            answer[key] = True if self.ignore_writes else self._apply_v2(key, value)
            self._record(key, value, answer[key] is True, via)
        self._changed()
        failed = any(v is not True for v in answer.values())
        return (500 if failed else 200), answer

    def _apply_v2(self, key: str, value: Any) -> bool | str:
        if key in READ_ONLY_V2:
            return f"{key}: tried to set api key without setter"
        if key == "amp":
            if not isinstance(value, int) or isinstance(value, bool) or not 6 <= value <= 32:
                return f"amp: failed: Value {value} exceeds range 6 to 32 ({value})"
            self.amp = value
            self.amp_eeprom = value  # V3+ NVS: amp is persistent (go-e API v2 #112)
            return True
        if key == "frc":
            if value not in (0, 1, 2) or isinstance(value, bool):
                return f"frc: failed: Value {value} exceeds range 0 to 2 ({value})"
            self._set_frc(value)
            return True
        if key == "psm":
            version = firmware_version(self.firmware)
            if version is not None and version < PSM_SINCE:
                return "psm: unknown api key"  # psm exists from 051.8 (apikeys-en.md)
            if value not in (0, 1, 2) or isinstance(value, bool):
                return f"psm: failed: Value {value} exceeds range 0 to 2 ({value})"
            if value != self.psm:
                self.psm = value
                # Phase switching works as a simulated unplug: modelStatus 23 and a pause
                # without current (go-e API v2 #248); `wh` starts again from 0 after it
                # (go-e API v2 #198).
                self._phase_switch_until = self.clock() + self.phase_switch_pause_s
                self.session_wh = 0.0
            return True
        if key == "trx":
            # null ends, 0 authorises without a card, n = card n-1 (apikeys-en.md)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                return f"trx: failed: invalid value ({value})"
            self.trx = value
            return True
        if key == "ids":
            if not isinstance(value, dict) or not isinstance(value.get("pGrid"), int | float):
                return 'ids: failed: expected {"pGrid": number, ...}'
            self.ids = {k: float(v) for k, v in value.items() if isinstance(v, int | float)}
            self.ids_at = self.clock()
            return True
        if key in ("lmo", "acs"):
            if not isinstance(value, int) or isinstance(value, bool):
                return f"{key}: failed: invalid value ({value})"
            setattr(self, key, value)
            return True
        if key in ("su", "fup", "mcr"):
            # stored settings (60.4 key export: R/W bool Config); `su` is whether a
            # simulated unplug is short, not a command to unplug
            if not isinstance(value, bool):
                return f"{key}: failed: expected a bool ({value})"
            setattr(self, key, value)
            return True
        return f"{key}: unknown api key"

    # ------------------------------------------------------------------ v1 rendering

    def status_v1(self) -> dict[str, Any]:
        """v1: scalars as strings, nrg/tma as numbers (go-e API v1 EN doc)."""
        self.advance()
        volts = self._measured(self.voltages(), 1.0, 0)  # whole volts, as in the capture
        amps = self._measured(self.currents(), 0.1, 2)
        after = sum(1 << i for i, a in enumerate(amps) if a > 0)
        nrg: list[int] = [
            *(int(v) for v in volts),
            1,
            *(round(a * 10) for a in amps),  # 0.1 A
            *(round(v * a / 100) for v, a in zip(volts, amps, strict=True)),  # 0.1 kW
            0,
            round(self.power_w() / 10),  # 0.01 kW
            *(99 if a else 0 for a in amps),
            0,
        ]
        before = 0b111000
        if self.l1_on_n:
            # L1's voltage, power and power factor arrive on the N sensor (v1 doc, nrg app
            # logic); only L1 is present before the contactor
            nrg[3], nrg[0] = nrg[0], 2
            nrg[10], nrg[7] = nrg[7], 0
            nrg[15], nrg[12] = nrg[12], 0
            before = 0b001000
        status: dict[str, Any] = {
            "version": "B",
            "car": str(self.car_code()),
            "amp": str(self.amp),
            "err": str(self.err),
            "ast": "0",
            "alw": "1" if self.alw else "0",
            "stp": "0",
            "cbl": str(self.cbl or 0),
            "pha": str(after | before),
            "tmp": "21",
            "dws": str(round(self.session_wh * 360)),
            "dwo": "0",
            "adi": "0",
            "uby": "0",
            "eto": str(int(self.eto_wh / 100)),
            "wst": "3",
            "nrg": nrg,
            "fwv": self.firmware,
            "sse": self.serial,
            "wss": "simulated",
            "wke": "simulated-wifi-key",
            "wen": "1",
            "ama": str(self.ama),
            "rbc": str(self._boots),
            "rbt": str(int((self.clock() - self._started) * 1000)),
        }
        if self.api is ApiVersion.V2:
            # V3 legacy emulation carries fsp (docs/protocol/go-e.md#http-v1).
            status["fsp"] = "1" if self._phases_active == 1 else "0"
        return status

    def set_v1(self, payload: str, via: str = "http-v1") -> dict[str, Any]:
        """`/mqtt?payload=k=v`: applies what it understands, answers the full status; an
        unsuccessful command is only visible as an unchanged value (v1 doc)."""
        self.advance()
        key, _, text = payload.partition("=")
        key = key.strip()
        accepted = False
        try:
            value = int(text.strip())
        except ValueError:
            value = None
        major = int("".join(ch for ch in (self.firmware or "0")[:3] if ch.isdigit()) or 0)
        if value is not None:
            if key == "alw" and value in (0, 1):
                self.alw = bool(value)
                self._alw_pending = None
                if self.api is ApiVersion.V2:  # V3 legacy: alw sets frc (go-e API v2 #136)
                    self.frc = 2 if value else 1
                accepted = True
            elif key == "amx" and major >= 40 and 6 <= value <= 32:
                if self.firmware == "042.0" and value > self.amp_eeprom:
                    # HW V2 fw 042.0 ignores amx above the stored amp (go-eCharger-API-v1
                    # #114, snaptec/openWB #2778): nothing changes, the status says so
                    pass
                else:
                    self.amp = value  # volatile: not in EEPROM
                    accepted = True
            elif key == "amp" and 6 <= value <= 32:
                self.amp = self.amp_eeprom = value
                self.eeprom_writes += 1
                accepted = True
        self._record(key, value if value is not None else text, accepted, via)
        self._changed()
        return self.status_v1()

    def _record(self, key: str, value: Any, accepted: bool, via: str) -> None:
        self.writes.append(WriteRecord(self.clock(), key, value, accepted, via))
        if len(self.writes) > 10_000:
            del self.writes[:5_000]

    def snapshot(self) -> dict[str, Any]:
        """Internals for tests and the control endpoint."""
        self.advance()
        return {
            "api": self.api.value,
            "plugged": self.car is not None,
            "charging": self.is_charging(),
            "amp": self.amp,
            "amp_eeprom": self.amp_eeprom,
            "frc": self.frc,
            "alw": self.alw,
            "psm": self.psm,
            "power_w": self.power_w(),
            "eeprom_writes": self.eeprom_writes,
            "writes": [
                {"at": w.at, "key": w.key, "value": w.value, "accepted": w.accepted, "via": w.via}
                for w in self.writes[-200:]
            ],
            "faults": [f.kind for f in self.faults],
        }
