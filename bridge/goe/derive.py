"""What the bridge derives from a charger's status across polls, where one payload alone
cannot tell the truth. Pure: no I/O, no await (the clock is injected).

- `SessionEnergy`: the session energy from `eto` deltas since plug-in (API v2). go-e's own
  `wh` resets after a phase switch or a pause on V3+ (go-eCharger-API-v2 #198, #223), and
  evcc stopped using it for that (evcc #13726, #17681). go-e's value stays available as
  `energy_session_charger_wh`. It also holds the plug and the car state through the
  charger's own phase switch, which looks like an unplug, and across codes that say nothing
  about the plug.
- (the all-zero meter fault needs one payload only: codec_common.meter_fault)
- `setting_warnings`: charger settings that fight an external controller.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from .model import SWITCH_MODEL_STATUS, ApiVersion, ChargerStatus, evolve

# go-e's phase switch is a simulated unplug: `car` 1 and `frc` 0 for several seconds, then
# the car reconnects with `wh` restarted (go-eCharger-API-v2 #198: psm written, 15 s later
# car=1/frc=0, 16 s later car 4 with wh 0.03; #248 on 56.8: car 1, 10 s later car 3). After
# the bridge wrote `psm`, or the status shows a changed `psm`, a `car` 1 is taken for the
# switch for at most this long; a real unplug in that time shows after it.
SWITCH_HOLD_S = 60.0
# A restored session baseline is taken when go-e's own `wh` grew at least as much as `eto`
# since it was saved (no `wh` restart in between: the same session), within this slack.
RESTORE_SLACK_WH = 5.0


class SessionEnergy:
    """`energy_session_wh` = `eto` now − `eto` at plug-in, on API v2.

    The baseline is taken on the first plugged-in poll. A bridge that starts in the middle of
    a session takes the baseline it saved (`snapshot()`/`restore()`) when the charger's `wh`
    shows the session went on since, else go-e's `wh` as what was charged before it (the best
    there is; a `wh` that already reset after a phase switch makes that part too small).
    After unplugging, the last session's value stays until the next car (at start-up with
    no car: go-e's `wh`). On API v1 `dws` is kept: HW V1/V2 has no phase switching, and
    `eto` there counts in 0.1 kWh (v1 doc), too coarse for a session.

    `plugged` and `car_state` hold their last known values while the charger's own phase
    switch runs (see SWITCH_HOLD_S), and `plugged` while `car` says nothing about the plug
    (0, 5, 6, null: codec_common.PLUG_KNOWN), so the baseline, Home Assistant's automations
    and openWB's session survive a switch.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.baseline: float | None = None
        self.last: float | None = None
        self.total: float | None = None  # `eto` at the last apply
        self.charger_wh: float | None = None  # go-e's `wh` at the last apply
        self._restored: dict[str, float] | None = None
        self._switch_from: float | None = None  # a phase switch may run since then
        self._phases: int | str | None = None
        self._plugged: bool | None = None  # the last known plug state, and its car_state
        self._car_state: str | None = None
        self.held = False  # the last status had its plug state held
        self._in_switch = False  # a switch's unplug was held

    # ------------------------------------------------------------------ hooks

    def phase_switch_written(self) -> None:
        """The bridge wrote `psm`: a `car` 1 in the next SWITCH_HOLD_S is the switch."""
        self._switch_from = self.clock()

    def snapshot(self) -> dict[str, float | None]:
        """What a restarted bridge needs to go on counting this session (JSON-able)."""
        return {
            "baseline": self.baseline,
            "last": self.last,
            "total": self.total,
            "charger_wh": self.charger_wh,
        }

    @property
    def pending(self) -> bool:
        """A restored snapshot waits for the first plugged-in status to be taken or not."""
        return self._restored is not None

    def restore(self, data: Any) -> bool:
        """Take a `snapshot()` of a previous run; checked against the charger's first
        plugged-in status (a session that ended while the bridge was away is not
        continued). False (and nothing taken) for anything that is not a valid snapshot."""
        if not isinstance(data, Mapping):
            return False
        values: dict[str, float] = {}
        for key in ("baseline", "last", "total", "charger_wh"):
            value = data.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
            if not math.isfinite(value) or value < 0:
                return False
            values[key] = float(value)
        if "baseline" not in values or "total" not in values or "charger_wh" not in values:
            return False
        if values["total"] < values["baseline"]:
            return False
        self._restored = values
        return True

    # ------------------------------------------------------------------ per status

    def apply(self, status: ChargerStatus) -> ChargerStatus:
        if status.api_version is not ApiVersion.V2:
            return status  # the codec gives dws as both
        status = self._hold_plug(status)
        charger_wh = status.energy_session_charger_wh
        total = status.energy_total_wh
        if status.plugged is False:
            self.baseline = None
            self._restored = None
            if self.last is None:
                self.last = charger_wh  # the last session, from before the bridge started
        elif status.plugged and total is not None:
            if self.baseline is None and self._restored is not None:
                self._take_restored(total, charger_wh)
            if self.baseline is None or total < self.baseline:
                # `eto` is whole Wh on some firmware, `wh` is not: within 1 Wh it is this session
                fits = charger_wh is not None and 0 <= charger_wh <= total + 1
                before = min(charger_wh, total) if fits and charger_wh is not None else 0
                self.baseline = total - before
            self.last = round(total - self.baseline, 3)
        self.total = total if total is not None else self.total
        self.charger_wh = charger_wh if charger_wh is not None else self.charger_wh
        if self.last == status.energy_session_wh:
            return status
        return evolve(status, energy_session_wh=self.last)

    def _take_restored(self, total: float, charger_wh: float | None) -> None:
        saved = self._restored
        self._restored = None
        if saved is None or charger_wh is None or total < saved["total"]:
            return
        # the same session: `wh` went on from where it was, as far as `eto` did
        grown = charger_wh - saved["charger_wh"]
        moved = total - saved["total"]
        if grown + RESTORE_SLACK_WH + 0.01 * moved >= moved:
            self.baseline = saved["baseline"]

    def _hold_plug(self, status: ChargerStatus) -> ChargerStatus:
        now = self.clock()
        if (
            status.phases is not None
            and self._phases is not None
            and status.phases != self._phases
            and self._plugged
        ):
            self._switch_from = now  # psm changed (the app, or another client)
        self._phases = status.phases if status.phases is not None else self._phases
        switch = status.model_status_code in SWITCH_MODEL_STATUS or (
            self._switch_from is not None and now - self._switch_from <= SWITCH_HOLD_S
        )
        unknown = status.plugged is None
        if self._plugged and unknown:
            # the code says nothing about the plug; the state it names is shown as it is
            self.held = True
            return evolve(status, plugged=True)
        if self._plugged and status.plugged is False and switch:
            self.held = self._in_switch = True
            return evolve(status, plugged=True, car_state=self._car_state)
        self.held = False
        if status.plugged is not None:
            if self._in_switch and status.plugged:
                self._switch_from = None  # reconnected: the switch is over
                self._in_switch = False
            self._plugged = status.plugged
            self._car_state = status.car_state
        return status


