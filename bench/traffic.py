"""Broker traffic while a car charges steadily: messages per charger-minute that the bridge
publishes, beside what the go-e firmware itself publishes over MQTT v2 in the same time
(counted from the recorded capture in tests/fixtures/goe).

    .venv/bin/python bench/traffic.py [--minutes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import time

import aiomqtt
from _harness import ROOT, bridge_process, broker, machine

from bridge.goe.model import ApiVersion
from bridge.simulator.charger import Car, SimCharger
from bridge.simulator.http import HttpFrontend

CAPTURE = ROOT / "tests" / "fixtures" / "goe" / "v2-mqtt-capture-excerpt.txt"


def firmware_rate() -> tuple[float, str]:
    """The periodic part of the capture (after one message per key) over its utc span."""
    lines = CAPTURE.read_text().splitlines()
    first_utc = None
    last_utc = None
    periodic = 0
    keys: set[str] = set()
    for line in lines:
        topic, _, payload = line.partition(" ")
        key = topic.rsplit("/", 1)[1]
        if key in keys:
            periodic += 1
        keys.add(key)
        if key == "utc":
            stamp = dt.datetime.fromisoformat(json.loads(payload))
            first_utc = first_utc or stamp
            last_utc = stamp
    assert first_utc and last_utc
    span = (last_utc - first_utc).total_seconds()
    per_minute = periodic / span * 60
    return per_minute, f"{periodic} periodic messages in {span:.2f} s of capture (idle charger)"


async def main(minutes: float) -> None:
    print(f"machine: {machine()}")
    async with broker() as b:
        sim = SimCharger(api=ApiVersion.V2, alw_delay_s=0, noise=True)  # as a real one reads
        sim.plug(Car(max_current_a=16, energy_needed_wh=1e9))
        sim.frc = 2
        async with HttpFrontend(sim) as fe:
            cfg = {
                "log": {"level": "warning", "format": "json"},
                "brokers": {"b": {"host": b.host, "port": b.port}},
                "publish": {"refresh_s": 300},
                "chargers": [{"id": "c", "connection": {"type": "http", "host": "127.0.0.1", "port": fe.port,
                                                         "poll_interval_s": 5}}],
            }  # fmt: skip
            with bridge_process(cfg):
                async with aiomqtt.Client(b.host, b.port) as sub:
                    await sub.subscribe("goe/#")
                    await sub.subscribe("homeassistant/#")
                    start = time.monotonic()
                    warmup = 15.0
                    counted = 0
                    topics: dict[str, int] = {}
                    try:
                        async with asyncio.timeout(warmup + minutes * 60):
                            async for m in sub.messages:
                                if time.monotonic() - start >= warmup and not m.retain:
                                    counted += 1
                                    topics[m.topic.value] = topics.get(m.topic.value, 0) + 1
                    except TimeoutError:
                        pass
    per_minute = counted / minutes
    fw, how = firmware_rate()
    print(f"bridge: {per_minute:.1f} messages per charger-minute while charging at 11 kW "
          f"(poll every 5 s, full refresh every 300 s); by topic: "
          + ", ".join(f"{t.split('/', 2)[2]}={n}" for t, n in sorted(topics.items(), key=lambda x: -x[1])))  # fmt: skip
    print(f"go-e firmware MQTT v2 output: {fw:.0f} messages per minute ({how})")
    print(f"target: ≤ 15 per charger-minute: {'met' if per_minute <= 15 else 'MISSED'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=2.0)
    asyncio.run(main(parser.parse_args().minutes))
