"""Soak: 50 chargers polled every second with random faults (timeouts, HTTP 500, truncated and
wrongly typed JSON, all-zero nrg, slow answers) for 10 minutes. RSS, open file descriptors and
asyncio tasks of the bridge at start and end (read from its /metrics).

    .venv/bin/python bench/soak.py [--minutes 10] [--chargers 50]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import time
import urllib.request

from _harness import bridge_process, broker, machine, open_fds, rss_mb

from bridge.goe.model import ApiVersion
from bridge.mqtt.embedded import free_port
from bridge.simulator.charger import Car, SimCharger
from bridge.simulator.http import HttpFrontend

FAULTS = ("timeout", "http500", "truncated", "wrong_type", "zero_nrg", "slow")


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(match.group(1)) if match else float("nan")


async def main(minutes: float, count: int) -> None:
    print(f"machine: {machine()}")
    rng = random.Random(7)
    async with broker() as b:
        sims = [
            SimCharger(api=rng.choice(list(ApiVersion)), serial=f"{i:06d}") for i in range(count)
        ]
        fronts = [await HttpFrontend(s).start() for s in sims]
        for s in sims:
            s.plug(Car(max_current_a=16, energy_needed_wh=1e9))
        http_port = free_port()
        cfg = {
            "log": {"level": "warning", "format": "json"},
            "brokers": {"b": {"host": b.host, "port": b.port}},
            "http": {"enabled": True, "port": http_port},
            "chargers": [
                {"id": f"c{i}", "connection": {"type": "http", "host": "127.0.0.1", "port": fe.port,
                                               "poll_interval_s": 1, "timeout_s": 1},
                 "control": {"source": "none"}}
                for i, fe in enumerate(fronts)
            ],
        }  # fmt: skip
        url = f"http://127.0.0.1:{http_port}/metrics"

        def read_metrics() -> str:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.read().decode()

        with bridge_process(cfg) as proc:
            await asyncio.sleep(20)
            text = await asyncio.to_thread(read_metrics)
            start = (rss_mb(proc.pid), open_fds(proc.pid), metric(text, "goe_bridge_asyncio_tasks"))
            deadline = time.monotonic() + minutes * 60
            injected = 0
            while time.monotonic() < deadline:
                sim = rng.choice(sims)
                kind = rng.choice(FAULTS)
                sim.inject(
                    kind, rng.randint(1, 5), delay_s=2.0 if kind in ("timeout", "slow") else 0
                )
                injected += 1
                await asyncio.sleep(rng.uniform(0.1, 1.0))
            for s in sims:
                s.clear_faults()
            await asyncio.sleep(15)
            text = await asyncio.to_thread(read_metrics)
            end = (rss_mb(proc.pid), open_fds(proc.pid), metric(text, "goe_bridge_asyncio_tasks"))
            alive = proc.poll() is None
            available = sum(1 for line in text.splitlines()
                            if line.startswith("goe_bridge_charger_available") and line.endswith(" 1"))  # fmt: skip
        for fe in fronts:
            await fe.close()
    print(
        f"{count} chargers, poll 1 s, {minutes:g} min, {injected} faults injected; bridge alive at the end: {alive}"
    )
    print(f"  start: RSS {start[0]:.1f} MB, open fds {start[1]}, asyncio tasks {start[2]:.0f}")
    print(f"  end:   RSS {end[0]:.1f} MB, open fds {end[1]}, asyncio tasks {end[2]:.0f}")
    print(f"  chargers available 15 s after the last fault: {available}/{count}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--chargers", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.minutes, args.chargers))
