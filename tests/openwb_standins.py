"""Stand-ins for openWB, written from docs/protocol/openwb.md and independent of bridge/openwb/:
an openWB 2.x primary with an "external openWB" chargepoint, openWB 2.x reading an MQTT
chargepoint, and openWB 1.9's mqttsub."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aiomqtt

REQUIRED_SECONDARY = ("power", "currents", "imported", "exported", "phases_in_use",
                      "plug_state", "charge_state", "fault_state")  # fmt: skip
REQUIRED_MQTT = ("currents", "power", "plug_state", "charge_state", "phases_in_use",
                 "imported", "exported")  # fmt: skip


def openwb_check(values: dict[str, Any], required: tuple[str, ...]) -> list[str]:
    """What openWB's get_values() and setdata would complain about.

    - A missing required value is a KeyError ("Es wurden nicht alle notwendigen Daten
      empfangen"), except when fault_state is 2: then the fault is reported instead
      (modules/chargepoints/external_openwb/chargepoint_module.py, get_values).
    - Types as helpermodules/setdata.py process_chargepoint_get_topics: numbers for the
      measurements (null rejected), lists of three, int phases_in_use/fault_state, bools,
      strings or null for rfid, vehicle_id, version, serial_number and fault_str.
    """
    faulted = values.get("fault_state") == 2
    problems = [] if faulted else [f"missing {k}" for k in required if k not in values]

    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    for key, v in values.items():
        if key in ("currents", "voltages", "powers", "power_factors"):
            if not (isinstance(v, list) and len(v) == 3 and all(number(x) for x in v)):
                problems.append(f"{key}: not a list of three numbers: {v!r}")
            elif (key == "voltages" and not all(0 <= x <= 500 for x in v)) or (
                key == "power_factors" and not all(-1 <= x <= 1 for x in v)
            ):
                problems.append(f"{key}: out of range")
        elif key in ("phases_in_use", "fault_state"):
            if not (isinstance(v, int) and not isinstance(v, bool)):
                problems.append(f"{key}: not an int: {v!r}")
        elif key in ("plug_state", "charge_state"):
            if not isinstance(v, bool):
                problems.append(f"{key}: not a bool: {v!r}")
        elif key in ("evse_current", "max_evse_current", "error_timestamp") and v is None:
            continue  # Optional in ChargepointState; the secondary publishes them as null
        elif key in ("power", "imported", "exported", "evse_current", "max_evse_current",
                     "rfid_timestamp", "error_timestamp"):  # fmt: skip
            if not number(v):
                problems.append(f"{key}: not a number: {v!r}")
            elif key in ("imported", "exported") and v < 0:
                problems.append(f"{key}: negative")
        elif key == "frequency":
            if not (number(v) and 40 <= v <= 60):
                problems.append(f"{key}: out of range")
        elif key in ("fault_str", "serial_number", "rfid", "vehicle_id", "version",
                     "current_branch", "current_commit") and not isinstance(v, str | None):  # fmt: skip
            problems.append(f"{key}: not a string: {v!r}")
    if values.get("fault_state") in (1, 2) and "fault_str" not in values:
        problems.append("fault_str missing with a fault")
    return problems


async def read_retained(host: str, port: int, pattern: str, seconds: float = 1.0) -> dict[str, Any]:
    """openWB's start_finite_loop: a fresh connection, subscribe, listen for `seconds`."""
    values: dict[str, Any] = {}
    async with aiomqtt.Client(host, port, identifier=f"openwb-read-{uuid.uuid4().hex[:6]}") as c:
        await c.subscribe(pattern)
        try:
            async with asyncio.timeout(seconds):
                async for m in c.messages:
                    payload = m.payload.decode() if isinstance(m.payload, bytes) else str(m.payload)
                    if payload:
                        values[m.topic.value.rsplit("/", 1)[1]] = json.loads(payload)
        except TimeoutError:
            pass
    return values


class Primary:
    """An openWB 2.x primary with an external-openWB chargepoint at duo_num `duo`."""

    def __init__(self, host: str, port: int, duo: int = 0, cp_id: str = "3") -> None:
        self.host, self.port, self.duo, self.cp_id = host, port, duo, cp_id

    async def _pub(self, items: list[tuple[str, str]]) -> None:
        # pub_single: one connection per message, anonymous, QoS 0, retained
        for topic, payload in items:
            async with aiomqtt.Client(
                self.host, self.port, identifier=f"openwb-pub-{uuid.uuid4().hex[:6]}"
            ) as c:
                await c.publish(topic, payload, qos=0, retain=True)

    async def cycle(self, set_current: float, heartbeat: float | None = None) -> None:
        d = self.duo
        hb = time.time() if heartbeat is None else heartbeat
        key = "Current" if d == 0 else "Lp2Current"
        await self._pub([
            ("openWB/set/internal_chargepoint/global_data", json.dumps({"heartbeat": hb, "parent_ip": "192.168.0.10"})),
            (f"openWB/set/internal_chargepoint/{d}/data/parent_cp", json.dumps(self.cp_id)),
            ("openWB/set/isss/heartbeat", "0"),
            (f"openWB/set/isss/parentCPlp{d + 1}", json.dumps(self.cp_id)),
            (f"openWB/set/internal_chargepoint/{d}/data/set_current", json.dumps(set_current)),
            (f"openWB/set/isss/{key}", json.dumps(set_current)),
        ])  # fmt: skip

    async def switch_phases(self, phases: int) -> None:
        d = self.duo
        await self._pub([
            (f"openWB/set/internal_chargepoint/{d}/data/phases_to_use", json.dumps(phases)),
            (f"openWB/set/internal_chargepoint/{d}/data/trigger_phase_switch", "true"),
            ("openWB/set/isss/U1p3p", json.dumps(phases)),
        ])  # fmt: skip

    async def read(self) -> dict[str, Any]:
        return await read_retained(
            self.host, self.port, f"openWB/internal_chargepoint/{self.duo}/get/#"
        )

    async def interrupt_cp(self, duration: int) -> None:
        """external_openwb interrupt_cp: the duration to the secondary (and the 1.9 topic)."""
        d = self.duo
        await self._pub([
            (f"openWB/set/internal_chargepoint/{d}/data/cp_interruption_duration", json.dumps(duration)),
            (f"openWB/set/isss/Cpulp{d + 1}", json.dumps(duration)),
        ])  # fmt: skip

    async def clear_rfid(self) -> None:
        """external_openwb clear_rfid: last_tag null (and the 1.9 ClearRfid)."""
        await self._pub([
            ("openWB/set/isss/ClearRfid", "1"),
            ("openWB/set/internal_chargepoint/last_tag", "null"),
        ])  # fmt: skip


# ----------------------------------------------------------------------------- openWB's control
# What openWB's control loop makes of the values it reads, for the rules the bridge must not
# trip. Each rule cites the openWB core file it follows (read, not copied).

# control/ev/ev_template.py keep_charge_active_duration: openWB checks a phase switch this long
# after commanding it ...
KEEP_CHARGE_ACTIVE_S = 40.0
# ... and counts it as failed when phases_in_use does not match (chargepoint.py
# check_phase_switch_completed); past MAX_FAILED_PHASE_SWITCHES it stops switching
# (failed_phase_switches_reached).
MAX_FAILED_PHASE_SWITCHES = 2


class OpenWBControl:
    """openWB's view of one chargepoint, cycle by cycle."""

    def __init__(self) -> None:
        self.plug_state_prev: bool | None = None
        self.unplugs = 0  # chargelog saved and reset, manual_lock, default EV loaded
        self.failed_phase_switches = 0
        self.cycles: list[dict[str, Any]] = []

    def observe(self, values: dict[str, Any]) -> None:
        """control/chargepoint/chargepoint.py _process_charge_stop: a plug_state that goes
        from True to False is an unplug; None (external_openwb on a read error) is no
        value and changes nothing."""
        self.cycles.append(values)
        plug = values.get("plug_state")
        if plug is False and self.plug_state_prev is True:
            self.unplugs += 1
        if plug is not None:
            self.plug_state_prev = plug

    async def check_phase_switch(
        self, read: Any, phases: int, window_s: float = KEEP_CHARGE_ACTIVE_S
    ) -> bool:
        """Read every second for `window_s` (openWB's 10 s cycle, faster); a switch whose
        phases_in_use never matched by then counts as failed."""
        deadline = time.monotonic() + window_s
        while time.monotonic() < deadline:
            values = await read()
            self.observe(values)
            if values.get("phases_in_use") == phases and values.get("charge_state"):
                return True
            await asyncio.sleep(1.0)
        self.failed_phase_switches += 1
        return False

    @property
    def switching_blocked(self) -> bool:
        return self.failed_phase_switches > MAX_FAILED_PHASE_SWITCHES


class MqttChargepointModule:
    """openWB 2.x's chargepoint module of type MQTT (modules/chargepoints/mqtt/
    chargepoint_module.py)."""

    def __init__(self, host: str, port: int, cp: int) -> None:
        self.host, self.port, self.cp = host, port, cp

    async def _pub(self, topic: str, value: Any) -> None:
        async with aiomqtt.Client(self.host, self.port,
                                  identifier=f"openwb-{uuid.uuid4().hex[:6]}") as c:  # fmt: skip
            await c.publish(topic, json.dumps(value), qos=0, retain=True)

    async def start(self) -> None:
        """__init__: every time openWB creates the module (each openWB start) it publishes
        set/phases_to_use: the retained phases_in_use when phases_to_use was 0, else 3."""
        await self._pub(f"openWB/mqtt/chargepoint/{self.cp}/set/phases_to_use", 3)

    async def set_current(self, current: float) -> None:
        await self._pub(f"openWB/mqtt/chargepoint/{self.cp}/set/current", current)

    async def switch_phases(self, phases: int) -> None:
        await self._pub(f"openWB/mqtt/chargepoint/{self.cp}/set/phases_to_use", phases)

    async def clear_rfid(self) -> None:
        """clear_rfid: an empty string on the chargepoint's own get/rfid."""
        await self._pub(f"openWB/mqtt/chargepoint/{self.cp}/get/rfid", "")

    async def read(self) -> dict[str, Any]:
        return await read_retained(
            self.host, self.port, f"openWB/set/mqtt/chargepoint/{self.cp}/get/#"
        )
