"""The go-e as an openWB 2.x secondary (docs/protocol/openwb.md#secondary), towards a primary whose
chargepoint type is "external openWB" pointing at the broker the bridge uses.

- Consumes `openWB/set/internal_chargepoint/global_data` (heartbeat), `…/<d>/data/set_current`,
  `phases_to_use` + `trigger_phase_switch`, `cp_interruption_duration`, `parent_cp`,
  `…/last_tag`, and the legacy `openWB/set/isss/*` topics the primary sends in parallel.
- Like openWB's own `setdata`: a valid value is republished without `set/` (retained) and the
  set topic is cleared with a retained empty payload; an invalid one is only cleared and logged.
  A restarted bridge resumes from those retained values and never replays a stale command.
- Publishes `openWB/internal_chargepoint/<d>/get/*` retained, so a primary that connects and
  reads for one second finds the complete set.
- openWB's own rule: `heartbeat + 80 s < now` (and no heartbeat yet) → stop. Because that rule
  compares the primary's clock with ours, the bridge also measures liveness on its own
  monotonic clock: no new (changed) heartbeat for 80 s → stop, whatever the timestamps say; a
  heartbeat more than HEARTBEAT_FUTURE_TOLERANCE_S ahead of our clock is rejected, so a
  forged or clock-jumped heartbeat cannot keep a car charging.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .. import __version__
from ..goe.model import ApiVersion, Target
from ..inputs import Invalid, as_float, as_int
from ..inputs import decode as decode_payload
from . import mapping
from .common import OpenWBController, RetainedValues

HEARTBEAT_TIMEOUT_S = 80.0  # internal_chargepoint_handler.py _check_heartbeat_expired
# A heartbeat this far ahead of our clock is not believed (primary and bridge both run NTP;
# a few seconds of skew are normal, minutes are a broken clock or a forged message).
HEARTBEAT_FUTURE_TOLERANCE_S = 30.0
# Retained state arrives right after subscribing; decide nothing before it had time to
# (openWB reads retained values for one second the same way).
RESUME_WINDOW_S = 1.5
UNSUPPORTED_WARNING_S = 300.0


class OpenWBSecondary(OpenWBController):
    source = "openwb-secondary"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.duo = self.charger.control.duo_num
        self.timeout_s = HEARTBEAT_TIMEOUT_S  # openWB's rule, not configurable
        self.heartbeat: float | None = None
        # monotonic time a heartbeat with a new value last arrived; the grace period for a
        # resumed heartbeat starts when the adapter starts
        self.heartbeat_changed_at: float | None = None
        self.future_heartbeats = 0
        self.parent_ip: str | None = None
        self.set_current = 0.0
        self.phases_to_use = 0
        self.parent_cp: str | None = None
        self.pending_phases: int | None = None
        self.warning: tuple[str, float] | None = None
        self.interrupt_until = 0.0
        self.resumed = False
        # charge state, power and currents expire after a crash of the bridge (MQTT 5): the
        # primary then misses them, zeros them after 60 s and shows the fault after 70 s,
        # exactly as for a secondary it cannot reach (external_openwb/chargepoint_module.py;
        # a direct subscription passes the expiry on, docs/protocol/openwb.md)
        self.values = RetainedValues(
            self.link.publish, expiring=("/charge_state", "/power", "/currents", "/powers")
        )
        # the accepted set values, republished without `set/` (see _on_set)
        self.kept: dict[str, str] = {}
        self.get_prefix = f"openWB/internal_chargepoint/{self.duo}/get"
        self.data_prefix = f"openWB/internal_chargepoint/{self.duo}/data"
        # our own retained state, to resume after a restart; dropped once resumed (run)
        self._resume_subscriptions: list[tuple[str, Any]] = [
            ("openWB/internal_chargepoint/global_data", self._on_resume),
            (f"{self.data_prefix}/+", self._on_resume),
            (f"{self.get_prefix}/phases_in_use", self._on_resume_phases),
        ]

    def start(self) -> None:
        super().start()
        self.link.add_replay(lambda: [*self.kept.items(), *self.values.replay()])
        sub = self.link.subscribe
        sub(
            "openWB/set/internal_chargepoint/global_data",
            self._on_set,
            command=True,
            latest_only=True,
        )
        sub(
            f"openWB/set/internal_chargepoint/{self.duo}/data/+",
            self._on_set,
            command=True,
            latest_only=True,
        )
        sub(
            "openWB/set/internal_chargepoint/last_tag", self._on_set, command=True, latest_only=True
        )
        sub("openWB/set/isss/#", self._on_isss, command=True)
        for pattern, handler in self._resume_subscriptions:
            sub(pattern, handler)

    # ------------------------------------------------------------------ inbound

    def _on_set(self, topic: str, payload: bytes, retain: bool) -> None:
        if not payload:
            return  # a cleared set topic
        if retain:
            # setdata: valid or not, a retained set topic is cleared
            self.link.publish(topic, b"", retain=True)
        key = topic.rsplit("/", 1)[1]
        try:
            value = self._validate(key, decode_payload(payload))
            if key == "global_data":
                self._check_not_future(value["heartbeat"])
        except (Invalid, UnicodeDecodeError) as exc:
            self.reject(topic, payload, str(exc))
            return
        self._keep(topic.replace("openWB/set/", "openWB/", 1), mapping.encode(value))
        self._apply(key, value, fresh=True)

    def _keep(self, topic: str, payload: str) -> None:
        self.kept[topic] = payload
        self.link.publish(topic, payload, retain=True)

    def _on_resume(self, topic: str, payload: bytes, retain: bool) -> None:
        # Only at start-up: afterwards these are the echoes of our own republishing, and an
        # echo can arrive after a newer set value from the primary (no ordering across
        # publishers), which would bring back a stale set point.
        if not payload or self.resumed:
            return
        key = topic.rsplit("/", 1)[1]
        try:
            value = self._validate(key, decode_payload(payload))
            if key == "global_data":
                self._check_not_future(value["heartbeat"])
        except (Invalid, UnicodeDecodeError):
            return
        if key == "trigger_phase_switch":
            return  # a phase switch is a one-off request, never resumed
        self._apply(key, value, fresh=False)

    def _on_resume_phases(self, topic: str, payload: bytes, retain: bool) -> None:
        # like openWB's secondary after a restart: phases_in_use continues from its retained
        # value (chargepoint_module.py subscribes to its own get/phases_in_use)
        if self.resumed or self.status is not None:
            return
        try:
            self.map_state.phases_in_use = as_int(decode_payload(payload), 1, 3)
        except (Invalid, UnicodeDecodeError):
            return

    def _on_isss(self, topic: str, payload: bytes, retain: bool) -> None:
        # 1.9-style topics a 2.x primary sends in parallel (docs/protocol/openwb.md#isss): a 2.x
        # secondary ignores them; cleared so they do not pile up as retained messages.
        if payload and retain:
            self.link.publish(topic, b"", retain=True)

    def _validate(self, key: str, value: Any) -> Any:
        """The ranges of openWB's setdata.process_internal_chargepoint_topic."""
        if key == "global_data":
            if not isinstance(value, dict):
                raise Invalid("expected a JSON object")
            heartbeat = as_float(value.get("heartbeat"), 0)
            parent = value.get("parent_ip")
            if parent is not None and not isinstance(parent, str):
                raise Invalid("parent_ip: expected a string")
            return {"heartbeat": heartbeat, "parent_ip": parent}
        if key == "set_current":
            current = as_float(value, 0, 32)
            if 0 < current < 6:
                raise Invalid(f"{value!r} is neither 0 nor within 6..32")
            return current
        if key == "phases_to_use":
            return as_int(value, 1, 3)
        if key == "trigger_phase_switch":
            if value in (0, 1) and not isinstance(value, float):
                return bool(value)
            raise Invalid(f"expected a bool, got {value!r}")
        if key == "cp_interruption_duration":
            return as_int(value, 0)
        if key in ("parent_cp", "last_tag"):
            if value is not None and not isinstance(value, str):
                raise Invalid(f"expected a string or null, got {value!r}")
            return value
        raise Invalid(f"unknown topic {key!r}")

    def _check_not_future(self, heartbeat: float) -> None:
        ahead = heartbeat - self.wall_clock()
        if ahead > HEARTBEAT_FUTURE_TOLERANCE_S:
            self.future_heartbeats += 1
            raise Invalid(
                f"heartbeat is {ahead:.0f} s ahead of this machine's clock (more than "
                f"{HEARTBEAT_FUTURE_TOLERANCE_S:.0f} s): check NTP on the primary and here"
            )

    def _apply(self, key: str, value: Any, *, fresh: bool) -> None:
        if key == "global_data":
            if fresh and value["heartbeat"] != self.heartbeat:
                # Only a heartbeat that moves is a sign of life; a repeated one is not.
                self.heartbeat_changed_at = self.last_heard = self.clock()
            self.heartbeat = value["heartbeat"]
            self.parent_ip = value["parent_ip"]
        elif key == "set_current":
            self.set_current = value
        elif key == "phases_to_use":
            self.phases_to_use = value
        elif key == "trigger_phase_switch":
            if value:
                self._phase_switch()
        elif key == "cp_interruption_duration":
            if value and fresh:
                self._interrupt(value)
        elif key == "parent_cp":
            self.parent_cp = value
        elif key == "last_tag" and value is None:
            # the primary's clear_rfid: the tag is gone from get/rfid until the next scan
            mapping.clear_rfid(self.map_state)
            self.publish_values()
        self.update()

    def _warn(self, text: str) -> None:
        self.warning = (text, self.clock() + UNSUPPORTED_WARNING_S)
        self.publish_values()

    def _phase_switch(self) -> None:
        # the handler resets the trigger right after starting the switch
        # (docs/protocol/openwb.md#phase-switch)
        self._keep(f"{self.data_prefix}/trigger_phase_switch", "false")
        if self.status is not None and self.status.api_version is ApiVersion.V1:
            # openWB counts the switch as failed after ~40 s (control/ev/ev_template.py);
            # it must learn why, not wait in silence
            self._warn("Phasenumschaltung wird von diesem go-e (API v1) nicht unterstützt")
            return
        if self.phases_to_use in (1, 3):
            # openWB times its own switches: carried out at once (no rate guard for openWB
            # sources), the plug state held from the moment `psm` is written
            self.pending_phases = self.phases_to_use

    def _interrupt(self, seconds: int) -> None:
        """openWB asks for a control-pilot interruption (to wake a car that does not start).

        go-e has no command for it: `su` ("simulate unplugging") is a stored car-compatibility
        setting (go-e apikeys-en.md `su | R/W | bool | Config`; marq24/ha-goecharger-api2
        exposes it as a select, evcc's go-e template tells users to switch it on) and must
        never be changed as a side effect. The closest thing the API offers is done instead:
        charging stops for the requested duration and resumes, with the plug state held (as
        openWB's secondary does during its interruption), and openWB is told by a warning."""
        self._keep(f"{self.data_prefix}/cp_interruption_duration", "0")
        self.interrupt_until = self.clock() + seconds
        self.hold_plug(seconds + 5)
        self._warn(f"CP-Unterbrechung: go-e hat dafür keinen Befehl; Ladung {seconds} s pausiert")
        self.update()

    # ------------------------------------------------------------------ target

    def heartbeat_expired(self, now: float | None = None) -> bool:
        """openWB's rule on the primary's timestamps, and the same 80 s on our own
        monotonic clock since a heartbeat last changed (or since start, for a resumed one)."""
        now = self.wall_clock() if now is None else now
        if self.heartbeat is None or self.heartbeat + HEARTBEAT_TIMEOUT_S < now:
            return True
        alive_since = self.heartbeat_changed_at or self.started_at
        return self.clock() - alive_since > HEARTBEAT_TIMEOUT_S

    def update(self) -> None:
        if not self.resumed:
            return
        expired = self.heartbeat_expired()
        if expired != self.failsafe_active:
            self.failsafe_active = expired
            self.on_state({"failsafe_active": expired})
        if expired:
            target = Target(allow=False)
        elif self.clock() < self.interrupt_until:
            target = Target(allow=False, phases=self.pending_phases)
        elif self.set_current >= 6:
            target = Target(allow=True, current_a=self.set_current, phases=self.pending_phases)
        else:
            target = Target(allow=False, phases=self.pending_phases)
        if target != self.target:
            self.set_target(target)

    def check_failsafe(self, now: float | None = None) -> None:
        self.update()

    async def run(self) -> None:
        await self.link.connected.wait()
        await asyncio.sleep(RESUME_WINDOW_S)
        self.started_at = self.clock()
        self.resumed = True
        # Afterwards these topics carry only the echo of our own republishing: a message
        # from the broker per command and poll for nothing. And with it in flight, the
        # broker's next message (the primary's next set point) waited for our delayed ACK
        # under Nagle's algorithm (mosquitto's set_tcp_nodelay is off by default): ~35 ms
        # for 1 % of the commands (bench/command_latency.py).
        for pattern, handler in self._resume_subscriptions:
            self.link.unsubscribe(pattern, handler)
        while True:
            self.update()
            await asyncio.sleep(1.0)

    # ------------------------------------------------------------------ outbound

    def publish_values(self) -> None:
        values = mapping.chargepoint_values(
            self.status, self.map_state, unreachable=self.unreachable, now=self.clock()
        )
        wait = self.phase_switch_wait() if self.pending_phases is not None else None
        if wait and values["fault_state"] == 0:
            values["fault_state"] = 1
            values["fault_str"] = f"Phasenumschaltung zurückgestellt, noch {wait:.0f} s"
        elif self.warning and self.clock() < self.warning[1] and values["fault_state"] == 0:
            values["fault_state"] = 1
            values["fault_str"] = self.warning[0]
        mapping.update_rfid(self.status, self.map_state, self.wall_clock())
        # every cycle, like openWB's secondary (store/_chargepoint_internal.py): null after
        # the primary's clear, so a stale tag never unlocks a chargepoint
        values["rfid"] = self.map_state.rfid
        if self.map_state.rfid_timestamp is not None:
            values["rfid_timestamp"] = self.map_state.rfid_timestamp
        values["vehicle_id"] = None
        values["version"] = f"goe-bridge {__version__}"
        values["current_branch"] = "goe-bridge"
        values["current_commit"] = ""
        values["error_timestamp"] = self.map_state.error_since
        if self.status is not None and self.status.phases == self.pending_phases:
            self.pending_phases = None
        self.values.update({f"{self.get_prefix}/{k}": mapping.encode(v) for k, v in values.items()})
