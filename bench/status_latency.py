"""Status latency: the simulator pushes a new `nrg` as go-e MQTT v2 → the bridge decodes it →
`power_w` arrives at a subscriber. Beside it, the bare broker hop in the same run.

    .venv/bin/python bench/status_latency.py [--n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiomqtt
from _harness import bare_hop, bridge_process, broker, machine, percentiles, summary

from bridge.goe.model import ApiVersion
from bridge.simulator.charger import Car, SimCharger
from bridge.simulator.mqtt import MqttFrontend


async def main(n: int) -> None:
    print(f"machine: {machine()}")
    async with broker() as b:
        sim = SimCharger(api=ApiVersion.V2, serial="000042", alw_delay_s=0)
        sim.plug(Car(max_current_a=32, energy_needed_wh=1e9))
        cfg = {
            "log": {"level": "warning", "format": "json"},
            "brokers": {"b": {"host": b.host, "port": b.port}},
            "publish": {"home_assistant": {"enabled": False}},
            "chargers": [{"id": "m", "connection": {"type": "mqtt", "serial": "000042"}}],
        }
        # the volatile keys once an hour: only the changes under test are pushed
        async with MqttFrontend(sim, b.host, b.port, volatile_interval_s=3600):
            with bridge_process(cfg):
                async with aiomqtt.Client(b.host, b.port) as sub:
                    await sub.subscribe("goe/m/power_w")
                    samples: list[float] = []
                    amps = 6
                    async with asyncio.timeout(30):
                        async for _ in sub.messages:
                            break  # the bridge is up and publishing
                    for i in range(n + 20):
                        amps = 6 if amps >= 16 else amps + 1
                        expected = str(round(sum(v * amps for v in sim.voltages())))
                        t0 = time.perf_counter()
                        sim.set_v2({"amp": str(amps)}, via="bench")  # the charger's state changes
                        async with asyncio.timeout(10):
                            async for m in sub.messages:
                                payload = (
                                    m.payload.decode()
                                    if isinstance(m.payload, bytes)
                                    else m.payload
                                )
                                if payload == expected:
                                    break
                        if i >= 20:
                            samples.append((time.perf_counter() - t0) * 1000)
        hop = await bare_hop(b.host, b.port, n)
    med, _ = percentiles(samples)
    hmed, _ = percentiles(hop)
    print(f"status latency (go-e MQTT v2 push → power_w at a subscriber): {summary(samples)}")
    print("  (two broker hops: simulator → bridge → subscriber, plus the simulator's publish)")
    print(f"bare broker hop (publish → subscriber): {summary(hop)}")
    print(f"bridge share: median {med - 2 * hmed:.2f} ms")
    print(f"target: median ≤ 5 ms: {'met' if med <= 5 else 'MISSED'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    asyncio.run(main(parser.parse_args().n))
