"""What every controller shares: it turns one protocol's messages into a Target, and a
failsafe Target replaces it when the controller goes quiet past its timeout
(docs/design.md#failsafe)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from .. import logs
from ..aio import Wakeup
from ..config import ChargerConfig
from ..goe.model import ChargerStatus, Target

log = logs.get("goe_bridge.control")

# Default failsafe timeouts per source when `failsafe.timeout_s` is null: openWB's own rule
# is "heartbeat + 80 s < now → stop" (docs/protocol/openwb.md#heartbeat).
DEFAULT_TIMEOUTS: Mapping[str, float | None] = {
    "mqtt": None,
    "openwb-secondary": 80.0,
    "openwb-mqtt": 80.0,
    "openwb-1.9": 80.0,
}


# how long after the timeout the failsafe check runs (it acts on quiet > timeout)
FAILSAFE_SLACK_S = 0.01


class Controller:
    source = "none"

    def __init__(
        self,
        charger: ChargerConfig,
        *,
        on_target: Callable[[Target | None], None],
        on_state: Callable[[Mapping[str, Any]], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Constructors only keep what they are given; start() subscribes
        # (docs/design.md#conventions).
        self.charger = charger
        self.on_target = on_target
        self.on_state = on_state
        self.clock = clock
        failsafe = charger.control.failsafe
        self.timeout_s = (
            failsafe.timeout_s
            if failsafe.timeout_s is not None
            else DEFAULT_TIMEOUTS.get(self.source)
        )
        self.target: Target | None = None
        self.last_heard: float | None = None
        self.failsafe_active = False
        self.status: ChargerStatus | None = None
        self.started_at = clock()
        self._heard = Wakeup()

    def start(self) -> None:
        """Subscribe to the controller's topics (the link sends them once connected)."""
        self.started_at = self.clock()

    @property
    def failsafe_target(self) -> Target:
        failsafe = self.charger.control.failsafe
        if failsafe.action == "current":
            return Target(allow=True, current_a=float(failsafe.current_a))
        return Target(allow=False)

    def heard(self, target: Target | None) -> None:
        """The controller spoke: take its Target, leave failsafe."""
        self.last_heard = self.clock()
        self._seen_alive()
        self.set_target(target)

    def restored(self, target: Target | None, *, live_at: float | None = None) -> None:
        """A set point the broker kept (a retained message delivered on (re)subscribing, or
        the bridge's own record from its last run): the controller's intent, but no sign that
        it is alive. The failsafe clock keeps running from the last live message; with none
        yet, from `live_at` (monotonic: when the record says the controller last spoke) or
        from the controller's start. A dead controller's retained 16 A re-delivered on every
        reconnect must not keep a car charging: only a new message is a heartbeat. While the
        failsafe applies, a restored set point changes nothing."""
        if self.failsafe_active:
            return
        if self.last_heard is None:
            self.last_heard = self.started_at if live_at is None else live_at
            self._heard.set()  # the failsafe watch times from here
        self.set_target(target)

    def _seen_alive(self) -> None:
        self._heard.set()
        if self.failsafe_active:
            self.failsafe_active = False
            log.info("control.failsafe_cleared", charger=self.charger.key, source=self.source)
            self.on_state({"failsafe_active": False})

    def set_target(self, target: Target | None) -> None:
        self.target = target
        self.on_target(target)
        if target is not None:
            self.on_state(
                {
                    "target_allow": target.allow,
                    "target_current_a": target.current_a,
                    "target_phases": target.phases,
                }
            )

    def on_status(self, status: ChargerStatus) -> None:
        self.status = status

    def on_unavailable(self, reason: str, since: float | None = None) -> None:
        """The charger cannot be reached (openWB adapters report it as a fault); `since`:
        the monotonic time of the first failed read, when known."""

    def quiet_for(self, now: float) -> float | None:
        if self.last_heard is None:
            return None
        return now - self.last_heard

    def check_failsafe(self, now: float | None = None) -> None:
        if self.timeout_s is None or self.failsafe_active:
            return
        now = self.clock() if now is None else now
        quiet = self.quiet_for(now)
        if quiet is not None and quiet > self.timeout_s:
            self.failsafe_active = True
            log.warning(
                "control.failsafe",
                charger=self.charger.key,
                source=self.source,
                quiet_s=round(quiet, 1),
                action=self.charger.control.failsafe.action,
            )
            self.on_state({"failsafe_active": True})
            self.set_target(self.failsafe_target)

    def failsafe_due_in(self, now: float) -> float | None:
        """Seconds until the failsafe would act if nothing is heard; None: nothing to time."""
        if self.timeout_s is None or self.failsafe_active or self.last_heard is None:
            return None
        # `check_failsafe` acts once quiet is *past* the timeout: look just after it
        return max(0.0, self.last_heard + self.timeout_s - now) + FAILSAFE_SLACK_S

    async def run(self) -> None:
        """Watch liveness: wake when the failsafe falls due or the controller speaks, not on
        a fixed tick (a tick a second per charger was 500 wake-ups a second for a fleet of
        500: bench/floor.py). Controllers with their own timing override this."""
        while True:
            self._heard.clear()
            self.check_failsafe()
            await self._heard.wait(self.failsafe_due_in(self.clock()))
