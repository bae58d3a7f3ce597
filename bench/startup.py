"""Start-up: process start → the first retained field published. Median of 5 starts.

.venv/bin/python bench/startup.py
"""

from __future__ import annotations

import asyncio
import statistics
import time

import aiomqtt
from _harness import bridge_process, broker, machine

from bridge.goe.model import ApiVersion
from bridge.simulator.charger import SimCharger
from bridge.simulator.http import HttpFrontend


async def main(runs: int = 5) -> None:
    print(f"machine: {machine()}")
    times: list[float] = []
    async with broker() as b, HttpFrontend(SimCharger(api=ApiVersion.V2)) as fe:
        for run in range(runs):
            base = f"start{run}"
            cfg = {
                "log": {"level": "warning", "format": "json"},
                "brokers": {"b": {"host": b.host, "port": b.port}},
                "publish": {"base_topic": base},
                "chargers": [
                    {
                        "id": "c",
                        "connection": {"type": "http", "host": "127.0.0.1", "port": fe.port},
                    }
                ],
            }
            async with aiomqtt.Client(b.host, b.port) as sub:
                await sub.subscribe(f"{base}/c/power_w")
                t0 = time.perf_counter()
                with bridge_process(cfg):
                    async with asyncio.timeout(30):
                        async for _ in sub.messages:
                            times.append(time.perf_counter() - t0)
                            break
    print("start → first field (power_w) published: "
          + ", ".join(f"{t:.2f} s" for t in times) + f"; median {statistics.median(times):.2f} s")  # fmt: skip
    print(f"target: ≤ 2 s: {'met' if statistics.median(times) <= 2 else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main())
