"""What the three openWB adapters share."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from .. import jsontext, logs
from ..config import ChargerConfig
from ..control.base import Controller
from ..goe.model import ChargerStatus, Target, WireValue
from ..mqtt.link import BrokerLink
from ..mqtt.messages import Outgoing
from . import mapping

log = logs.get("goe_bridge.openwb")

# docs/protocol/openwb.md#usage-terms: the project must quote this wherever an openWB mode is
# enabled.
USAGE_TERMS_NOTICE = (
    "openWB's usage terms (shipped with openWB 2.x, 'Datenschutzerklärung & "
    "Nutzungsbedingungen') restrict virtual/MQTT chargepoints to the openWB simulator and "
    "forbid emulating openWB hardware: 'Es ist untersagt, echte bzw. physische Ladepunkte über "
    "Adapter oder Emulatoren als MQTT Ladepunkt in openWB zu betreiben. Ebenso ist das "
    "Emulieren von openWB Hardware - auch zu Testzwecken - untersagt.' Check the terms for "
    "your setup."
)


# A go-e phase switch: about psmd (10 s) without current, then the car starts again
# (docs/protocol/go-e.md#phase-switch, go-e API v2 #248); the plug state is held at most this long.
PHASE_SWITCH_HOLD_S = 45.0


class RetainedValues:
    """Publishes a set of retained topics: on change, and all of them every `refresh_s`.
    Topics ending in one of `expiring` go out with an MQTT 5 message expiry of
    EXPIRY_PERIODS × `refresh_s`: after a crash of the bridge nobody is left to say that the
    charger's live values are gone, and a reader must not take them as live for ever."""

    EXPIRY_PERIODS = 2.5

    def __init__(
        self,
        publish: Callable[..., None],
        refresh_s: float = 60.0,
        *,
        expiring: tuple[str, ...] = (),
    ) -> None:
        self.publish = publish
        self.refresh_s = refresh_s
        self.expiring = expiring
        self.expiry_s = math.ceil(refresh_s * self.EXPIRY_PERIODS)
        self._sent: dict[str, str] = {}
        self._last_full = -1e9

    def update(self, values: Mapping[str, str], now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        full = now - self._last_full >= self.refresh_s
        if full:
            self._last_full = now
        sent = 0
        for topic, payload in values.items():
            if full or self._sent.get(topic) != payload:
                self._sent[topic] = payload
                expiry = self.expiry_s if topic.endswith(self.expiring) else None
                self.publish(topic, payload, retain=True, expiry_s=expiry)
                sent += 1
        return sent

    def replay(self) -> list[tuple[str, str] | Outgoing]:
        return [
            Outgoing(
                topic,
                payload.encode(),
                True,
                0,
                self.expiry_s if topic.endswith(self.expiring) else None,
            )
            for topic, payload in self._sent.items()
        ]


class OpenWBController(Controller):
    """An openWB adapter: a controller that also publishes the chargepoint's values."""

    def __init__(
        self,
        charger: ChargerConfig,
        *,
        on_target: Callable[[Target | None], None],
        on_state: Callable[[Mapping[str, Any]], None],
        link: BrokerLink,
        phase_switch_wait: Callable[[], float | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(charger, on_target=on_target, on_state=on_state, clock=clock)
        self.link = link
        self.wall_clock = wall_clock
        self.unreachable: str | None = "no status yet"
        self.rejected = 0
        self.map_state = mapping.MappingState()
        # how long a requested phase switch still waits for the rate guard
        self.phase_switch_wait = phase_switch_wait
        # the phase count being switched to, while the switch runs
        self.switching_to: int | None = None
        log.warning(
            "openwb.usage_terms",
            charger=self.charger.key,
            source=self.source,
            notice=USAGE_TERMS_NOTICE,
        )

    def on_status(self, status: ChargerStatus) -> None:
        super().on_status(status)
        if (
            self.switching_to is not None
            and status.phases == self.switching_to
            and (status.charging or not status.plugged)
        ):
            # the switch is over: the charger shows the new phases and charges again
            self.switching_to = None
            self.map_state.hold_plug_until = 0.0
        if self.unreachable is not None:
            self.map_state.error_since = None
            self.map_state.outage_hold_until = 0.0
        self.unreachable = None
        self.publish_values()

    def on_unavailable(self, reason: str, since: float | None = None) -> None:
        if self.map_state.error_since is None:
            self.map_state.error_since = round(self.wall_clock(), 3)
        if self.unreachable is None and self.status is not None:
            # a charger that answered before: its last values stand for a while, counted
            # from the first failed read as openWB's own secondary counts
            now = self.clock()
            until = (now if since is None else min(since, now)) + mapping.OUTAGE_HOLD_S
            self.map_state.outage_hold_until = until
            asyncio.get_running_loop().call_later(
                max(0.0, until - now) + 0.1, self._outage_hold_over
            )
        self.unreachable = reason
        self.publish_values()

    def _outage_hold_over(self) -> None:
        if self.unreachable is not None and not self.map_state.stopped:
            self.publish_values()

    def stopped_values(self) -> None:
        """The bridge stops: what openWB reads must not look live (no charging, no power,
        the fault said; plug, phases and counter held: no unplug edge)."""
        self.map_state.stopped = True
        self.publish_values()

    def on_charger_write(self, key: str, value: WireValue) -> None:
        """A value reached the charger. A phase switch (`psm`) runs now: hold the plug
        state for as long as it runs (openWB: phase_switch_cp_active), at most
        PHASE_SWITCH_HOLD_S."""
        if key == "psm":
            if self.status is None or not self.status.plugged:
                # no car: a setting, not a switch sequence (go-e's simulated unplug needs a
                # car); holding the plug state would fake one for openWB
                self.switching_to = None
                return
            self.switching_to = {1: 1, 2: 3}.get(value) if isinstance(value, int) else None
            self.hold_plug(PHASE_SWITCH_HOLD_S)

    def hold_plug(self, seconds: float) -> None:
        self.map_state.hold_plug_until = max(self.map_state.hold_plug_until,
                                             self.clock() + seconds)  # fmt: skip

    def publish_values(self) -> None:
        """Send the chargepoint's values to openWB (each adapter its own way)."""

    def reject(self, topic: str, payload: bytes, reason: str) -> None:
        self.rejected += 1
        log.warning(
            "openwb.rejected",
            charger=self.charger.key,
            topic=topic,
            payload=jsontext.excerpt(payload),
            reason=reason,
        )