# go-e API v2 apikeys-en.md / the 60.4 key export: `lmo` logic mode (Default=3, Awattar=4,
# AutomaticStop/NextTrip=5; the app calls 4 "Eco"), `fup` usePvSurplus, `acs` access control
# (Open=0, Wait=1, EVCMS=2), `mcr` MQTT read-only, `frc` force state.
# docs/protocol/go-e.md#settings: never change them, warn when they are not what the chosen
# way of control needs.
LOGIC_MODES = {3: "default", 4: "eco", 5: "next_trip"}


SETTING_KEYS = ("lmo", "fup", "acs", "mcr", "frc")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def setting_warnings(
    raw: Mapping[str, Any], *, mqtt_writes: bool = False, pv_input: bool = False
) -> dict[str, str]:
    """Settings on the charger that fight an external controller: key → what to do.

    With the PV input in use (`pv/set`), go-e's own PV logic decides, and it needs Eco mode
    (`lmo=4`), PV surplus charging on (`fup=true`) and the force state neutral (`frc=0`)
    (syssi/homeassistant-goecharger-mqtt README: "lmo … must be set to 4 (Eco mode), and
    fup … true"; go-eCharger-API-v2 #207, #208, #226): then those are the right settings and
    the warnings say the opposite."""
    out: dict[str, str] = {}
    lmo = _int(raw.get("lmo"))
    fup = raw.get("fup")
    if pv_input:
        if lmo is not None and lmo != 4:
            mode = LOGIC_MODES.get(lmo, str(lmo))
            out["lmo"] = (
                f"logic mode is {mode} (lmo={lmo}): go-e's PV logic, fed by pv/set, works "
                "only in Eco mode; set the app's charging mode to Eco (lmo=4)"
            )
        if fup is False:
            out["fup"] = (
                "PV surplus charging is off (fup=false): the charger ignores what pv/set "
                "feeds it; switch on 'use PV surplus' in the app's Eco settings"
            )
        if _int(raw.get("frc")) == 2:
            out["frc"] = (
                "the charger is forced on (frc=2): go-e's PV logic decides only while it is "
                "not forced; use control.enable_mode: neutral with the PV input"
            )
    else:
        if lmo is not None and lmo != 3:
            mode = LOGIC_MODES.get(lmo, str(lmo))
            out["lmo"] = (
                f"logic mode is {mode} (lmo={lmo}): the charger's own eco logic decides when "
                "to charge while it is not forced; set the app's charging mode to Default, "
                "or feed its PV logic with pv/set"
            )
        if fup is True:
            out["fup"] = (
                "PV surplus charging is on (fup=true): the charger's own PV logic fights the "
                "controller; switch it off in the app, or feed it with pv/set instead"
            )
    acs = raw.get("acs")
    if isinstance(acs, int) and not isinstance(acs, bool) and acs != 0:
        out["acs"] = (
            f"access control is on (acs={acs}): a session waits for a card or an app "
            "authorisation; set control.authorize: true to let the bridge authorise it (trx=0)"
        )
    if mqtt_writes and raw.get("mcr") is True:
        out["mcr"] = (
            "the charger's MQTT is read-only (mcr=true): commands over MQTT are ignored; "
            "allow writes in the app (API settings)"
        )
    return out
