"""Command latency: an openWB primary's `set_current` published → the simulator receives the
HTTP write. Spacing disabled (`min_command_interval_s: 0`). Beside it, in the same run:

- the floor: a process that subscribes to the same topic and, for each message, issues the
  same write (`GET /api/set?amp=N` with aiohttp, the URL a string, the answer's bytes through
  `json.loads`), nothing more; the issue's goal is the bridge within 1.3x of it;
- the bare broker hop (publish → subscriber on the same broker).

A set point goes out `--gap-ms` after the previous write arrived (default 100 ms: openWB sends
one per control cycle, every 10 s or more, so a real one finds the bridge idle); with
`--gap-ms 0` each follows at once and also waits for the bridge's read-back of the previous
write and the state it publishes after it, work the floor does not have.

    .venv/bin/python bench/command_latency.py [--n 500] [--gap-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time

import aiomqtt
from _harness import bare_hop, bridge_process, broker, machine, percentiles, summary, wait_until

from bridge.goe.model import ApiVersion
from bridge.simulator.charger import Car, SimCharger
from bridge.simulator.http import HttpFrontend


TOPIC = "openWB/set/internal_chargepoint/0/data/set_current"


async def floor_main(host: str, port: int, sim_port: int) -> None:
    """The floor process: subscribe, and write each set point to the charger."""
    import aiohttp

    base = f"http://127.0.0.1:{sim_port}/api/set?amp="
    async with aiomqtt.Client(host, port) as client, aiohttp.ClientSession() as session:
        await client.subscribe(TOPIC, qos=1)  # as the bridge subscribes
        print("ready", flush=True)
        async for message in client.messages:
            if message.retain:
                continue  # the last run's set point, delivered on subscribing
            amps = int(float(bytes(message.payload)))  # type: ignore[arg-type]
            async with session.get(f"{base}{amps}") as answer:
                json.loads(await answer.read())


async def beat(primary: aiomqtt.Client) -> None:
    """openWB's primary heartbeat: our time, renewed every 5 s (the bridge refuses a
    heartbeat ahead of its clock and counts a repeated one as no sign of life)."""
    while True:
        hb = json.dumps({"heartbeat": time.time(), "parent_ip": "bench"})
        await primary.publish("openWB/set/internal_chargepoint/global_data", hb, retain=True)
        await asyncio.sleep(5)


async def series(
    primary: aiomqtt.Client, sim: SimCharger, n: int, gap_s: float = 0.0
) -> list[float]:
    """`n` set points (after 20 not counted), each `gap_s` after the previous write arrived."""
    samples: list[float] = []
    for i in range(n + 20):
        amps = 7 + i % 10  # always different from the previous value
        count = len(sim.writes)
        t0 = time.perf_counter()
        await primary.publish(TOPIC, f"{amps}.0", retain=True)
        await wait_until(lambda: len(sim.writes) > count, 10)
        write = sim.writes[-1]
        assert (write.key, write.value) == ("amp", amps), write
        if i >= 20:  # warm-up
            samples.append((write.at - t0) * 1000)
        await asyncio.sleep(gap_s)
    return samples


async def main(n: int, gap_s: float) -> None:
    print(f"machine: {machine()}")
    async with broker() as b:
        sim = SimCharger(api=ApiVersion.V2, alw_delay_s=0.05, clock=time.perf_counter)
        sim.plug(Car(max_current_a=32, energy_needed_wh=1e9))
        async with HttpFrontend(sim) as fe:
            cfg = {
                "log": {"level": "warning", "format": "json"},
                "brokers": {"b": {"host": b.host, "port": b.port}},
                "publish": {"home_assistant": {"enabled": False}},
                "chargers": [{
                    "id": "wb",
                    "connection": {"type": "http", "host": "127.0.0.1", "port": fe.port, "poll_interval_s": 5},
                    "limits": {"max_current_a": 32},
                    "control": {"source": "openwb-secondary", "min_command_interval_s": 0},
                }],
            }  # fmt: skip
            with bridge_process(cfg):
                async with aiomqtt.Client(b.host, b.port) as primary:
                    heartbeat = asyncio.create_task(beat(primary))
                    await primary.publish(TOPIC, "6.0", retain=True)
                    await wait_until(lambda: sim.frc == 2 and sim.amp == 6, 30)
                    samples = await series(primary, sim, n, gap_s)
                    heartbeat.cancel()
            floor = subprocess.Popen(
                [sys.executable, __file__, "--floor", b.host, str(b.port), str(fe.port)],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                assert floor.stdout is not None
                await asyncio.to_thread(floor.stdout.readline)  # subscribed
                async with aiomqtt.Client(b.host, b.port) as primary:
                    floor_samples = await series(primary, sim, n, gap_s)
            finally:
                floor.terminate()
                floor.wait(10)
            hop = await bare_hop(b.host, b.port, n)
    med, p99 = percentiles(samples)
    fmed, fp99 = percentiles(floor_samples)
    hmed, hp99 = percentiles(hop)
    print(f"set points {gap_s * 1000:g} ms after the previous write arrived")
    print(f"command latency (set_current → HTTP write): {summary(samples)}")
    print(f"floor (subscribe → the same GET):           {summary(floor_samples)}")
    print(f"bare broker hop (publish → subscriber):     {summary(hop)}")
    print(f"bridge share: median {med - hmed:.2f} ms, p99 {p99 - hp99:.2f} ms")
    print(f"bridge / floor: median {med / fmed:.2f}x, p99 {p99 / fp99:.2f}x (goal: ≤ 1.3x)")
    print(
        f"targets: median ≤ 5 ms: {'met' if med <= 5 else 'MISSED'}; p99 ≤ 20 ms: {'met' if p99 <= 20 else 'MISSED'}"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--floor":
        asyncio.run(floor_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
        raise SystemExit(0)
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--gap-ms", type=float, default=100.0)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.gap_ms / 1000))
