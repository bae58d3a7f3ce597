"""What one charger's statuses tell the user beyond the values: values the decoder had to
leave out, the meter fault, and charger settings that fight the controller. Logged once per
episode (not per poll) and kept for `bridge/info` and the status page."""

from __future__ import annotations

from collections.abc import Callable

from . import logs
from .goe import derive
from .goe.model import ChargerStatus

__all__ = ["ChargerDiagnostics"]

log = logs.get("goe_bridge")


class ChargerDiagnostics:
    def __init__(
        self,
        charger: str,
        *,
        control_source: str,
        authorize: bool,
        mqtt_writes: bool,
        on_warnings: Callable[[], None] = lambda: None,
        pv_input: Callable[[], bool] = lambda: False,
    ) -> None:
        self.charger = charger
        self.control_source = control_source
        self.authorize = authorize
        self.mqtt_writes = mqtt_writes
        self.on_warnings = on_warnings
        self.pv_input = pv_input  # pv/set feeds go-e's PV logic: lmo=4 and fup are right
        # charger settings that fight the controller: key → advice (log, bridge/info, page)
        self.setting_warnings: dict[str, str] = {}
        self._settings_seen: tuple[object, ...] | None = None
        self._dropped: set[str] = set()
        self._meter_fault = False

    def observe(self, status: ChargerStatus) -> None:
        self._note_dropped(status)
        self._note_meter_fault(status)
        self._note_settings(status)

    def plausibility_event(self, event: str, fields: dict[str, object]) -> None:
        level = log.warning if event == "status.implausible" else log.info
        level(event, charger=self.charger, **fields)

    def _note_dropped(self, status: ChargerStatus) -> None:
        """A value the decoder had to leave out: logged once per key and episode."""
        keys = {text.split(":", 1)[0].split("[", 1)[0]: text for text in status.dropped}
        for key, text in keys.items():
            if key not in self._dropped:
                log.warning("status.value_dropped", charger=self.charger, key=key, error=text)
        self._dropped = set(keys)

    def _note_meter_fault(self, status: ChargerStatus) -> None:
        if bool(status.meter_fault) != self._meter_fault:
            self._meter_fault = bool(status.meter_fault)
            if self._meter_fault:
                # go-eCharger-API-v2 #321 (fw 60.4): all-zero nrg while charging
                log.warning(
                    "status.meter_fault",
                    charger=self.charger,
                    firmware=status.firmware,
                    message="the charger reports 0 V and 0 W while charging (a known firmware "
                    "fault); the meter values are left out",
                )
            else:
                log.info("status.meter_ok", charger=self.charger)

    def _note_settings(self, status: ChargerStatus) -> None:
        """Warn once at start-up and on every change (docs/protocol/go-e.md#settings)."""
        pv_input = self.pv_input()
        settings = (*(status.raw.get(key) for key in derive.SETTING_KEYS), pv_input)
        if not status.raw or settings == self._settings_seen:
            return  # checked on every poll: the warnings only when the settings changed
        self._settings_seen = settings
        warnings = derive.setting_warnings(
            status.raw, mqtt_writes=self.mqtt_writes, pv_input=pv_input
        )
        if self.control_source == "none":
            warnings = {}  # nobody controls this charger: its own logic is the point
        elif self.authorize and status.access_control == "wait":
            warnings.pop("acs", None)  # the bridge authorises the sessions itself
        for key, text in warnings.items():
            if self.setting_warnings.get(key) != text:
                log.warning("charger.setting_conflict", charger=self.charger, key=key,
                            message=text)  # fmt: skip
        for key in self.setting_warnings.keys() - warnings.keys():
            log.info("charger.setting_ok", charger=self.charger, key=key)
        if warnings != self.setting_warnings:
            self.setting_warnings = warnings
            self.on_warnings()
