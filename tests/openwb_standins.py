"""Stand-ins for openWB, written from openwb-protocol.md and independent of bridge/openwb/:
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
    """What openWB's get_values() and setdata would complain about."""
    problems = [f"missing {k}" for k in required if k not in values]

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
        elif key in ("power", "imported", "exported", "evse_current", "max_evse_current"):
            if not number(v):
                problems.append(f"{key}: not a number: {v!r}")
            elif key in ("imported", "exported") and v < 0:
                problems.append(f"{key}: negative")
        elif key == "frequency":
            if not (number(v) and 40 <= v <= 60):
                problems.append(f"{key}: out of range")
        elif key in ("fault_str", "serial_number", "rfid") and not isinstance(v, str):
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
