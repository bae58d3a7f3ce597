"""Scale: 1, 10, 100 and 500 simulated chargers polled every 5 s. The simulators run in their
own process (`goe-bridge simulate --count N`); the bridge's CPU share of one core and RSS are
read from /proc after a warm-up.

    .venv/bin/python bench/scale.py [--counts 1,10,100,500] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from _harness import bridge_process, broker, cpu_share, machine, rss_mb, spawn_sims

from bridge.service import START_SPACING_S


async def measure(count: int, seconds: float, b: object) -> tuple[float, float, float]:
    sims, port = spawn_sims(count)  # the simulators take this port and the next count-1
    cfg = {
        "log": {"level": "warning", "format": "json"},
        "brokers": {"b": {"host": b.host, "port": b.port}},  # type: ignore[attr-defined]
        "publish": {"base_topic": f"scale{count}"},
        "chargers": [
            {"id": f"c{i}", "connection": {"type": "http", "host": "127.0.0.1", "port": port + i, "poll_interval_s": 5}}
            for i in range(count)
        ],
    }  # fmt: skip
    try:
        with bridge_process(cfg) as proc:
            # start-up: the full status and the first poll per charger, discovery, and the first
            # publication of every field, a fleet spread over ~0.1 s per charger
            # (service.start_offsets); the figures are for the steady state after it
            await asyncio.sleep(max(45.0, START_SPACING_S * count + 10))
            share = await cpu_share(proc.pid, seconds)
            rss = rss_mb(proc.pid)
            online = await count_online(b, f"scale{count}")
    finally:
        sims.terminate()
        sims.wait(30)
    return share, rss, online


async def count_online(b: object, base: str) -> float:
    """How many chargers the bridge reports online (their retained availability)."""
    import aiomqtt

    online: dict[str, bool] = {}
    async with aiomqtt.Client(b.host, b.port) as sub:  # type: ignore[attr-defined]
        await sub.subscribe(f"{base}/+/availability")
        try:
            async with asyncio.timeout(3):
                async for m in sub.messages:
                    online[m.topic.value] = m.payload == b"online"
        except TimeoutError:
            pass
    return sum(online.values())


async def main(counts: list[int], seconds: float) -> None:
    print(f"machine: {machine()}")
    async with broker() as b:
        for count in counts:
            share, rss, online = await measure(count, seconds, b)
            print(
                f"{count:4d} chargers polled every 5 s: CPU {share:5.2f} % of one core, RSS {rss:6.1f} MB"
                f" ({online:.0f}/{count} online)",
                flush=True,
            )
    print(
        "targets: 500 chargers ≤ 25 % CPU and ≤ 100 MB RSS; 1 charger ≤ 50 MB RSS and ≤ 0.5 % CPU"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", default="1,10,100,500")
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    asyncio.run(main([int(c) for c in args.counts.split(",")], args.seconds))
