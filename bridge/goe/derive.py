"""What the bridge derives from a charger's status across polls, where one payload alone
cannot tell the truth. Pure: no I/O, no await.

- `SessionEnergy`: the session energy from `eto` deltas since plug-in (API v2). go-e's own
  `wh` resets after a phase switch or a pause on V3+ (go-eCharger-API-v2 #198, #223), and
  evcc stopped using it for that (evcc #13726, #17681). go-e's value stays available as
  `energy_session_charger_wh`.
- (the all-zero meter fault needs one payload only: codec_common.meter_fault)
- `setting_warnings`: charger settings that fight an external controller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import ApiVersion, ChargerStatus, evolve


class SessionEnergy:
    """`energy_session_wh` = `eto` now − `eto` at plug-in, on API v2.

    The baseline is taken on the first plugged-in poll. A bridge that starts in the middle of
    a session takes go-e's `wh` as what was charged before it (the best there is; a `wh` that
    already reset after a phase switch makes that part too small). After unplugging, the last
    session's value stays until the next car (at start-up with no car: go-e's `wh`). On
    API v1 `dws` is kept: HW V1/V2 has no phase switching, and `eto` there counts in
    0.1 kWh (v1 doc), too coarse for a session.
    """

    def __init__(self) -> None:
        self.baseline: float | None = None
        self.last: float | None = None

    def apply(self, status: ChargerStatus) -> ChargerStatus:
        if status.api_version is not ApiVersion.V2:
            return status  # the codec gives dws as both
        charger_wh = status.energy_session_charger_wh
        total = status.energy_total_wh
        if status.plugged is False:
            self.baseline = None
            if self.last is None:
                self.last = charger_wh  # the last session, from before the bridge started
        elif status.plugged and total is not None:
            if self.baseline is None or total < self.baseline:
                before = charger_wh if charger_wh is not None and 0 <= charger_wh <= total else 0
                self.baseline = total - before
            self.last = round(total - self.baseline, 3)
        if self.last == status.energy_session_wh:
            return status
        return evolve(status, energy_session_wh=self.last)


# go-e API v2 apikeys-en.md / the 60.4 key export: `lmo` logic mode (Default=3, Awattar=4,
# AutomaticStop/NextTrip=5), `fup` usePvSurplus, `acs` access control (Open=0, Wait=1,
# EVCMS=2), `mcr` MQTT read-only. docs/protocol/go-e.md#settings: never change them, warn when they
# are not what an external controller needs.
LOGIC_MODES = {3: "default", 4: "awattar", 5: "next_trip"}


SETTING_KEYS = ("lmo", "fup", "acs", "mcr")


def setting_warnings(raw: Mapping[str, Any], *, mqtt_writes: bool = False) -> dict[str, str]:
    """Settings on the charger that fight an external controller: key → what to do."""
    out: dict[str, str] = {}
    lmo = raw.get("lmo")
    if isinstance(lmo, int) and not isinstance(lmo, bool) and lmo != 3:
        mode = LOGIC_MODES.get(lmo, str(lmo))
        out["lmo"] = (
            f"logic mode is {mode} (lmo={lmo}): the charger's own eco logic decides when to "
            "charge while it is not forced; set the app's charging mode to Default"
        )
    if raw.get("fup") is True:
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
