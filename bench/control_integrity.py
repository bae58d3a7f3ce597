"""Control integrity figures: recovery after charger and broker outages, a command flood
(10,000 commands/s for 30 s, with a second process loading the other core) followed by one
real command, the charger's final set point through broker restarts with persistence, A-B-A
set points re-sent after a half-dead link, power cuts of broker and bridge together, and the
failsafe of an openWB MQTT chargepoint whose link keeps flapping.

    cd bench && ../.venv/bin/python control_integrity.py \
        [--part recovery|flood|restarts|aba|powercut|flap|memory|all]

Real parts: mosquitto, the bridge as a subprocess (`goe-bridge run`), the simulator over HTTP.
The flood is written straight to a TCP socket as pre-built MQTT 3.1.1 PUBLISH packets, so the
publisher is never the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
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
from tests.mqtt_helpers import Mosquitto, TcpProxy, run_mosquitto


@contextlib.contextmanager
def bridge(
    broker: Any,
    base: str,
    port: int,
    poll: float = 1.0,
    *,
    control: dict[str, Any] | None = None,
    state_dir: Path | None = None,
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
                    "state_file": str(state_dir / "state.json") if state_dir else None,
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
                            "control": {
                                "source": "mqtt",
                                "min_command_interval_s": 0,
                                **(control or {}),
                            },
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
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
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


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while sock.recv(65536):
            pass


def s16(text: bytes) -> bytes:
    return len(text).to_bytes(2, "big") + text


@contextlib.contextmanager
def other_core_loaded() -> Iterator[None]:
    """A second process that keeps the other core busy (the machine a Pi user has while
    something else runs on it)."""
    hog = subprocess.Popen(["python3", "-c", "while True: pass"])
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


async def flood(sim: SimCharger, port: int, rate: int, seconds: int, queue: str) -> None:
    limit = "max_queued_messages 1000000\n" if queue == "unlimited" else ""
    print(
        f"flood: {rate} commands/s for {seconds} s on current_limit_a/set and allow_charging/set, "
        f"then one real command; mosquitto's queue {queue}; the other core loaded"
    )
    with (
        other_core_loaded(),
        run_mosquitto("allow_anonymous true\n" + limit) as broker,
        bridge(broker, "fl", port, control={"min_command_interval_s": 5}) as proc,
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
        # QoS 1, as a controller sends commands: the broker queues them for the bridge, and
        # a slow reader makes mosquitto's queue (max_queued_messages, 1000 by default) drop
        # what comes next; the flooder's PUBACKs are read and thrown away
        drain = threading.Thread(target=lambda: _drain(sock), daemon=True)
        drain.start()
        batch = b"".join(
            mqtt_packet(0x32, s16(b"fl/c/current_limit_a/set") + (2 * i + 1).to_bytes(2, "big")
                        + str(6 + i % 10).encode())
            + mqtt_packet(0x32, s16(b"fl/c/allow_charging/set") + (2 * i + 2).to_bytes(2, "big")
                          + b"maybe")
            for i in range(rate // 20)
        )  # rate/10 packets per 100 ms  # fmt: skip
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
            await c.publish("fl/c/current_limit_a/set", "16", qos=1)  # the flood sends 6..15
        took = await until(
            lambda: any(x.value == 16 for x in sim.writes[writes:]) and sim.amp == 16, timeout=300
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


async def publish(broker: Any, topic: str, payload: str, *, retain: bool = False) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as c:
        await c.publish(topic, payload, qos=1, retain=retain)


async def aba(sim: SimCharger, port: int, rounds: int) -> None:
    """7 → 14 → 7 where the last 7 is sent into a half-dead link (the broker believes it
    delivered it, the bridge never got it) and the link is then cut: the broker sends it again
    with DUP=1 after the reconnect. The same for allow true → false → true → false."""
    print(f"A-B-A through a half-dead link, {rounds} rounds each (current 7-14-7, allow t-f-t-f)")
    cases = (
        ("current_limit_a", ["7", "14", "7"], lambda: sim.amp == 7),
        ("allow_charging", ["true", "false", "true", "false"], lambda: sim.frc == 1),
    )
    with run_mosquitto() as broker:
        async with TcpProxy(broker.host, broker.port) as proxy:
            with bridge(proxy, "ab", port, poll=0.5):
                w = Watch(broker, "ab/c/availability")
                await until(lambda: w.values.get("ab/c/availability") == "online")
                for field, sequence, done in cases:
                    ok, waits = 0, []
                    for _ in range(rounds):
                        for value in sequence[:-1]:
                            await publish(broker, f"ab/c/{field}/set", value)
                            await asyncio.sleep(0.4)
                        proxy.blackhole()
                        await publish(broker, f"ab/c/{field}/set", sequence[-1])
                        await asyncio.sleep(0.3)
                        t0 = time.monotonic()
                        proxy.cut()
                        try:
                            await until(done, timeout=20)
                            ok += 1
                            waits.append(time.monotonic() - t0)
                        except TimeoutError:
                            pass
                    median = f"{statistics.median(waits):.2f} s" if waits else "-"
                    print(f"  {field} {'-'.join(sequence)}: {ok}/{rounds} ended on the last "
                          f"value (after the cut: median {median})")  # fmt: skip
                await w.close()


async def powercut(sim: SimCharger, port: int, rounds: int, with_state: bool) -> None:
    """A persistent broker and the bridge die together after a retained 7 was applied and
    cleared and a live 14 applied; the broker comes back from a save taken while the 7 was on
    its way, the charger rebooted to its own 16 A. Where does it end?"""
    print(f"power cut of broker and bridge together, {rounds} rounds, "
          f"{'with' if with_state else 'without'} the state file")  # fmt: skip
    ends: list[int] = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp, run_mosquitto(persistence=True) as broker:
            state = Path(tmp) if with_state else None
            with bridge(broker, "pc", port, poll=0.5, state_dir=state) as proc:
                w = Watch(broker, "pc/c/availability")
                await until(lambda: w.values.get("pc/c/availability") == "online")
                await publish(broker, "pc/c/allow_charging/set", "true")
                await until(lambda: sim.frc == 2)
                proc.send_signal(signal.SIGSTOP)
                await publish(broker, "pc/c/current_limit_a/set", "7", retain=True)
                await asyncio.sleep(0.3)
                broker.save()
                await asyncio.sleep(0.3)
                proc.send_signal(signal.SIGCONT)
                await until(lambda: sim.amp == 7)
                await publish(broker, "pc/c/current_limit_a/set", "14")
                await until(lambda: sim.amp == 14)
                await asyncio.sleep(1.0)
                await w.close()
                proc.kill()
                broker.kill()
            sim.amp, sim.frc = 16, 0
            broker.start()
            with bridge(broker, "pc", port, poll=0.5, state_dir=state):
                await asyncio.sleep(6)
                ends.append(sim.amp)
    counts = {a: ends.count(a) for a in sorted(set(ends))}
    print(f"  ended on: {counts} (A: rounds); the newest command was 14 A")


async def flap(sim: SimCharger, port: int) -> None:
    """openWB's MQTT chargepoint published its set point retained (16 A) and is gone; the
    bridge's link flaps every ~2 s, each reconnect delivering the retained 16 A again; the
    failsafe is 20 s."""
    print("openWB gone, link flapping every ~2 s, failsafe 20 s (openwb-mqtt)")
    with run_mosquitto() as broker:
        async with TcpProxy(broker.host, broker.port) as proxy:
            control = {"source": "openwb-mqtt", "failsafe": {"timeout_s": 20}}
            with bridge(proxy, "fp", port, poll=0.5, control=control):
                await asyncio.sleep(2)
                await publish(broker, "openWB/mqtt/chargepoint/1/set/current", "16", retain=True)
                await until(lambda: sim.frc == 2 and sim.amp == 16)
                t0 = time.monotonic()
                flaps = 0
                while sim.frc != 1 and time.monotonic() - t0 < 70:
                    await asyncio.sleep(2)
                    proxy.cut()
                    flaps += 1
                took = time.monotonic() - t0
                state = "stopped" if sim.frc == 1 else "STILL CHARGING"
                print(f"  {state} after {took:.1f} s ({flaps} link flaps)")


async def memory(sim: SimCharger, port: int) -> None:
    """What arrives must not stay: 5 payloads of 20 MB on a command topic (MQTT 5 Maximum
    Packet Size: the broker does not send them), then 20,000 topics the bridge does not know."""
    print("memory: 5 × 20 MB on a command topic, then 20,000 unknown command topics")
    with run_mosquitto() as broker, bridge(broker, "mm", port) as proc:
        w = Watch(broker, "mm/c/availability")
        await until(lambda: w.values.get("mm/c/availability") == "online")
        await asyncio.sleep(3)
        before = rss_mb(proc.pid)
        async with aiomqtt.Client(broker.host, broker.port) as c:
            for _ in range(5):
                await c.publish("mm/c/current_limit_a/set", b"1" * 20_000_000, qos=1)
        await asyncio.sleep(3)
        big = rss_mb(proc.pid)
        async with aiomqtt.Client(broker.host, broker.port) as c:
            for i in range(20_000):
                await c.publish(f"mm/c/unknown{i}/set", b"1", qos=0)
            await c.publish("mm/c/current_limit_a/set", b"9", qos=1)
        await until(lambda: sim.amp == 9, timeout=120)
        await asyncio.sleep(3)
        unknown = rss_mb(proc.pid)
        await w.close()
        print(f"  RSS {before:.1f} MB before, {big:.1f} MB after 5 × 20 MB (+{big - before:.1f}), "
              f"{unknown:.1f} MB after 20,000 unknown topics (+{unknown - before:.1f})")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", default="all", choices=[
        "recovery", "flood", "restarts", "aba", "powercut", "flap", "memory", "all"])  # fmt: skip
    parser.add_argument("--rounds", type=int, default=10)
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
            for queue in ("default", "unlimited"):
                await flood(sim, fe.port, args.rate, args.seconds, queue)
        if args.part in ("restarts", "all"):
            await restarts(sim, fe.port, args.restarts)
        if args.part in ("aba", "all"):
            await aba(sim, fe.port, args.rounds)
        if args.part in ("powercut", "all"):
            for with_state in (True, False):
                await powercut(sim, fe.port, args.rounds, with_state)
        if args.part in ("flap", "all"):
            await flap(sim, fe.port)
        if args.part in ("memory", "all"):
            await memory(sim, fe.port)


if __name__ == "__main__":
    asyncio.run(main())
