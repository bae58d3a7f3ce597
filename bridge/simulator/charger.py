"""A simulated go-e charger with a scriptable car, as one firmware line behaves.

The state is kept in API v2 terms (native JSON types) and rendered as v1 (string-typed
scalars) on demand. What differs between firmware lines comes from a profile
(`profiles.py`, `SimCharger(profile="v2-042.0")`); what the firmware version decides comes
from `firmware.py`. Both carry their public sources and know nothing of the bridge.

Modelled (docs/protocol/go-e.md#quirks and the profiles' sources): `amx` volatile, `frc` reset to
neutral on unplug, `alw` following `frc` after a delay, `car=4` after force-off, 6..32 A
range errors, read-only keys, the charger's own phase switch (a simulated unplug with the
look of its firmware line), Eco mode charging on the `ids` surplus, `pha` from the contactor,
the API lock, and injectable faults.

Front-ends (HTTP, cloud, MQTT) only translate requests into calls on this object.
"""

from __future__ import annotations

import collections
import json
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import firmware as fw
from . import profiles
from .firmware import Api
from .profiles import Profile

# Keys that exist in the status but have no setter (go-e API v2 #30: "tried to set api key
# without setter").
READ_ONLY_V2 = frozenset(
    {"alw", "car", "acu", "nrg", "eto", "wh", "err", "modelStatus", "pha", "tma", "rbt",
     "rbc", "fwv", "sse", "typ", "var", "rssi", "utc", "loc", "fhz", "cbl", "cus", "pnp"}
)  # fmt: skip

# Faults a test can inject. "api_lock" and "hang" last until the charger reboots:
# "couldn't take api lock in 3s, please try again later" until a power cycle on 050.1/051.x
# (go-eCharger-API-v1 #64, #70); REST unresponsive until a reboot on 60.2/60.3
# (marq24/ha-goecharger-api2 #82, go-eCharger-API-v2 #299).
FAULT_KINDS = ("timeout", "http500", "truncated", "zero_nrg", "wrong_type", "odd_values",
               "missing_key", "slow", "not_found", "api_lock", "hang")  # fmt: skip
UNTIL_REBOOT = ("api_lock", "hang")
API_LOCK_TEXT = "couldn't take api lock in 3s, please try again later"  # go-eCharger-API-v1 #64

# go-e's PV logic needs the surplus at least for the minimum current on one phase; the 56.9
# capture's defaults (syssi docs/mqtt-traffic-056.9.log): three phases from `spl3` 4200 W,
# at most one phase toggle per `mptwt` 600000 ms, a switch lasts `psmd` 10000 ms.
SPL3_W = 4200.0
MPTWT_MS = 600_000
PSMD_MS = 10_000
# `ids` "needed all 5 seconds", "can be read back within 10 seconds after set"
# (apikeys-en.md); no refresh for 10-15 s means no surplus (syssi README)
IDS_LAPSE_S = 10.0
NOMINAL_V = 230.0


