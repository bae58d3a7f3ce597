"""`goe-bridge run` and `goe-bridge demo` as subprocesses, with real mosquitto and the
simulator: signals, the Last Will, a broker restart, systemd notifications."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.goe.model import ApiVersion
from bridge.simulator.charger import SimCharger
from bridge.simulator.http import HttpFrontend
from tests.conftest import free_port
from tests.mqtt_helpers import Probe, run_mosquitto, until
from tests.system.test_cli import goe_bridge


def write_config(path: Path, broker: Any, base: str, charger_port: int, **control: Any) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "log": {"level": "info", "format": "json"},
                "brokers": {"home": {"host": broker.host, "port": broker.port, "keepalive_s": 5}},
                "publish": {"base_topic": base},
                "chargers": [
                    {
                        "id": "garage",
                        "connection": {"type": "http", "host": "127.0.0.1", "port": charger_port,
                                       "poll_interval_s": 0.5, "timeout_s": 1},
                        "limits": {"max_current_a": 16},
                        "control": {"source": "mqtt", "min_command_interval_s": 0, **control},
                    }
                ],
            }
        )
    )  # fmt: skip
    path.chmod(0o600)
    return path


@pytest.fixture
async def sim() -> AsyncIterator[HttpFrontend]:
    charger = SimCharger(api=ApiVersion.V2, alw_delay_s=0.05)
    charger.plug()
    async with HttpFrontend(charger) as fe:
        yield fe


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*goe_bridge(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )  # fmt: skip


async def wait_exit(proc: subprocess.Popen[str], timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("process did not exit")
        await asyncio.sleep(0.05)
    return proc.returncode


async def test_sigterm_publishes_offline_and_exits_0(
    mosquitto: Any, base_topic: str, sim: HttpFrontend, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "config.yaml", mosquitto, base_topic, sim.port)
    async with Probe(mosquitto.host, mosquitto.port, f"{base_topic}/#") as probe:
        proc = spawn("run", "-c", str(cfg))
        try:
            await probe.wait_for(f"{base_topic}/bridge/state", "online", timeout=20)
            await probe.wait_for(f"{base_topic}/garage/power_w")
            mark = probe.mark()
            proc.send_signal(signal.SIGTERM)
            assert await wait_exit(proc) == 0
            await probe.wait_for(f"{base_topic}/bridge/state", "offline", since=mark)
        finally:
            if proc.poll() is None:
                proc.kill()
    stderr = proc.stderr.read() if proc.stderr else ""
    first = json.loads(stderr.splitlines()[0])
    # the first line says which config, brokers and chargers it uses
    assert first["event"] == "bridge.start"
    assert first["config"] == str(cfg)
    assert first["chargers"] == {"garage": {"connection": "http", "control": "mqtt"}}


async def test_kill_9_leaves_the_last_will(
    mosquitto: Any, base_topic: str, sim: HttpFrontend, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "config.yaml", mosquitto, base_topic, sim.port)
    async with Probe(mosquitto.host, mosquitto.port, f"{base_topic}/bridge/state") as probe:
        proc = spawn("run", "-c", str(cfg))
        try:
            await probe.wait_for(f"{base_topic}/bridge/state", "online", timeout=20)
            mark = probe.mark()
            proc.kill()  # SIGKILL: no goodbye, the broker sends the Will
            await wait_exit(proc)
            await probe.wait_for(f"{base_topic}/bridge/state", "offline", since=mark, timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()


async def test_broker_restart_reconnects_republishes_and_takes_commands(
    base_topic: str, sim: HttpFrontend, tmp_path: Path
) -> None:
    with run_mosquitto() as broker:
        cfg = write_config(tmp_path / "config.yaml", broker, base_topic, sim.port)
        proc = spawn("run", "-c", str(cfg))
        try:
            async with Probe(broker.host, broker.port, f"{base_topic}/#") as probe:
                await probe.wait_for(f"{base_topic}/bridge/state", "online", timeout=20)
                await probe.wait_for(f"{base_topic}/garage/serial", "000001")
            broker.stop()  # no persistence: every retained message is gone
            await asyncio.sleep(1.0)
            broker.start()
            # A new subscriber sees online again and the retained state, re-published.
            async with Probe(broker.host, broker.port, f"{base_topic}/#") as probe:
                await probe.wait_for(f"{base_topic}/bridge/state", "online", timeout=40)
                await probe.wait_for(f"{base_topic}/garage/serial", "000001", timeout=20)
                await probe.wait_for(f"{base_topic}/garage/availability", "online")
                await probe.publish(f"{base_topic}/garage/current_limit_a/set", "9")
                await probe.wait_for(f"{base_topic}/garage/result", lambda p: json.loads(p)["ok"])
                await until(lambda: sim.charger.amp == 9, what="command after restart")
            proc.send_signal(signal.SIGTERM)
            assert await wait_exit(proc) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


async def test_demo_runs_and_stops_on_sigterm() -> None:
    proc = spawn("demo", "--speed", "4")
    try:
        lines: list[str] = []
        loop = asyncio.get_running_loop()
        assert proc.stdout is not None
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            line = await loop.run_in_executor(None, proc.stdout.readline)
            if not line:
                break
            lines.append(line)
            if "goe/demo/control/in_sync = true" in line:
                break
        text = "".join(lines)
        assert "embedded MQTT broker" in text
        assert "goe/bridge/state = online" in text
        assert "goe/demo/car_state = charging" in text
        proc.send_signal(signal.SIGTERM)
        assert await wait_exit(proc) == 0
        rest = proc.stdout.read()
        assert "goe/bridge/state = offline" in rest
        assert "demo stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow(12)
def test_the_demo_tells_its_story_in_30_s_and_ends_cleanly_on_ctrl_c() -> None:
    from bridge import demo

    times = [demo.PLUG_AT, *(t for t, *_ in demo.SCENARIO), demo.DONE_AT]
    assert times == sorted(times) and times[-1] <= 30
    assert max(b - a for a, b in itertools.pairwise([0.0, *times])) <= 5
    # in its own process group, as a shell runs a command in a terminal: Ctrl-C signals the
    # whole group, the embedded mosquitto included
    proc = subprocess.Popen(
        [*goe_bridge(), "demo", "--speed", "3", "--broker", "mosquitto"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        # Ctrl-C once the story is told (a fixed wait came too early on a loaded machine)
        told = []
        assert proc.stdout is not None
        for line in proc.stdout:
            told.append(line)
            if "scenario done" in line:
                break
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        out, err = proc.communicate(timeout=30)
        out = "".join(told) + out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0
    assert "[error" not in out + err, out + err
    # the README's story: 16 A and at once 12 A are sent, only 12 A reaches the charger
    after_16 = out.split("→ goe/demo/current_limit_a/set 16", 1)[1]
    assert "goe/demo/current_limit_a = 16" not in after_16
    assert after_16.index("goe/demo/current_limit_a = 12") < after_16.index("→ goe/demo/phases")
    for _, suffix, payload, _ in demo.SCENARIO:
        assert f"→ goe/demo/{suffix} {payload}" in out
    assert '"ok":false,"field":"current_limit_a","value":40' in out  # refused
    assert "goe/demo/phases = 1" in out
    assert "scenario done" in out
    assert out.count("goe/bridge/state = offline") == 1
    assert "Traceback" not in out + err and "never retrieved" not in out + err


def test_the_demo_on_amqtt_logs_no_error() -> None:
    pytest.importorskip("amqtt", reason="the demo extra (amqtt) is not installed")
    result = subprocess.run(
        [*goe_bridge(), "demo", "--duration", "4", "--broker", "amqtt"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "embedded MQTT broker (amqtt)" in result.stdout
    assert "goe/demo/availability = online" in result.stdout
    for line in (result.stdout + result.stderr).splitlines():
        assert "[error" not in line and "[warning" not in line, line


def test_demo_duration_exits_0() -> None:
    result = subprocess.run(
        [*goe_bridge(), "demo", "--duration", "3", "--api", "v1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "go-e simulator (API v1)" in result.stdout
    assert "goe/demo/api_version = v1" in result.stdout


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(0.2)
        yield path, sock
        sock.close()


async def test_sd_notify_ready_watchdog_stopping(
    mosquitto: Any,
    base_topic: str,
    sim: HttpFrontend,
    tmp_path: Path,
    notify_socket: tuple[str, socket.socket],
) -> None:
    path, sock = notify_socket
    cfg = write_config(tmp_path / "config.yaml", mosquitto, base_topic, sim.port)
    proc = spawn("run", "-c", str(cfg), env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    received: list[tuple[float, str]] = []
    loop = asyncio.get_running_loop()

    def recv() -> None:
        try:
            received.append((time.monotonic(), sock.recv(256).decode()))
        except TimeoutError:
            pass

    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum(m == "WATCHDOG=1" for _, m in received) < 4:
            await loop.run_in_executor(None, recv)
        messages = [m for _, m in received]
        assert "READY=1" in messages
        pings = [t for t, m in received if m == "WATCHDOG=1"]
        assert len(pings) >= 4
        # at half of WATCHDOG_USEC (1 s): the median gap is well inside the watchdog period
        gaps = sorted(b - a for a, b in itertools.pairwise(pings[1:]))
        assert 0.1 < gaps[len(gaps) // 2] < 0.9, gaps
        proc.send_signal(signal.SIGTERM)
        while proc.poll() is None:
            await loop.run_in_executor(None, recv)
        while True:
            before = len(received)
            await loop.run_in_executor(None, recv)
            if len(received) == before:
                break
        assert "STOPPING=1" in [m for _, m in received]
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_ready_is_signalled_while_the_broker_is_down(
    base_topic: str, sim: HttpFrontend, tmp_path: Path, notify_socket: tuple[str, socket.socket]
) -> None:
    """Type=notify: a broker that is down at boot must not time the start out."""
    path, sock = notify_socket

    class Absent:
        host, port = "127.0.0.1", free_port()

    cfg = write_config(tmp_path / "config.yaml", Absent, base_topic, sim.port)
    proc = spawn("run", "-c", str(cfg), env={"NOTIFY_SOCKET": path})
    loop = asyncio.get_running_loop()
    try:
        deadline, messages = time.monotonic() + 15, []
        while time.monotonic() < deadline and "READY=1" not in messages:
            with contextlib.suppress(TimeoutError):
                messages.append(await loop.run_in_executor(None, lambda: sock.recv(256).decode()))
        assert "READY=1" in messages
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(15)


async def test_sighup_reloads_a_valid_config_and_keeps_running_on_an_invalid_one(
    mosquitto: Any, base_topic: str, sim: HttpFrontend, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "config.yaml", mosquitto, base_topic, sim.port)
    proc = spawn("run", "-c", str(cfg))
    try:
        async with Probe(mosquitto.host, mosquitto.port, f"{base_topic}/#") as probe:
            await probe.wait_for(f"{base_topic}/garage/availability", "online", timeout=20)
            # a valid new config (a lower current limit): reloaded in-process
            data = yaml.safe_load(cfg.read_text())
            data["chargers"][0]["limits"]["max_current_a"] = 10
            cfg.write_text(yaml.safe_dump(data))
            since = probe.mark()
            proc.send_signal(signal.SIGHUP)
            # the bridge restarted on the new config: `online` again, never `offline`
            await probe.wait_for(f"{base_topic}/bridge/state", "online", since=since)
            await probe.publish(f"{base_topic}/garage/current_limit_a/set", "12")
            result = await probe.wait_for(f"{base_topic}/garage/result", since=since, timeout=20)
            assert "outside 6..10 A" in json.loads(result.payload)["error"]
            assert proc.poll() is None
            # an invalid config: logged, the running one stays
            cfg.write_text("chargers: [{connection: {type: http}}]\n")
            proc.send_signal(signal.SIGHUP)
            await asyncio.sleep(1.0)
            since = probe.mark()
            await probe.publish(f"{base_topic}/garage/current_limit_a/set", "8")
            result = await probe.wait_for(f"{base_topic}/garage/result", since=since)
            assert json.loads(result.payload)["ok"] is True
            assert proc.poll() is None
            # the state topic never said offline for the reload
            assert "offline" not in probe.values(f"{base_topic}/bridge/state")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert '"event": "bridge.reload"' in err
    assert '"event": "config.reload_failed"' in err


def test_run_refuses_a_bad_config_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text(
        "brokers: {home: {}}\nchargers: [{id: x, connection: {type: http, host: h, port: -1}}]\n"
    )
    result = subprocess.run(
        [*goe_bridge(), "run", "-c", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "chargers[0].connection.port: -1 is below the minimum 1" in result.stderr
