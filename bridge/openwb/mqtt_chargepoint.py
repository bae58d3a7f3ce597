"""The go-e as an openWB 2.x chargepoint of type "MQTT" (docs/protocol/openwb.md#mqtt-chargepoint).

openWB publishes `openWB/mqtt/chargepoint/<id>/set/current` (JSON float A, every control cycle)
and `…/set/phases_to_use`; the bridge publishes the complete required value set to
`openWB/set/mqtt/chargepoint/<id>/get/*` every cycle (openWB's setdata validates, republishes
and clears them, so they must come again each cycle; `imported` and `exported` included,
openWB's code requires them). With `legacy_topics: true`, the pre-2.1.8 topics are used:
`openWB/chargepoint/<id>/set/*` in, `openWB/set/chargepoint/<id>/get/*` out.

openWB sends no heartbeat: `set/current` arriving every cycle is the liveness signal, and
`failsafe.timeout_s` without it applies the failsafe.
"""

from __future__ import annotations

from typing import Any

from ..goe.model import ApiVersion, Target
from ..inputs import Invalid, as_float, as_int
from ..inputs import decode as decode_payload
from . import mapping
from .common import OpenWBController


class OpenWBMqttChargepoint(OpenWBController):
    source = "openwb-mqtt"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cp = self.charger.control.chargepoint_id
        if self.charger.control.legacy_topics:
            self.in_prefix = f"openWB/chargepoint/{cp}/set"
            self.out_prefix = f"openWB/set/chargepoint/{cp}/get"
            self.rfid_topic = f"openWB/chargepoint/{cp}/get/rfid"
        else:
            self.in_prefix = f"openWB/mqtt/chargepoint/{cp}/set"
            self.out_prefix = f"openWB/set/mqtt/chargepoint/{cp}/get"
            self.rfid_topic = f"openWB/mqtt/chargepoint/{cp}/get/rfid"
        self.current: float | None = None
        self.phases: int | None = None

    def start(self) -> None:
        super().start()
        self.link.subscribe(f"{self.in_prefix}/current", self._on_current, latest_only=True)
        self.link.subscribe(f"{self.in_prefix}/phases_to_use", self._on_phases, latest_only=True)
        self.link.subscribe(self.rfid_topic, self._on_rfid)

    def _on_current(self, topic: str, payload: bytes, retain: bool) -> None:
        if not payload:
            return
        try:
            # positive = charge, 0 = stop; negative (discharge) is not possible on a go-e
            current = as_float(decode_payload(payload), -1000, 1000)
        except (Invalid, UnicodeDecodeError) as exc:
            self.reject(topic, payload, str(exc))
            return
        self.current = current
        self._update(live=not retain)

    def _on_phases(self, topic: str, payload: bytes, retain: bool) -> None:
        if not payload:
            return
        try:
            phases = as_int(decode_payload(payload), 0, 3)
        except (Invalid, UnicodeDecodeError) as exc:
            self.reject(topic, payload, str(exc))
            return
        if phases not in (1, 3):
            return  # 0 / 2: nothing to switch to
        if self.status is not None and self.status.api_version is ApiVersion.V1:
            self.reject(topic, payload, "phase switching is not supported by API v1 chargers")
            return
        # openWB publishes set/phases_to_use whenever its module starts (every openWB start)
        # and on each switch_phases (modules/chargepoints/mqtt/chargepoint_module.py): a
        # request for the phases the charger already has writes nothing and holds nothing;
        # the plug state is held only once `psm` is written (on_charger_write).
        self.phases = phases
        if self.current is not None:
            self._update(live=not retain)

    def _on_rfid(self, topic: str, payload: bytes, retain: bool) -> None:
        # openWB clears a scanned tag by publishing "" here (clear_rfid in
        # modules/chargepoints/mqtt/chargepoint_module.py); our own values echo here too
        if payload in (b"", b'""', b"null"):
            mapping.clear_rfid(self.map_state)

    def _update(self, *, live: bool) -> None:
        """`live`: a new message from openWB. openWB's retained set point, delivered again on
        every reconnect, is its last intent but no sign of life (a link flapping every few
        seconds must not keep the failsafe away while openWB is gone)."""
        assert self.current is not None
        if self.current >= 6:
            target = Target(allow=True, current_a=self.current, phases=self.phases)
        else:
            target = Target(allow=False, phases=self.phases)
        if live:
            self.heard(target)
        else:
            self.restored(target)

    def publish_values(self) -> None:
        values = mapping.chargepoint_values(
            self.status, self.map_state, unreachable=self.unreachable, now=self.clock()
        )
        # fault_state/fault_str are not read for MQTT chargepoints
        # (docs/protocol/openwb.md#mqtt-chargepoint)
        values.pop("fault_state", None)
        values.pop("fault_str", None)
        mapping.update_rfid(self.status, self.map_state, self.wall_clock())
        values["rfid"] = self.map_state.rfid  # every cycle; null after openWB's clear
        if self.map_state.rfid_timestamp is not None:
            values["rfid_timestamp"] = self.map_state.rfid_timestamp
        for key, value in values.items():
            if value is None and key != "rfid":
                continue  # setdata rejects null for numbers: the value is just not sent
            self.link.publish(f"{self.out_prefix}/{key}", mapping.encode(value), retain=True)