@dataclass(slots=True)
class Car:
    """The car at the plug: how much it takes and how much it still needs."""

    max_current_a: float = 16.0
    phases: int = 3
    energy_needed_wh: float = 20_000.0
    # How long after plug-in the car asks for current: until then the go-e shows car=3,
    # WaitCar (IEC 61851 state B before C; go-eCharger-API-v2 #248: car 3 after reconnect).
    wake_s: float = 0.0
    # Some cars stop at car=4 after the charger's phase switch and charge again only when
    # re-plugged (go-eCharger-API-v2 #144, an Audi e-tron, "mostly but not every time").
    resumes_after_phase_switch: bool = True


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
    # "v1"/"v2" (any str enum with these values); None: the profile's API
    api: Api | str | None = None
    serial: str = "000001"
    firmware: str | None = None
    variant_kw: int = 11
    # A firmware line (profiles.PROFILES); None: profiles.DEFAULT for the API
    profile: Profile | str | None = None
    # go-e API v2 #5, #6: alw follows frc "after several seconds"; None: the profile's
    alw_delay_s: float | None = None
    # psmd: 10 s without current during a phase switch (56.9 capture `psmd` 10000)
    phase_switch_pause_s: float = PSMD_MS / 1000
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
    amp: int = 16  # the current in effect
    amp_eeprom: int = 16  # the stored `amp` (v1: the flash; back after a reboot)
    # psm 0 = auto, the charger's own phase logic: the default (apikeys-en.md `psm`)
    psm: int = 0
    # Settings (60.4 key export): lmo logic mode (Default=3, Awattar/Eco=4, NextTrip=5), fup
    # usePvSurplus, acs access control (Open=0, Wait=1), mcr MQTT read-only; su
    # simulateUnpluggingShort, a stored setting.
    lmo: int = 3
    fup: bool = False
    # acp allowChargePause: without it Eco mode keeps charging at the minimum without a
    # surplus, modelStatus 20 (go-eCharger-API-v2 #226, #171)
    acp: bool = True
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
    # car 0 (Unknown/Error) or 5 (Error) as the charge controller reports it; "null": no
    # connection to the charge controller (60.4 export: car/err "null if no connection to
    # charge ctrl established"). Set by `charge_ctrl_fault()`.
    car_fault: int | str | None = None
    writes: list[WriteRecord] = field(default_factory=list)
    eeprom_writes: int = 0
    requests: int = 0
    unplug_simulations: int = 0
    phase_switches: int = 0
    # RFID cards taught to the charger (`cards[i].name`), and the running transaction:
    # go-e apikeys-en.md `trx`: null = none, 0 = without card, n = card n-1
    card_names: list[str] = field(default_factory=list)
    trx: int | None = None
    in_flight: int = 0
    max_in_flight: int = 0
    faults: collections.deque[Fault] = field(default_factory=collections.deque)
    listeners: list[Callable[[], None]] = field(default_factory=list)

    _alw_pending: tuple[float, bool] | None = None
    # the charger's own phase switch: until when, to how many phases
    _switch_until: float = 0.0
    _switch_to: int = 3
    _last_toggle: float = -1e9
    _stuck_complete: bool = False  # after a switch the car did not resume from
    _phases_active: int = 3
    _plugged_at: float = 0.0
    _last_tick: float = 0.0
    _started: float = 0.0
    _boots: int = 1
    # V3 legacy: the `amx` the v1 status shows (late, go-eCharger-API-v1 #56/#57)
    _legacy_amx_shown: int | None = None
    _at: float | None = None  # the time the state is evaluated at, while energy is counted
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.profile, str):
            self.profile = profiles.get(self.profile)
        if self.profile is None:
            api = Api(str(self.api)) if self.api is not None else Api.V2
            self.profile = profiles.for_firmware(api, self.firmware)
        self.api = Api(str(self.api)) if self.api is not None else self.profile.api
        if self.firmware is None:
            self.firmware = self.profile.firmware
        if self.alw_delay_s is None:
            self.alw_delay_s = self.profile.alw_delay_s
        self._rng.seed(self.serial)  # reproducible per charger
        self._last_tick = self.clock()
        # created running, not freshly booted (a reboot() shows the boot)
        self._started = self._last_tick - self.spec.boot_init_s
        self._phases_active = 1 if self.psm == 1 else 3

    @property
    def spec(self) -> Profile:
        assert isinstance(self.profile, Profile)
        return self.profile

    def has(self, feature: str) -> bool:
        """Whether this charger's firmware and hardware have `feature` (firmware.SINCE)."""
        return feature not in self.spec.lacks and fw.has(self.firmware, feature)

    # ------------------------------------------------------------------ scripting

    @property
    def ama(self) -> int:
        return 16 if self.variant_kw == 11 else 32

    def plug(self, car: Car | None = None) -> None:
        self.advance()
        self.car = car or Car()
        self.complete = False
        self._stuck_complete = False
        self.session_wh = 0.0
        self.trx = None
        self._plugged_at = self.clock()
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
        self._stuck_complete = False
        self.trx = None  # the transaction ends with the session
        # go-e API v2 #117: frc resets to 0 (neutral) when the car is unplugged.
        if self.api == Api.V2:
            self._set_frc(0)
        self._changed()

    def reboot(self) -> None:
        """`amx` is volatile: after a reboot `amp` is the last value written with `amp`.
        A reboot also clears the API lock and a hung REST API."""
        self.advance()
        self.amp = self.amp_eeprom
        self._legacy_amx_shown = None
        self._boots += 1
        self._started = self.clock()
        self._switch_until = 0.0
        self.faults = collections.deque(f for f in self.faults if f.kind not in UNTIL_REBOOT)
        self._changed()

    def charge_ctrl_fault(self, code: int | str | None) -> None:
        """The charge controller reports `car` 0 (Unknown/Error) or 5 (Error), or "null" (no
        connection to it); None ends it."""
        self.car_fault = code
        self._changed()

    def inject(self, kind: str, count: int = 1, delay_s: float = 0.0) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; choose one of {', '.join(FAULT_KINDS)}")
        if kind in UNTIL_REBOOT:
            count = 1_000_000  # until reboot()
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
        assert self.alw_delay_s is not None
        self._alw_pending = (self.clock() + self.alw_delay_s, wanted)

    def _phases_wanted(self) -> int:
        if self.psm == 1:
            return 1
        if self.psm == 0 and self.eco_mode():
            # automatic phase switching in Eco mode: three phases from `spl3` of surplus
            return 3 if self._surplus_w() >= SPL3_W else 1
        return 3

    def _now(self) -> float:
        return self._at if self._at is not None else self.clock()

    def switching(self) -> bool:
        """The charger's own phase switch (a simulated unplug) is running: until `advance()`
        ends it, so every view of the charger agrees (while counting energy: as of then)."""
        if self._at is not None:
            return self._at < self._switch_until
        return self._switch_until > 0.0

    def _start_switch(self, phases: int) -> None:
        """A phase switch while a car is connected: the go-e stops, simulates an unplug for
        `psmd` and reconnects on the new phases (go-eCharger-API-v1 #54, go-e: "completely
        disconnects the car … and plugs it in on the different charger again")."""
        now = self.clock()
        self._switch_until = now + self.phase_switch_pause_s
        self._switch_to = phases
        self._last_toggle = now
        self.phase_switches += 1
        if self.spec.switch_style == "car1":
            # it looks like an unplug: frc goes back to neutral as on a real one
            # (go-eCharger-API-v2 #198: frc 1 → 0 during the switch; #117)
            self._set_frc(0)
        self._changed()

    def _end_switch(self) -> None:
        self._switch_until = 0.0
        self._phases_active = self._switch_to
        # `wh` starts again at the reconnect (go-eCharger-API-v2 #198: 3115.7 → 0.03)
        self.session_wh = 0.0
        if self.car is not None:
            self._plugged_at = self.clock()
            if not self.car.resumes_after_phase_switch:
                self._stuck_complete = True  # go-eCharger-API-v2 #144: until re-plugged
        self._changed()

    def eco_mode(self) -> bool:
        """go-e's own PV logic: Eco mode (`lmo=4`) with PV surplus on (`fup`) and not forced
        (`frc=0`) (syssi README: "lmo … must be set to 4 (Eco mode), and fup … true"); in
        Default mode (`lmo=3`) the charger ignores `ids`."""
        return self.api == Api.V2 and self.frc == 0 and self.lmo == 4 and self.fup

    def _surplus_w(self) -> float:
        """The PV surplus go-e's logic sees: -pGrid while `ids` is fresh (only pGrid is used
        in the calculation, syssi README), else none."""
        if self.ids is None or self.clock() - self.ids_at > IDS_LAPSE_S:
            return 0.0
        return max(0.0, -self.ids.get("pGrid", 0.0))

    def _pv_amps(self) -> float:
        phases = self.active_phases() or 1
        return math.floor(self._surplus_w() / (NOMINAL_V * phases))

    def own_logic_blocks(self) -> bool:
        """Not forced (frc=0), the charger's own logic decides: in Eco mode without enough
        surplus for 6 A, or in Next trip mode (lmo 5), it does not charge."""
        if self.api != Api.V2 or self.frc != 0:
            return False
        if self.lmo == 5:
            return True
        if self.eco_mode():
            return self._pv_amps() < 6 and self.acp
        return self.lmo == 4  # Eco without PV surplus charging: waits for a low price

    def access_waiting(self) -> bool:
        """acs=1: a session waits for a card or `trx=0` (apikeys-en.md `acs`, `trx`)."""
        return self.acs == 1 and self.car is not None and self.trx is None

    def charging_current(self) -> float:
        if not self.is_charging():
            return 0.0
        assert self.car is not None
        limits = [float(self.amp), self.car.max_current_a, float(self.ama)]
        if self.cbl:
            limits.append(float(self.cbl))
        if self.eco_mode():
            limits.append(max(6.0, self._pv_amps()))  # at least the minimum (acp false)
        return min(limits)

    def active_phases(self) -> int:
        """Phases the contactor switches through (1 or 3); 0 without a car."""
        if self.car is None:
            return 0
        return 1 if self.l1_on_n else self._phases_active

    def is_charging(self) -> bool:
        return (
            self.car is not None
            and self.car_fault is None
            and self.alw
            and not self.access_waiting()
            and not self.own_logic_blocks()
            and not self.complete
            and not self._stuck_complete
            and self.err == 0
            and not self.switching()
            and not self.initializing()
            and self._now() >= self._plugged_at + self.car.wake_s
        )

    def initializing(self) -> bool:
        return self._now() < self._started + self.spec.boot_init_s

    def advance(self) -> None:
        """Bring the simulation up to now: alw follows frc, energy flows, the car fills up."""
        now = self.clock()
        # events in their order, the energy of each stretch with the state it had
        while True:
            pending = self._alw_pending[0] if self._alw_pending else None
            due = [t for t in (pending, self._switch_until or None) if t is not None and t <= now]
            until = min(due) if due else now
            self._flow(until)
            if not due:
                break
            if self._alw_pending and self._alw_pending[0] <= until:
                self.alw = self._alw_pending[1]
                self._alw_pending = None
                self._changed()
            if self._switch_until and self._switch_until <= until:
                self._end_switch()
        self._phase_logic(now)

    def _flow(self, until: float) -> None:
        """Energy from the last tick to `until`, charged as the state was at its start."""
        elapsed = max(0.0, until - self._last_tick)
        self._at = self._last_tick
        try:
            power = self.power_w() if elapsed > 0 and self.is_charging() else 0.0
        finally:
            self._at = None
        self._last_tick = max(self._last_tick, until)
        if power:
            assert self.car is not None
            energy = power * elapsed / 3600
            self.eto_wh += energy
            self.session_wh += energy
            self.car.energy_needed_wh -= energy
            if self.car.energy_needed_wh <= 0:
                self.complete = True
                self._changed()

    def _phase_logic(self, now: float) -> None:
        """The phases the charger wants (psm, or its own choice in auto) differ from the
        active ones: switch, through a simulated unplug while a car is connected. The own
        choice toggles at most once per `mptwt` (60.4 export: "min phase toggle wait
        time"); whether `mptwt` also holds back a `psm` written over the API is unconfirmed
        (docs/protocol/go-e.md#open-points), so an API write switches at once."""
        if self.switching():
            return
        wanted = self._phases_wanted()
        if wanted == self._phases_active:
            return
        if self.car is None:
            self._phases_active = wanted  # nothing to disconnect
            return
        # its own choice (psm 0): only on a surplus it can act on, not more often than mptwt
        if self.psm == 0 and (self._surplus_w() <= 0 or now - self._last_toggle < MPTWT_MS / 1000):
            return
        self._start_switch(wanted)

    def car_code(self) -> int | None:
        if self.car_fault == "null":
            return None
        if isinstance(self.car_fault, int):
            return self.car_fault
        if self.initializing():
            return 6  # Initializing (60.x exports)
        if self.switching():
            return 1 if self.spec.switch_style == "car1" else 4
        if self.car is None:
            return 1
        if self._stuck_complete:
            return 4
        if self.is_charging():
            return 2
        if self.complete or (self.api == Api.V2 and self.frc == 1):
            return 4  # also after a force-off (go-e API v2 #156)
        return 3

    def model_status(self) -> int:
        if self.initializing():
            return 40  # NotChargingBecauseInitializing (60.4 export)
        if self.switching() and self.spec.switch_model_status:
            return 23  # NotChargingBecausePhaseSwitch
        if self.access_waiting():
            return 2  # NotChargingBecauseAccessControl
        if self.eco_mode() and self._pv_amps() >= 6:
            return 12  # ChargingBecausePvSurplus
        if self.eco_mode() and not self.acp:
            return 20  # ChargingBecauseChargePauseNotAllowed
        if self.own_logic_blocks():
            # illustrative: the code go-e shows for Eco without surplus is not documented
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
        assert self.car is not None or not amps
        n = min(self.car.phases, self.active_phases()) if amps and self.car else 0
        return [amps if i < n else 0.0 for i in range(3)]

    def power_w(self) -> float:
        return sum(v * a for v, a in zip(self.voltages(), self.currents(), strict=True))

    def pha_bits(self) -> list[bool]:
        """`pha`: voltage after the contactor on L1-L3 (bits 0-2), mains before it (bits
        3-5) (API v1 doc). After the contactor means switched through, not drawn from: a
        one-phase car on a three-phase contactor shows three (evcc PR #1609: `pha` 57 = mains
        on L1-L3, one phase switched through)."""
        before = [True, not self.l1_on_n, not self.l1_on_n]
        closed = self.is_charging()
        switched = self.active_phases() if closed else 0
        return [closed and i < switched and before[i] for i in range(3)] + before

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
        car = self.car_code()
        state: dict[str, Any] = {
            "alw": self.alw and not blocked,
            "acu": charging_allowed_current if self.alw and self.car else None,
            "amp": self.amp,
            "ama": self.ama,
            "frc": self.frc,
            "car": car,
            "err": None if self.car_fault == "null" else (5 if self.car_fault == 5 else self.err),
            "cbl": self.cbl,
            "pha": self.pha_bits(),
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
            "typ": self.spec.typ or "go-eCharger",
            "var": self.variant_kw,
            "oem": "go-e",
            "mca": 6,
            "lmo": self.lmo,
            "fup": self.fup,
            "acs": self.acs,
            "su": self.su,
            "acp": self.acp,
            "psmd": int(self.phase_switch_pause_s * 1000),
            "mptwt": MPTWT_MS,
            "spl3": SPL3_W,
            "hai": True,
            "hla": self.legacy_v1,
            "mcr": self.mcr,
            "wke": "simulated-wifi-key",  # a secret the bridge must never publish
            "cak": "simulated-cloud-key",
        }
        if self.has("ids") and self.ids is not None and self.clock() - self.ids_at <= IDS_LAPSE_S:
            state["pgrid"] = self.ids.get("pGrid")
            state["ppv"] = self.ids.get("pPv")
            state["pakku"] = self.ids.get("pAkku")
        # keys this firmware or hardware does not have are simply absent (marq24 #50)
        for key in self.missing_keys():
            state.pop(key, None)
        if keys is not None:
            state = {k: state[k] for k in keys if k in state}
        return state

    def missing_keys(self) -> set[str]:
        missing: set[str] = {key for key in ("psm", "cbl", "hla") if key in self.spec.lacks}
        if not self.has("psm"):
            missing.update({"psm", "psmd", "mptwt", "spl3"})
        if not self.has("mqtt_result"):
            missing.add("mcr")  # MQTT write access is a setting from 051.5 (mqtt-de.md)
        return missing

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
        self.advance()  # a switch the write started shows at once
        self._changed()
        failed = any(v is not True for v in answer.values())
        return (500 if failed else 200), answer

    def _apply_v2(self, key: str, value: Any) -> bool | str:
        # The texts of range and setter errors are go-e's (evcc #15952, go-e API v2 #30);
        # the one for a key the firmware does not have is illustrative.
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
            if not self.has("psm"):
                return "psm: unknown api key"
            low = 0 if self.has("psm_auto") else 1
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 2:
                return f"psm: failed: Value {value} exceeds range {low} to 2 ({value})"
            self.psm = value
            return True
        if key == "trx":
            # null ends, 0 authorises without a card, n = card n-1 (apikeys-en.md)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                return f"trx: failed: invalid value ({value})"
            self.trx = value
            return True
        if key == "ids":
            if not self.has("ids"):
                return "ids: unknown api key"
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
        if key in ("su", "fup", "mcr", "acp"):
            # stored settings (60.4 key export: R/W bool Config); `su` is whether a
            # simulated unplug is short, not a command to unplug
            if not isinstance(value, bool):
                return f"{key}: failed: expected a bool ({value})"
            setattr(self, key, value)
            return True
        return f"{key}: unknown api key"

    # ------------------------------------------------------------------ v1 rendering

    def status_v1(self) -> dict[str, Any]:
        """v1: scalars as strings, nrg/tma as numbers (go-e API v1 EN doc); on the V3 legacy
        emulation of 052.2 in A, W and Wh (go-eCharger-API-v1 #100, #103)."""
        self.advance()
        si = self.api == Api.V2 and self.spec.legacy_si_units
        volts = self._measured(self.voltages(), 1.0, 0)  # whole volts, as in the capture
        amps = self._measured(self.currents(), 0.1, 2)
        pha = self.pha_bits()
        nrg: list[int | float] = [
            *(int(v) for v in volts),
            1,
            *(round(a, 1) if si else round(a * 10) for a in amps),  # A / 0.1 A
            # W / 0.1 kW
            *(round(v * a) if si else round(v * a / 100) for v, a in zip(volts, amps, strict=True)),
            0,
            round(self.power_w()) if si else round(self.power_w() / 10),  # W / 0.01 kW
            *(99 if a else 0 for a in amps),
            0,
        ]
        if self.l1_on_n:
            # L1's voltage, power and power factor arrive on the N sensor (v1 doc, nrg app
            # logic); only L1 is present before the contactor
            nrg[3], nrg[0] = nrg[0], 2
            nrg[10], nrg[7] = nrg[7], 0
            nrg[15], nrg[12] = nrg[12], 0
        status: dict[str, Any] = {
            "version": "B",
            "car": str(self.car_code() or 0),
            "amp": str(self.amp),
            "err": str(self.err),
            "ast": "0",
            "alw": "1" if self.alw else "0",
            "stp": "0",
            "cbl": str(self.cbl or 0),
            "pha": str(sum(1 << i for i, bit in enumerate(pha) if bit)),
            "tmp": "21",
            "dws": str(round(self.session_wh * 360)),
            "dwo": "0",
            "adi": "0",
            "uby": "0",
            "eto": str(int(self.eto_wh) if si else int(self.eto_wh / 100)),  # Wh / 0.1 kWh
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
        if self.api == Api.V1 and self.spec.amx_key:
            # 042.0: its own `amx` (the current in effect), `amp` the stored value
            status["amp"] = str(self.amp_eeprom)
            status["amx"] = str(self.amp)
        if self.api == Api.V2:
            # V3 legacy emulation: fsp and amx beside amp (go-e API v1 DE doc "GO-E V3";
            # evcc PR #1609 and MK-2001/ioBroker.go-e #62 show "amx" and "amp")
            status["fsp"] = "1" if self._phases_active == 1 else "0"
            shown = self._legacy_amx_shown if self._legacy_amx_shown is not None else self.amp
            status["amx"] = str(shown)
            self._legacy_amx_shown = None  # the next status shows the new value
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
        amx_before = self.amp
        if value is not None:
            if key == "alw" and value in (0, 1):
                self.alw = bool(value)
                self._alw_pending = None
                if self.api == Api.V2:  # V3 legacy: alw sets frc (go-e API v2 #136)
                    self.frc = 2 if value else 1
                accepted = True
            elif key == "amx" and self.has("amx") and 6 <= value <= 32:
                if self.spec.amx_capped_by_stored_amp and value > self.amp_eeprom:
                    pass  # 042.0 ignores it; the status says so by not changing
                elif self.api == Api.V2:
                    # V3 legacy: amx also changes amp, which survives a reboot (API v2 #23)
                    self.amp = self.amp_eeprom = value
                    accepted = True
                else:
                    self.amp = value  # volatile: not in EEPROM
                    accepted = True
            elif key == "amp" and 6 <= value <= 32:
                self.amp = self.amp_eeprom = value
                self.eeprom_writes += 1
                accepted = True
        self._record(key, value if value is not None else text, accepted, via)
        self._changed()
        if accepted and key == "amx" and self.api == Api.V2 and self.spec.legacy_amx_lags:
            self._legacy_amx_shown = amx_before
        return self.status_v1()

    def _record(self, key: str, value: Any, accepted: bool, via: str) -> None:
        self.writes.append(WriteRecord(self.clock(), key, value, accepted, via))
        if len(self.writes) > 10_000:
            del self.writes[:5_000]

    def snapshot(self) -> dict[str, Any]:
        """Internals for tests and the control endpoint."""
        self.advance()
        return {
            "api": self.api.value if isinstance(self.api, Api) else str(self.api),
            "profile": self.spec.name,
            "firmware": self.firmware,
            "plugged": self.car is not None,
            "charging": self.is_charging(),
            "switching": self.switching(),
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
