"""The go-e for openWB 1.9 through its "MQTT-EVSE" and "MQTT Ladeleistung" inputs
(docs/protocol/openwb.md#openwb-19): plain text, not JSON.

- Set point: `openWB/lp/<n>/AConfigured` (A; 0 = stop), published by openWB's pubmqtt.sh.
- The bridge publishes `openWB/set/lp/<n>/{plugStat,chargeStat,W,kWhCounter,VPhase1..3,
  APhase1..3}` retained every cycle; openWB's mqttsub.py handles and clears each one.
- Liveness: pubmqtt.sh publishes `AConfigured` only when it changes, so its silence means
  nothing. openWB clearing the bridge's `openWB/set/lp/<n>/…` topics (an empty retained
  message per handled topic) shows openWB is alive; without either for `failsafe.timeout_s`,
  the failsafe applies.
"""

from __future__ import annotations

from typing import Any

from .. import jsontext
from ..goe.model import Target
from . import mapping
from .common import OpenWBController


class OpenWB19(OpenWBController):
    source = "openwb-1.9"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lp = self.charger.control.lp
        self.in_topic = f"openWB/lp/{lp}/AConfigured"
        self.out_prefix = f"openWB/set/lp/{lp}"
        self.current: float | None = None

    def start(self) -> None:
        super().start()
        self.link.subscribe(self.in_topic, self._on_current, latest_only=True)
        self.link.subscribe(f"{self.out_prefix}/+", self._on_cleared)

    def _on_current(self, topic: str, payload: bytes, retain: bool) -> None:
        text = payload[: jsontext.MAX_PAYLOAD_BYTES].decode("utf-8", "replace").strip()
        if not text:
            return
        try:
            current = jsontext.parse_number(text)  # ASCII digits only, no nan/inf
        except ValueError:
            self.reject(topic, payload, "expected a number of amps as plain text")
            return
        if not 0 <= current <= 32:
            self.reject(topic, payload, f"{current:g} A is outside 0..32")
            return
        self.current = current
        self._update(live=not retain)

    def _on_cleared(self, topic: str, payload: bytes, retain: bool) -> None:
        if payload == b"" and self.current is not None:
            # openWB's mqttsub handled one of our values: it is alive
            self._update(live=True)

    def _update(self, *, live: bool) -> None:
        """`live`: a new message from openWB (see OpenWBMqttChargepoint._update: its retained
        `AConfigured`, delivered again on every reconnect, is no sign of life)."""
        assert self.current is not None
        target = (
            Target(allow=True, current_a=self.current) if self.current >= 6 else Target(allow=False)
        )
        if live:
            self.heard(target)
        else:
            self.restored(target)

    def publish_values(self) -> None:
        for key, text in mapping.legacy19_values(self.status, self.unreachable).items():
            self.link.publish(f"{self.out_prefix}/{key}", text, retain=True)
