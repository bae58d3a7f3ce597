"""Control integrity figures: recovery after charger and broker outages, a command flood
(10,000 commands/s for 30 s) followed by one real command, and the charger's final set
point through broker restarts with persistence.

    cd bench && ../.venv/bin/python control_integrity.py [--part recovery|flood|restarts]

Real parts: mosquitto, the bridge as a subprocess (`goe-bridge run`), the simulator over HTTP.
The flood is written straight to a TCP socket as pre-built MQTT 3.1.1 PUBLISH packets, so the
publisher is never the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

from _harness import ROOT, goe_bridge, machine, rss_mb, cpu_seconds

from bridge.goe.model import ApiVersion
from bridge.simulator.charger import Car, SimCharger
from bridge.simulator.http import HttpFrontend
from tests.mqtt_helpers import Mosquitto, run_mosquitto


@contextlib.contextmanager
def bridge(
    broker: Mosquitto, base: str, port: int, poll: float = 1.0
) -> Iterator[subprocess.Popen[bytes]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "log": {"level": "warning", "format": "json"},
                    "brokers": {
                        "home": {"host": broker.host, "port": broker.port, "keepalive_s": 5}
                    },
                    "publish": {"base_topic": base, "home_assistant": {"enabled": False}},
                    "chargers": [
                        {
                            "id": "c",
                            "connection": {
                                "type": "http",
                                "host": "127.0.0.1",
                                "port": port,
                                "poll_interval_s": poll,
                                "timeout_s": 1,
                            },
                            "limits": {"max_current_a": 16},
                            "control": {"source": "mqtt", "min_command_interval_s": 0},
                        }
                    ],
                }
            )
        )
        path.chmod(0o600)
        log = (Path(tmp) / "bridge.log").open("w")
        proc = subprocess.Popen(
            [*goe_bridge(), "run", "-c", str(path)], stdout=log, stderr=log, cwd=ROOT
        )
        try:
            yield proc
        finally:
            proc.terminate()
            proc.wait(20)
            log.close()


async def until(check: Any, timeout: float = 60.0, step: float = 0.01) -> float:
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError
        await asyncio.sleep(step)
    return time.monotonic() - t0


class Watch:
    """Latest retained value per topic, from a subscriber that reconnects by itself."""

    def __init__(self, broker: Mosquitto, pattern: str) -> None:
        self.broker, self.pattern, self.values = broker, pattern, {}
        self.task = asyncio.create_task(self.run())

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self.task

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(self.broker.host, self.broker.port) as c:
                    await c.subscribe(self.pattern, qos=1)
                    async for m in c.messages:
                        self.values[m.topic.value] = bytes(m.payload).decode()  # type: ignore[arg-type]
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)


async def recovery(sim: SimCharger, port: int) -> None:
    print("recovery (poll_interval_s: 1)")
    with run_mosquitto() as broker, bridge(broker, "rc", port):
        w = Watch(broker, "rc/#")
        await until(lambda: w.values.get("rc/c/availability") == "online")
        for outage in (10, 30, 60):
            sim.inject("timeout", 10**9, 5.0)
            await until(lambda: w.values.get("rc/c/availability") == "offline")
            await asyncio.sleep(outage)
            sim.clear_faults()
            took = await until(lambda: w.values.get("rc/c/availability") == "online")
            print(
                f"  charger answers again after a {outage:>2} s outage → online after {took:.2f} s"
            )
        for outage in (10, 60):
            broker.stop()
            await asyncio.sleep(outage)
            t0 = time.monotonic()
            broker.start()
            await until(lambda: w.values.get("rc/bridge/state") == "offline", timeout=10)
            took = await until(lambda: w.values.get("rc/bridge/state") == "online")
            print(
                f"  broker back after a {outage:>2} s outage → bridge online after {time.monotonic() - t0:.2f} s"
            )
        await w.close()


def mqtt_packet(kind: int, body: bytes) -> bytes:
    length, out = len(body), bytearray([kind])
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out) + body


def s16(text: bytes) -> bytes:
    return len(text).to_bytes(2, "big") + text


async def flood(sim: SimCharger, port: int, rate: int, seconds: int) -> None:
    print(
        f"flood: {rate} commands/s for {seconds} s on current_limit_a/set and allow_charging/set, then one real command"
    )
    with (
        run_mosquitto("allow_anonymous true\nmax_queued_messages 1000000\n") as broker,
        bridge(broker, "fl", port) as proc,
    ):
        w = Watch(broker, "fl/c/availability")
        await until(lambda: w.values.get("fl/c/availability") == "online")
        await asyncio.sleep(3)
        base_rss, cpu0 = rss_mb(proc.pid), cpu_seconds(proc.pid)
        sock = socket.create_connection((broker.host, broker.port))
        sock.sendall(
            mqtt_packet(
                0x10,
                s16(b"MQTT") + b"\x04\x02\x00\x3c" + s16(b"flood-" + uuid.uuid4().hex[:6].encode()),
            )
        )
        sock.recv(4)
        batch = b"".join(
            mqtt_packet(0x30, s16(b"fl/c/current_limit_a/set") + str(6 + i % 10).encode())
            + mqtt_packet(0x30, s16(b"fl/c/allow_charging/set") + b"maybe")
            for i in range(rate // 20)
        )  # rate/10 packets per 100 ms
        t0 = time.monotonic()
        sent = 0
        while time.monotonic() - t0 < seconds:
            await asyncio.to_thread(sock.sendall, batch)
            sent += rate // 10
            await asyncio.sleep(max(0.0, t0 + sent / rate - time.monotonic()))
        peak_rss = rss_mb(proc.pid)
        writes = len(sim.writes)
        t1 = time.monotonic()
        async with aiomqtt.Client(broker.host, broker.port) as c:
            await c.publish("fl/c/current_limit_a/set", "13", qos=1)
        took = await until(
            lambda: any(x.value == 13 for x in sim.writes[writes:]) and sim.amp == 13, timeout=300
        )
        cpu = cpu_seconds(proc.pid) - cpu0
        await asyncio.sleep(10)
        after = rss_mb(proc.pid)
        sock.close()
        await w.close()
        print(
            f"  sent {sent} commands in {t1 - t0:.1f} s ({sent / (t1 - t0):.0f}/s); bridge CPU during the flood {cpu:.1f} s"
        )
        print(f"  the real command after the flood reached the charger after {took:.2f} s")
        print(
            f"  RSS: {base_rss:.1f} MB before, {peak_rss:.1f} MB at the end of the flood, {after:.1f} MB 10 s later (+{after - base_rss:.1f} MB)"
        )


async def restarts(sim: SimCharger, port: int, count: int) -> None:
    print(
        f"restarts: a persistent mosquitto restarted {count} times under a QoS 1 command stream (every 0.5 s)"
    )
    rng = random.Random(7)
    ok = 0
    waits: list[float] = []
    with run_mosquitto(persistence=True) as broker, bridge(broker, "rs", port, poll=0.5):
        await asyncio.sleep(2)
        value = 6
        for _ in range(count):
            broker.stop()
            await asyncio.sleep(rng.uniform(0.1, 1.0))
            broker.start()
            acked = None
            t_end = time.monotonic() + rng.uniform(1.0, 2.5)
            while time.monotonic() < t_end:
                value = 6 + (value - 5) % 11
                with contextlib.suppress(aiomqtt.MqttError):
                    async with aiomqtt.Client(broker.host, broker.port) as c:
                        await c.publish("rs/c/current_limit_a/set", str(value), qos=1)
                        acked = value
                await asyncio.sleep(0.5)
            try:
                waits.append(await until(lambda: sim.amp == acked, timeout=30))
                ok += 1
            except TimeoutError:
                print(f"  ended on {sim.amp} A, newest accepted command {acked} A")
    print(
        f"  {ok}/{count} restarts ended on the newest accepted command (lost: {count - ok}); "
        f"time from the last command to the charger: median {statistics.median(waits):.2f} s, max {max(waits):.2f} s"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["recovery", "flood", "restarts", "all"], default="all")
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--restarts", type=int, default=30)
    args = parser.parse_args()
    print(machine())
    sim = SimCharger(api=ApiVersion.V2, alw_delay_s=0.05)
    sim.plug(Car(max_current_a=32, energy_needed_wh=1e9))
    async with HttpFrontend(sim) as fe:
        if args.part in ("recovery", "all"):
            await recovery(sim, fe.port)
        if args.part in ("flood", "all"):
            await flood(sim, fe.port, args.rate, args.seconds)
        if args.part in ("restarts", "all"):
            await restarts(sim, fe.port, args.restarts)


if __name__ == "__main__":
    asyncio.run(main())
