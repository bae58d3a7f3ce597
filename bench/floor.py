"""The bridge against the I/O floor, side by side in one run (issue: "within 1.3x of the floor").

N simulated chargers (`goe-bridge simulate --count N`, their own process) and one mosquitto;
two processes poll every charger with the same v2 filter at the same interval:

- the bridge (every feature on: decoding, plausibility, deadbands, discovery, reconciler,
  metrics, the status page);
- the floor (`python floor.py --floor …`): the cheapest correct program for the same job with
  the same libraries, one task per charger: an aiohttp GET of a URL built once as a string,
  `json.loads` of the answer's bytes, and an aiomqtt publish of `power_w` when it moved by at
  least the bridge's own power deadband (at once when it crosses zero). Nothing the bridge
  avoids: any work the floor does that the bridge does not is a defect of the floor.

CPU of both is read from /proc over the same window after the start-up; RSS at its end. The
start-up curve is the bridge's CPU share per 5 s window from its launch. Each case runs with
the simulators' measurement noise on and off (`--noise on|off|both`), `--runs` times; the
machine's load average is printed before each run (the figures are only as quiet as it).

    cd bench && ../.venv/bin/python floor.py [--cases 100@1,500@5] [--seconds 40] [--noise both] [--runs 2]
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


async def floor_main(argv: list[str]) -> None:
    """The floor process: the unavoidable I/O and parsing, the same libraries. It imports
    nothing else (no bridge module, no YAML): its RSS is that of the job.
    `argv`: broker host and port, charger count, first port, interval, filter, power band."""
    import aiohttp
    import aiomqtt

    host, port, count, first = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    interval, filter_, band_w = float(argv[4]), argv[5], float(argv[6])

    async with aiomqtt.Client(host, port) as client, aiohttp.ClientSession() as session:

        async def poll(i: int) -> None:
            await asyncio.sleep(interval * i / count)  # spread like the bridge
            url = f"http://127.0.0.1:{first + i}/api/status?filter={filter_}"
            topic = f"floor/c{i}/power_w"
            sent: float | None = None
            while True:
                started = time.monotonic()
                try:
                    async with session.get(url) as answer:
                        data = json.loads(await answer.read())
                    power = data["nrg"][11]
                    if sent is None or (sent == 0) != (power == 0) or abs(power - sent) >= band_w:
                        sent = power
                        await client.publish(topic, str(power), retain=True)
                except (aiohttp.ClientError, ValueError, LookupError, TypeError):
                    pass
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

        async with asyncio.TaskGroup() as group:  # one task per charger
            for i in range(count):
                group.create_task(poll(i))


if __name__ == "__main__" and sys.argv[1:2] == ["--floor"]:
    asyncio.run(floor_main(sys.argv[2:9]))
    raise SystemExit(0)

from _harness import (
    bridge_process,
    broker,
    cpu_seconds,
    free_port_range,
    load_average,
    machine,
    rss_mb,
    spawn_sims,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bridge.goe import codec_v2
from bridge.publish.fields import deadband
from bridge.service import START_SPACING_S

FILTER = ",".join(codec_v2.POLL_KEYS)
# the bridge's own band for power_w: the floor publishes no more often than the bridge must
POWER_BAND_W = deadband("power_w")


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


async def case(
    count: int, interval: float, seconds: float, b: object, *, noise: bool
) -> dict[str, object]:
    sims, port = spawn_sims(count, noise=noise)
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
            FILTER,
            str(POWER_BAND_W),
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


async def main(cases: list[tuple[int, float]], seconds: float, noises: list[bool],
               runs: int) -> None:  # fmt: skip
    print(machine())
    for run in range(1, runs + 1):
        for count, interval in cases:
            for noise in noises:
                load = load_average()
                # a broker of its own per case: the bridge reads back what the broker retains
                # at start (lifecycle.py), and another case's 500 device configs are not this
                # one's memory
                async with broker() as b:
                    r = await case(count, interval, seconds, b, noise=noise)
                bm, fm = float(r["bridge_ms"]), float(r["floor_ms"])  # type: ignore[arg-type]
                br, fr = float(r["bridge_rss"]), float(r["floor_rss"])  # type: ignore[arg-type]
                curve = " ".join(f"{c:.0f}" for c in r["curve"])  # type: ignore[attr-defined]
                print(
                    f"run {run}, {count} @ {interval:g} s, noise {'on' if noise else 'off'} "
                    f"(load average before: {load}): CPU per poll bridge {bm:.3f} ms, "
                    f"floor {fm:.3f} ms, ratio {bm / fm:.2f}x; RSS bridge {br:.1f} MB, "
                    f"floor {fr:.1f} MB, ratio {br / fr:.2f}x; "
                    f"start-up % of a core per 5 s: {curve}",
                    flush=True,
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default="100@1,500@5")
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--noise", choices=("on", "off", "both"), default="both",
                        help="the simulators' measurement noise")  # fmt: skip
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    wanted = [(int(c.split("@")[0]), float(c.split("@")[1])) for c in args.cases.split(",")]
    noises = {"on": [True], "off": [False], "both": [False, True]}[args.noise]
    asyncio.run(main(wanted, args.seconds, noises, args.runs))
