"""The bridge against the I/O floor, side by side in one run (issue: "within 1.3x of the floor").

N simulated chargers (`goe-bridge simulate --count N`, their own process) and one mosquitto;
two processes poll every charger with the same v2 filter at the same interval:

- the bridge (every feature on: decoding, plausibility, deadbands, discovery, reconciler,
  metrics, the status page);
- the floor (`python floor.py --floor …`): an aiohttp GET with the same filter, `json.loads`,
  and an aiomqtt publish of `power_w` when it changed. Nothing more.

CPU of both is read from /proc over the same window after the start-up; RSS at its end. The
start-up curve is the bridge's CPU share per 5 s window from its launch.

    cd bench && ../.venv/bin/python floor.py [--cases 100@1,500@5] [--seconds 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import time
from pathlib import Path

from _harness import (
    bridge_process,
    broker,
    cpu_seconds,
    free_port_range,
    machine,
    rss_mb,
    spawn_sims,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bridge.goe import codec_v2
from bridge.service import START_SPACING_S

FILTER = ",".join(codec_v2.POLL_KEYS)


async def floor_main(host: str, port: int, count: int, first: int, interval: float) -> None:
    """The floor process: the unavoidable I/O and parsing, the same libraries."""
    import aiohttp
    import aiomqtt

    last: dict[int, float] = {}
    async with aiomqtt.Client(host, port) as client, aiohttp.ClientSession() as session:

        async def poll(i: int) -> None:
            await asyncio.sleep(interval * i / count)  # spread like the bridge
            url = f"http://127.0.0.1:{first + i}/api/status"
            while True:
                started = time.monotonic()
                try:
                    async with session.get(url, params={"filter": FILTER}) as answer:
                        data = json.loads(await answer.text())
                    power = data["nrg"][11]
                    if last.get(i) != power:
                        last[i] = power
                        await client.publish(f"floor/c{i}/power_w", str(power), retain=True)
                except (aiohttp.ClientError, ValueError, KeyError):
                    pass
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

        await asyncio.gather(*(poll(i) for i in range(count)))


async def startup_curve(pid: int, seconds: float, window: float = 5.0) -> list[float]:
    """CPU share of one core per `window` seconds from now."""
    out = []
    before = cpu_seconds(pid)
    for _ in range(int(seconds / window)):
        await asyncio.sleep(window)
        now = cpu_seconds(pid)
        out.append(100 * (now - before) / window)
        before = now
    return out


async def case(count: int, interval: float, seconds: float, b: object) -> dict[str, object]:
    sims, port = spawn_sims(count)
    host, mport = b.host, b.port  # type: ignore[attr-defined]
    cfg = {
        "log": {"level": "warning", "format": "json"},
        "brokers": {"b": {"host": host, "port": mport}},
        "publish": {"base_topic": f"floor{count}"},
        "http": {"enabled": True, "port": free_port_range(1, 61000, 64000)},
        "chargers": [
            {"id": f"c{i}", "connection": {"type": "http", "host": "127.0.0.1", "port": port + i,
                                           "poll_interval_s": interval}}
            for i in range(count)
        ],
    }  # fmt: skip
    floor = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--floor",
            host,
            str(mport),
            str(count),
            str(port),
            str(interval),
        ]
    )
    try:
        with bridge_process(cfg) as proc:
            # the start: every charger's first poll within max(interval, 0.1 s × N), then
            # one more interval (service.start_offsets); the steady window comes after it
            ramp = max(interval, START_SPACING_S * count) + interval
            curve = await startup_curve(proc.pid, max(40.0, 5 * math.ceil(ramp / 5) + 10))
            polls = count * seconds / interval
            b0, f0 = cpu_seconds(proc.pid), cpu_seconds(floor.pid)
            await asyncio.sleep(seconds)
            b1, f1 = cpu_seconds(proc.pid), cpu_seconds(floor.pid)
            return {
                "bridge_ms": 1000 * (b1 - b0) / polls,
                "floor_ms": 1000 * (f1 - f0) / polls,
                "bridge_rss": rss_mb(proc.pid),
                "floor_rss": rss_mb(floor.pid),
                "curve": curve,
            }
    finally:
        floor.terminate()
        floor.wait(10)
        sims.terminate()
        sims.wait(10)


async def main(cases: list[tuple[int, float]], seconds: float) -> None:
    print(machine())
    async with broker() as b:
        for count, interval in cases:
            r = await case(count, interval, seconds, b)
            bm, fm = float(r["bridge_ms"]), float(r["floor_ms"])  # type: ignore[arg-type]
            br, fr = float(r["bridge_rss"]), float(r["floor_rss"])  # type: ignore[arg-type]
            curve = " ".join(f"{c:.0f}" for c in r["curve"])  # type: ignore[attr-defined]
            print(
                f"{count} @ {interval:g} s: CPU per poll bridge {bm:.3f} ms, floor {fm:.3f} ms, "
                f"ratio {bm / fm:.2f}x; RSS bridge {br:.1f} MB, floor {fr:.1f} MB, "
                f"ratio {br / fr:.2f}x; start-up % of a core per 5 s: {curve}",
                flush=True,
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--floor":
        h, p, n, first, every = sys.argv[2:7]
        asyncio.run(floor_main(h, int(p), int(n), int(first), float(every)))
        raise SystemExit(0)
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default="100@1,500@5")
    parser.add_argument("--seconds", type=float, default=40)
    args = parser.parse_args()
    wanted = [(int(c.split("@")[0]), float(c.split("@")[1])) for c in args.cases.split(",")]
    asyncio.run(main(wanted, args.seconds))
