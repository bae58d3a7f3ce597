"""Makes a controller's Target true on one charger, for every kind of controller
(docs/design.md#control).

- Writes only the difference, and only while the charger is reachable.
- Enable/disable goes out at once; current changes are spaced by `min_command_interval_s`
  and the last value wins (the plan is computed from the newest Target when the spacing
  allows a write, so intermediate values are never queued).
- Phase switches at most once per `phase_switch_min_interval_s`, as `psm` alone (the go-e
  pauses and resumes by itself; allow/stop is never touched by a switch). While the
  charger's own switch runs, nothing is written (it looks like an unplug: `car` 1 and `frc`
  0, go-eCharger-API-v2 #198), and a car that did not resume from it is reported.
- Every write is verified (by the transport, then by the next read); a value that does not
  stick is retried at most twice with backoff, then `in_sync=false` is reported and the
  value is left alone until the Target or the charger changes.
- The charger drifting away from the Target (e.g. `frc` reset to neutral on unplug, go-e API
  v2 #117) shows up as a difference on the next poll and is written again.
- Nothing is written before the controller has spoken (Target None).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import logs
from ..aio import Wakeup
from ..goe.model import (
    FORCE_CODES,
    SWITCH_MODEL_STATUS,
    ChargerError,
    ChargerStatus,
    Target,
    WireValue,
    WriteRejected,
)
from ..goe.transports.base import Transport
from . import plan as planning

log = logs.get("goe_bridge.reconciler")

MAX_ATTEMPTS = 3  # the first write and two retries
VERIFY_AFTER_S = 1.5  # go-e logic runs at 1 Hz; alw follows frc about 1 s later

# The charger's own phase switch is a simulated unplug of `psmd` (10 s by default, up to
# 3600 s in the app: go-eCharger-API-v2 #58) plus the reconnect: in the #198 trace the car
# was back 31 s after the `psm` write. The bridge leaves the charger alone from its `psm`
# write until the car is back, or this long after the write at most.
SWITCH_EXTRA_S = 45.0
SWITCH_MIN_S = 60.0
FORCE_KEYS = {"off": 1, "on": 2}  # the force states a switch's reset to neutral undoes
# After the switch a car that was charging should charge again (car 3 first: #248). One that
# sits at car 4 this long after it did not resume: some cars stop until re-plugged
# (go-eCharger-API-v2 #144).
RESUME_GRACE_S = 30.0
NOT_RESUMED = (
    "the car did not resume charging after the phase switch (car=4): some cars stop until "
    "re-plugged (go-eCharger-API-v2 #144); re-plug it, or try 'simulate unplugging' in the "
    "go-e app's car settings"
)


@dataclass(slots=True)
class SwitchWatch:
    """A `psm` the bridge wrote, while the charger switches."""

    value: WireValue
    deadline: float
    was_charging: bool
    force_before: str | None  # `frc` as it was: the switch resets it like an unplug
    # the phases the car should then charge on (psm 1 → 1, 2 → 3), where that tells the switch
    # is done (they differed before it): a switch shorter than a poll shows no car 1 at all
    charges_on: int | None = None
    # the Target the switch was written for: a new one (the controller changed its mind, a
    # stop) is carried out at once; only re-writing the same one waits for the switch
    target: Target | None = None
    away: bool = False  # the charger showed the switch (car 1, or modelStatus 22/23)


@dataclass(slots=True)
class Attempt:
    value: WireValue
    count: int
    last_at: float
    error: str | None = None


class Reconciler:
    def __init__(
        self,
        transport: Transport,
        *,
        name: str,
        limit_a: int,
        enable_mode: str = "force",
        authorize: bool = False,
        min_command_interval_s: float = 5.0,
        phase_switch_min_interval_s: float = 300.0,
        request_read: Callable[[], None] = lambda: None,
        on_state: Callable[[Mapping[str, Any]], None] = lambda state: None,
        on_write: Callable[[str, WireValue, str | None], None] = lambda k, v, e: None,
        clock: Callable[[], float] = time.monotonic,
        verify_after_s: float = VERIFY_AFTER_S,
    ) -> None:
        self.transport = transport
        self.name = name
        self.limit_a = limit_a
        self.enable_mode = enable_mode
        self.authorize = authorize
        self.min_command_interval_s = min_command_interval_s
        self.phase_switch_min_interval_s = phase_switch_min_interval_s
        self.request_read = request_read
        self.on_state = on_state
        self.on_write = on_write
        self.clock = clock
        self.verify_after_s = verify_after_s

        self.target: Target | None = None
        self.suspended = False  # another bridge serves this charger: write nothing
        self.status: ChargerStatus | None = None
        self.available = False
        self.in_sync: bool | None = None
        self._attempts: dict[str, Attempt] = {}
        self._last_current_write = -1e9
        self._last_phase_switch = -1e9
        self._switch: SwitchWatch | None = None
        # the `frc` a switch reset (go-eCharger-API-v2 #198), to write back when no Target
        # says what it should be: the charger ends allowed exactly as before the switch
        self._restore_force: int | None = None
        self._resume_check: tuple[float, SwitchWatch] | None = None
        self.not_resumed = False  # reported: the car did not resume after a switch
        self._wake = Wakeup()
        # counters for /metrics
        self.writes_sent = 0
        self.writes_failed = 0
        self.writes_verified = 0

    # ------------------------------------------------------------------ inputs

    def set_target(self, target: Target | None) -> None:
        if target != self.target:
            self.target = target
            self._attempts.clear()  # a new Target deserves fresh attempts
            self.not_resumed = False
            self._wake.set()

    def on_status(self, status: ChargerStatus) -> None:
        self.status = status
        self.available = True
        self._wake_if_targeted()

    def on_unavailable(self) -> None:
        self.available = False
        self._wake_if_targeted()

    def _wake_if_targeted(self) -> None:
        # Without a Target (or suspended) a step does nothing: no wake-up per poll for a
        # charger nobody controls yet (bench/floor.py, one task switch per poll).
        if self.target is not None and not self.suspended:
            self._wake.set()

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        while True:
            self._wake.clear()
            delay = await self.step()
            await self._wake.wait(delay)

    async def step(self) -> float | None:
        """One pass: write what is due; return when to look again (None = on news)."""
        target, status = self.target, self.status
        if target is None or status is None or not self.available or self.suspended:
            return None
        wanted = planning.plan(
            target, status, limit_a=self.limit_a, enable_mode=self.enable_mode,
            authorize=self.authorize,
        )  # fmt: skip
        now = self.clock()
        # Values the charger now shows are verified: forget their attempts.
        pending = {**wanted.switch, **wanted.current, **wanted.phases}
        for key in list(self._attempts):
            if key not in pending:
                self._attempts.pop(key)
                self.writes_verified += 1
        hold = self._switching(status, now)
        self._check_resumed(status, now)
        self._publish_sync(wanted)
        if hold is not False:
            # the charger's own switch runs: leave it alone until it is back
            return None if hold is True else hold
        resume_at = self._resume_check[0] - now if self._resume_check else None
        wanted = self._with_force_restored(wanted, target, status)
        if wanted.empty:
            return resume_at

        next_look: list[float] = [resume_at] if resume_at is not None else []
        if wanted.phases:
            due = self._last_phase_switch + self.phase_switch_min_interval_s
            if now >= due:
                # `psm` alone, never a stop first: the go-e runs its own pause and simulated
                # unplug for the switch (modelStatus 23, about `psmd` = 10 s without current;
                # go-e API v2 #248) and resumes by itself, which is what evcc relies on
                # (charger/go-e.go writes psm=1/2 only). A stop written by us would have to
                # be undone, and chargers were seen not to resume after `frc=1` (API v2
                # #156): the charger then ends allowed exactly when it was allowed before.
                if await self._write(wanted.phases):
                    self._last_phase_switch = now
                    self._watch_switch(wanted.phases, status, now)
                    return self._switch.deadline - now if self._switch else None
            else:
                next_look.append(due - now)
        if wanted.switch:
            await self._write(wanted.switch)
        if wanted.current:
            due = self._last_current_write + self.min_command_interval_s
            if now >= due:
                if await self._write(wanted.current):
                    # from when the charger had it, so the spacing holds at the charger too
                    self._last_current_write = self.clock()
            else:
                next_look.append(due - now)
        for attempt in self._attempts.values():
            if attempt.count < MAX_ATTEMPTS:
                next_look.append(max(0.05, self._retry_at(attempt) - now))
        return min(next_look) if next_look else None

    # ------------------------------------------------------------------ phase switch window

    def _watch_switch(self, written: Mapping[str, WireValue], status: ChargerStatus,
                      now: float) -> None:  # fmt: skip
        """After a `psm` write with a car at the plug: the charger switches by itself."""
        if status.car not in (2, 3, 4):
            return  # no car: nothing to disconnect, psm is only a setting then
        psmd = status.raw.get("psmd")
        pause = psmd / 1000 if isinstance(psmd, int | float) and psmd > 0 else 10.0
        window = max(SWITCH_MIN_S, min(pause, 3600.0) + SWITCH_EXTRA_S)
        psm = written.get("psm")
        charges_on = {1: 1, 2: 3}.get(psm) if isinstance(psm, int) else None
        if status.charging and status.phases_in_use == charges_on:
            # already charging on those phases (`auto` chose them): nothing to switch, so no
            # window that would hold the rest of the Target (seen with openWB's
            # phases_to_use 3 at its start, on a charger in auto charging on three phases)
            return
        if status.phases_in_use == charges_on:
            charges_on = None  # the car draws on as many phases either way: no sign
        self._switch = SwitchWatch(psm, now + window, bool(status.charging), status.force_state,
                                   charges_on, self.target)  # fmt: skip
        self._resume_check = None

    def _switching(self, status: ChargerStatus, now: float) -> bool | float:
        """True while the charger says it switches (modelStatus 22/23); seconds to the end
        of the window while a switch the bridge started runs; False when none runs."""
        # the raw `car` code: the published `plugged` is held through the switch
        # (goe.derive.SessionEnergy)
        away = status.car == 1 or status.model_status_code in SWITCH_MODEL_STATUS
        watch = self._switch
        if watch is not None:
            watch.away = watch.away or away
            back = (watch.away and not away and status.car in (2, 3, 4)) or (
                status.car == 2
                and watch.charges_on is not None
                and status.phases_in_use == watch.charges_on
            )
            if not back and now < watch.deadline and self.target == watch.target:
                return watch.deadline - now
            self._switch = None
            if watch.was_charging:
                self._resume_check = (now + RESUME_GRACE_S, watch)
            self._restore_force = FORCE_KEYS.get(watch.force_before or "")
            log.info("charger.phase_switch_done", charger=self.name, back=back,
                     car=status.car, model_status=status.model_status_code)  # fmt: skip
        return status.model_status_code in SWITCH_MODEL_STATUS

    def _with_force_restored(
        self, wanted: planning.Plan, target: Target, status: ChargerStatus
    ) -> planning.Plan:
        frc = self._restore_force
        if frc is None:
            return wanted
        force = FORCE_CODES.get(status.force_state or "")
        if target.allow is not None or force == frc or status.car == 1:
            self._restore_force = None  # a Target decides, or it is as it was, or no car
            return wanted
        return dataclasses.replace(wanted, switch={"frc": frc, **wanted.switch})

    def _check_resumed(self, status: ChargerStatus, now: float) -> None:
        if status.charging or status.car == 1:
            self._resume_check = None
            self.not_resumed = False
            return
        if self._resume_check is None or now < self._resume_check[0]:
            return
        _, watch = self._resume_check
        self._resume_check = None
        target = self.target
        if status.car == 4 and target is not None and target.allow is not False:
            self.not_resumed = True
            log.warning("charger.phase_switch_not_resumed", charger=self.name,
                        psm=watch.value, message=NOT_RESUMED)  # fmt: skip
            self.on_write("psm", watch.value, NOT_RESUMED)

    def _retry_at(self, attempt: Attempt) -> float:
        # verify window, then backoff: 1.5 s, 3 s, 6 s after the write
        return attempt.last_at + self.verify_after_s * 2.0 ** (attempt.count - 1)

    async def _write(self, changes: Mapping[str, WireValue]) -> bool:
        """Write what is due of `changes`; True if something was sent and accepted."""
        now = self.clock()
        due: dict[str, WireValue] = {}
        for key, value in changes.items():
            attempt = self._attempts.get(key)
            if (
                attempt is not None
                and attempt.value == value
                and (attempt.count >= MAX_ATTEMPTS or now < self._retry_at(attempt))
            ):
                continue  # given up, or still waiting for the read-back
            due[key] = value
        if not due or self.suspended:
            return False
        for key, value in due.items():
            previous = self._attempts.get(key)
            count = previous.count + 1 if previous and previous.value == value else 1
            self._attempts[key] = Attempt(value, count, now)
        self.writes_sent += 1
        try:
            await self.transport.write(due)
        except WriteRejected as exc:
            self._failed(due, f"rejected: {exc.reason}")
            return False
        except ChargerError as exc:
            self._failed(due, f"no answer: {exc}")
            return False
        log.info("charger.write", charger=self.name, **{k: v for k, v in due.items()})
        if self.status is not None:
            self.status = planning.assume_written(self.status, due)
        for key, value in due.items():
            self.on_write(key, value, None)
        asyncio.get_running_loop().call_later(self.verify_after_s, self.request_read)
        return True

    def _failed(self, due: Mapping[str, WireValue], error: str) -> None:
        self.writes_failed += 1
        for key, value in due.items():
            # A new Target may have arrived while the write was in flight and reset the
            # attempts; the failure is still logged.
            attempt = self._attempts.get(key)
            if attempt is not None and attempt.value == value:
                attempt.error = error
            log.warning(
                "charger.write_failed",
                charger=self.name,
                key=key,
                value=value,
                attempt=attempt.count if attempt else 1,
                error=error,
            )
            self.on_write(key, value, error)

    def _publish_sync(self, wanted: planning.Plan) -> None:
        in_sync = wanted.empty and not self.not_resumed
        gave_up = [k for k, a in self._attempts.items() if a.count >= MAX_ATTEMPTS]
        if gave_up and self.in_sync is not False:
            log.error(
                "charger.out_of_sync",
                charger=self.name,
                keys=gave_up,
                errors=[self._attempts[k].error for k in gave_up],
            )
        if in_sync != self.in_sync:
            self.in_sync = in_sync
            self.on_state({"in_sync": in_sync})

    def phase_switch_wait(self) -> float | None:
        """Seconds a wanted phase switch still waits for the rate guard (None: none waits)."""
        target, status = self.target, self.status
        if target is None or target.phases is None or status is None:
            return None
        if status.phases == target.phases:
            return None
        wait = self._last_phase_switch + self.phase_switch_min_interval_s - self.clock()
        return wait if wait > 0 else None

    @property
    def gave_up(self) -> bool:
        return any(a.count >= MAX_ATTEMPTS for a in self._attempts.values())
