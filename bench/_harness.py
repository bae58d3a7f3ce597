"""Shared pieces for the benchmarks: a broker, the bridge as a subprocess, process stats."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.mqtt.embedded import EmbeddedBroker, find_mosquitto


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


@contextlib.asynccontextmanager
async def broker() -> AsyncIterator[EmbeddedBroker]:
    if find_mosquitto() is None:
        raise SystemExit("the benchmarks need mosquitto (apt-get install mosquitto)")
    async with EmbeddedBroker() as b:
        yield b


@functools.cache
def goe_bridge() -> list[str]:
    """The CLI of this checkout. A virtualenv copied from another checkout would run that
    checkout's code (its editable install points there) and measure the wrong bridge."""
    imported = subprocess.run(
        [sys.executable, "-c", "import bridge; print(bridge.__file__)"],
        capture_output=True, text=True, cwd="/", check=False,
    ).stdout.strip()  # fmt: skip
    if not imported or not Path(imported).resolve().is_relative_to(ROOT):
        raise SystemExit(
            f"{sys.executable} imports bridge from {imported or 'nowhere'}, not from {ROOT}: "
            "run `pip install -e .` in this checkout's virtualenv first"
        )
    exe = Path(sys.executable).parent / "goe-bridge"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "bridge"]


@contextlib.contextmanager
def bridge_process(config: dict[str, Any]) -> Iterator[subprocess.Popen[bytes]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        proc = subprocess.Popen(
            [*goe_bridge(), "run", "-c", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def spawn_sims(count: int, *, noise: bool = True) -> tuple[subprocess.Popen[str], int]:
    """`count` simulated chargers with a car charging (`goe-bridge simulate`, their own
    process) on consecutive ports, with a real charger's measurement noise unless `noise`
    is False; returns the process and the first port."""
    port = free_port_range(count)
    sims = subprocess.Popen(
        [*goe_bridge(), "simulate", "--count", str(count), "--port", str(port),
         "--plug-after", "0", *(["--noise"] if noise else [])],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert sims.stdout is not None
    for _ in range(count):
        sims.stdout.readline()  # each simulator prints its URL once it listens
    return sims, port


def load_average() -> str:
    """The machine's 1/5/15-minute load average (`uptime`): how quiet the figures are."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def cpu_share(pid: int, seconds: float) -> float:
    """Percent of one core used by `pid` over `seconds` of wall time."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def summary(samples_ms: list[float]) -> str:
    ordered = sorted(samples_ms)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"n={len(ordered)} median={statistics.median(ordered):.2f} ms "
        f"p99={p99:.2f} ms min={ordered[0]:.2f} ms max={ordered[-1]:.2f} ms"
    )


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def bare_hop(host: str, port: int, n: int = 500) -> list[float]:
    """publish → subscriber on the same broker, the reference for every latency."""
    import aiomqtt

    samples: list[float] = []
    async with aiomqtt.Client(host, port) as sub, aiomqtt.Client(host, port) as pub:
        await sub.subscribe("bench/hop")
        await asyncio.sleep(0.2)
        for i in range(n):
            t0 = time.perf_counter()
            await pub.publish("bench/hop", str(i))
            async for _ in sub.messages:
                samples.append((time.perf_counter() - t0) * 1000)
                break
    return samples


async def wait_until(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark precondition not reached")
        await asyncio.sleep(0.01)


def free_port_range(count: int, start: int = 20000, end: int = 60000) -> int:
    """A first port such that `count` consecutive ports are free (simulate --count)."""
    import random
    import socket

    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(start, end - count)
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {count} consecutive free ports")
