"""The charger ends on the newest command, with the real parts: a mosquitto with persistence
(the Debian package's and the Home Assistant add-on's default) restarted and killed under
a command stream, the bridge as a subprocess (`goe-bridge run`) where the process is the
subject and in-process where a timing constant is scaled down, the simulator over HTTP, an
openWB primary that goes silent after forged heartbeats, a command flood, and two bridges
started on one config."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml

from bridge.goe.model import ApiVersion
from bridge.mqtt import link
from bridge.openwb import secondary
from bridge.simulator.charger import Car, SimCharger
from bridge.simulator.http import HttpFrontend
from tests.bridge_helpers import http_charger, make_config, running_bridge
from tests.mqtt_helpers import Mosquitto, Probe, run_mosquitto, until
from tests.system.test_cli import goe_bridge
from tests.system.test_run import wait_exit


@pytest.fixture
async def sim() -> AsyncIterator[tuple[SimCharger, HttpFrontend]]:
    charger = SimCharger(api=ApiVersion.V2, alw_delay_s=0.05)
    charger.plug(Car(max_current_a=32, energy_needed_wh=1e9))
    async with HttpFrontend(charger) as fe:
        yield charger, fe


def config_file(path: Path, broker: Mosquitto, base: str, port: int, **control: Any) -> Path:
    path.write_text(yaml.safe_dump({
        "log": {"level": "info", "format": "json"},
        "brokers": {"home": {"host": broker.host, "port": broker.port, "keepalive_s": 5}},
        "publish": {"base_topic": base, "home_assistant": {"enabled": False}},
        "chargers": [{
            "id": "c",
            "connection": {"type": "http", "host": "127.0.0.1", "port": port,
                           "poll_interval_s": 0.5, "timeout_s": 1},
            "limits": {"max_current_a": 16},
            "control": {"source": "mqtt", "min_command_interval_s": 0, **control},
        }],
    }))  # fmt: skip
    path.chmod(0o600)
    return path


@contextlib.contextmanager
def bridge(config: Path) -> Iterator[subprocess.Popen[str]]:
    # The log goes to a file: a pipe nobody reads fills up and stops the bridge mid-flood.
    log = config.with_suffix(f".{uuid.uuid4().hex[:6]}.log")
    with log.open("w") as sink:
        proc = subprocess.Popen([*goe_bridge(), "run", "-c", str(config)],
                                stdout=sink, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    proc.log = log  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def log_events(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out = proc.log.read_text()  # type: ignore[attr-defined]
    events = []
    for line in out.splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return events


class Controller:
    """A controller as Node-RED or Home Assistant is one: its own connection, QoS 1, and it
    reconnects by itself when the broker restarts. `acked` is the newest value the broker
    accepted (PUBACK received)."""

    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self.broker, self.topic = broker, topic
        self.acked: int | None = None
        self.sent = 0
        self.running = True
        self._client: aiomqtt.Client | None = None

    async def publish(self, value: int) -> bool:
        client = self._client
        if client is None:
            return False
        try:
            await client.publish(self.topic, str(value), qos=1, timeout=2)
        except aiomqtt.MqttError:
            return False
        self.acked = value
        self.sent += 1
        return True

    async def connection(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(self.broker.host, self.broker.port,
                                          identifier=f"ctl-{uuid.uuid4().hex[:6]}") as client:  # fmt: skip
                    self._client = client
                    async for _ in client.messages:
                        pass
            except aiomqtt.MqttError:
                self._client = None
                await asyncio.sleep(0.1)


@pytest.mark.slow(30)
async def test_the_charger_ends_on_the_newest_command_through_22_broker_restarts(
    monkeypatch: pytest.MonkeyPatch, base_topic: str, sim: tuple[SimCharger, HttpFrontend]
) -> None:
    """The bridge in-process with its reconnect backoff at half its pace, and the command
    stream and the broker's downtime at half theirs: the same interleavings (commands in
    flight at the stop, queued in the bridge's session while it reconnects, refused while the
    broker is down) in half the time. The process is not the subject here."""
    monkeypatch.setattr(link, "RETRY_BASE_S", link.RETRY_BASE_S / 2)
    monkeypatch.setattr(link, "RETRY_CAP_CONNECTED_S", link.RETRY_CAP_CONNECTED_S / 2)
    charger, fe = sim
    rng = random.Random(20261123)
    with run_mosquitto(persistence=True) as broker:
        cfg = make_config(broker, base_topic, [http_charger("c", fe.port, poll=0.5)],
                          home_assistant={"enabled": False})  # fmt: skip
        async with running_bridge(cfg):
            ctl = Controller(broker, f"{base_topic}/c/current_limit_a/set")
            task = asyncio.create_task(ctl.connection())
            try:
                await until(lambda: ctl._client is not None, what="controller connected")
                await until(lambda: charger.writes == [], what="up")
                value = 6
                for restart in range(22):
                    # a command stream every 0.25 s around a restart at a random moment
                    stream_until = time.monotonic() + rng.uniform(0.5, 1.25)
                    broker.stop()
                    await asyncio.sleep(rng.uniform(0.05, 0.5))
                    broker.start()
                    while time.monotonic() < stream_until or ctl.acked != value:
                        value = 6 + (value - 5) % 11
                        if not await ctl.publish(value):
                            value = ctl.acked or 6  # not accepted: not a command
                        await asyncio.sleep(0.25)
                    await until(lambda: charger.amp == ctl.acked, timeout=30,
                                what=f"newest command after restart {restart + 1}")  # fmt: skip
                assert ctl.sent >= 22
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def test_a_stale_retained_command_in_a_crashed_brokers_database_is_not_reapplied(
    tmp_path: Path, base_topic: str, sim: tuple[SimCharger, HttpFrontend]
) -> None:
    charger, fe = sim
    root = f"{base_topic}/c"
    with run_mosquitto(persistence=True) as broker:
        cfg = config_file(tmp_path / "c.yaml", broker, base_topic, fe.port)
        with bridge(cfg) as proc:
            async with Probe(broker.host, broker.port, f"{root}/#") as probe:
                await probe.wait_for(f"{root}/availability", "online")
                # The database is saved while the retained 7 is on its way to the bridge:
                # it holds the retained 7 and the bridge's session with 7 in flight.
                proc.send_signal(signal.SIGSTOP)
                await probe.publish(f"{root}/current_limit_a/set", "7", retain=True)
                await asyncio.sleep(0.3)
                broker.save()
                await asyncio.sleep(0.5)
                proc.send_signal(signal.SIGCONT)
                await until(lambda: charger.amp == 7, what="7 A applied")
                await probe.publish(f"{root}/current_limit_a/set", "14")
                await until(lambda: charger.amp == 14, what="14 A applied")
            broker.kill()  # a crash: the clear of the 7 was never saved
            broker.start()
            async with Probe(broker.host, broker.port, f"{root}/#") as probe:
                retained = await probe.wait_for(f"{root}/current_limit_a/set", timeout=5)
                assert retained.payload == "7" and retained.retain  # the stale one is there
                await until(lambda: proc.poll() is None and charger.writes[-1].value == 14,
                            what="bridge back")  # fmt: skip
                await asyncio.sleep(5)
                assert charger.amp == 14, [(w.key, w.value) for w in charger.writes]
        events = log_events(proc)
    connects = [e for e in events if e.get("event") == "mqtt.connected"]
    assert len(connects) >= 2 and connects[-1]["session_present"] is True


async def test_failsafe_stops_80s_after_the_last_real_heartbeat_whatever_the_timestamps(
    monkeypatch: pytest.MonkeyPatch, base_topic: str, sim: tuple[SimCharger, HttpFrontend]
) -> None:
    """openWB's 80 s, scaled down with the tolerance for a heartbeat ahead of our clock (the
    rule is the subject here; tests/unit/test_control_rules.py holds the 80 s on fake clocks).
    The bridge runs in-process so the constants can be set; the process is not the subject."""
    timeout_s = 4.0
    monkeypatch.setattr(secondary, "HEARTBEAT_TIMEOUT_S", timeout_s)
    # ahead by an hour and still within the tolerance: by its timestamp alone this heartbeat
    # would keep the car charging for an hour, so a stop at all is the bridge's own clock
    monkeypatch.setattr(secondary, "HEARTBEAT_FUTURE_TOLERANCE_S", 2 * 3600.0)
    charger, fe = sim
    gd = "openWB/set/internal_chargepoint/global_data"
    with run_mosquitto() as broker:
        cfg = make_config(broker, base_topic, [http_charger("c", fe.port, poll=0.5,
                                                            source="openwb-secondary")])  # fmt: skip
        async with running_bridge(cfg), Probe(broker.host, broker.port, "openWB/#") as primary:
            beating = True

            async def heartbeats() -> None:
                # every second until the car charges (a stopped loop, not a cancelled
                # publish: aiomqtt's wait_for can swallow a cancellation on 3.11, gh-86296)
                while beating:
                    await primary.publish(gd, json.dumps({"heartbeat": time.time(),
                                                          "parent_ip": "127.0.0.1"}))  # fmt: skip
                    await primary.publish(
                        "openWB/set/internal_chargepoint/0/data/set_current", "16"
                    )
                    await asyncio.sleep(1)

            beat = asyncio.create_task(heartbeats())
            try:
                await until(lambda: charger.frc == 2 and charger.is_charging(), timeout=30,
                            what="charging at 16 A")  # fmt: skip
            finally:
                beating = False
                await beat
            # a forged heartbeat far in the future (rejected), then one an hour ahead (within
            # the tolerance), then silence
            await primary.publish(gd, json.dumps({"heartbeat": 1e18, "parent_ip": "x"}))
            silent_since = time.monotonic()  # before the last real heartbeat is sent
            await primary.publish(gd, json.dumps({"heartbeat": time.time() + 3600,
                                                  "parent_ip": "127.0.0.1"}))  # fmt: skip
            await until(lambda: charger.frc == 1, timeout=60, what="failsafe stop")
            # never before the timeout counted from the last real heartbeat
            assert time.monotonic() - silent_since >= timeout_s
        # (running_bridge: the bridge ran on and stopped with 0)


async def test_a_flood_does_not_delay_the_next_real_command(
    tmp_path: Path, base_topic: str, sim: tuple[SimCharger, HttpFrontend]
) -> None:
    charger, fe = sim
    root = f"{base_topic}/c"
    with run_mosquitto("allow_anonymous true\nmax_queued_messages 100000\n") as broker:
        cfg = config_file(tmp_path / "c.yaml", broker, base_topic, fe.port)
        with bridge(cfg) as proc:
            async with Probe(broker.host, broker.port, f"{root}/availability") as probe:
                await probe.wait_for(f"{root}/availability", "online")
            async with aiomqtt.Client(broker.host, broker.port) as flood:
                deadline = time.monotonic() + 5
                sent = 0
                while time.monotonic() < deadline:
                    for i in range(500):
                        await flood.publish(f"{root}/current_limit_a/set", str(6 + i % 10))
                        await flood.publish(f"{root}/allow_charging/set", b"maybe")
                    sent += 1000
                    await asyncio.sleep(0)
                await flood.publish(f"{root}/current_limit_a/set", "13", qos=1)
            await until(lambda: charger.amp == 13, timeout=60, what="the real command")
            assert sent >= 5000 and proc.poll() is None
        events = log_events(proc)
    rejected = [e for e in events if e.get("event") == "command.rejected"]
    assert len(rejected) < 100  # summarised, not one line per command


async def test_two_bridges_started_on_one_config(
    tmp_path: Path, base_topic: str, sim: tuple[SimCharger, HttpFrontend]
) -> None:
    charger, fe = sim
    with run_mosquitto() as broker:
        cfg = config_file(tmp_path / "c.yaml", broker, base_topic, fe.port)
        with bridge(cfg) as first:
            async with Probe(broker.host, broker.port, f"{base_topic}/#") as probe:
                await probe.wait_for(f"{base_topic}/c/availability", "online")
                with bridge(cfg) as second:
                    await until(lambda: any(e.get("event") == "bridge.standby"
                                            for e in log_events(first)),
                                timeout=30, what="the first stands by")  # fmt: skip
                    await probe.publish(f"{base_topic}/c/current_limit_a/set", "9")
                    await until(lambda: charger.amp == 9, what="the second bridge writes")
                    await asyncio.sleep(1.5)
                    assert probe.last(f"{base_topic}/bridge/state").payload == "online"
                    assert second.poll() is None and first.poll() is None
                    first.terminate()
                    assert await wait_exit(first, 20) == 0  # standing by is no failure
                    await asyncio.sleep(0.5)
                    assert probe.last(f"{base_topic}/bridge/state").payload == "online"
        events = log_events(first)
    standby = [e for e in events if e.get("event") == "bridge.standby"]
    assert len(standby) == 1
    # mosquitto 2.0 may close the old connection without flushing its DISCONNECT 0x8E
    # (session taken over); the old bridge then learns it from the new one's answer
    assert "taken over" in standby[0]["reason"] or "newer goe-bridge" in standby[0]["reason"]


async def test_a_power_cut_of_broker_and_bridge_together_ends_on_the_newest_command(
    tmp_path: Path, base_topic: str, sim: tuple[SimCharger, HttpFrontend]
) -> None:
    """Home Assistant OS with the mosquitto add-on, or a Pi: the broker and the bridge lose
    power together after a retained 7 was applied and cleared and a live 14 applied. The
    broker comes back from its last save (the 7 retained and on its way to the bridge, the
    14 unknown to it), the charger rebooted (its own current, not forced). The bridge's
    state file is newer than the broker's record: the 7 is not applied again and the 14 is
    restored."""
    charger, fe = sim
    root = f"{base_topic}/c"
    with run_mosquitto(persistence=True) as broker:
        cfg = config_file(tmp_path / "c.yaml", broker, base_topic, fe.port)
        data = yaml.safe_load(cfg.read_text())
        data["state_file"] = str(tmp_path / "state" / "state.json")
        cfg.write_text(yaml.safe_dump(data))
        with bridge(cfg) as proc:
            async with Probe(broker.host, broker.port, f"{root}/#") as probe:
                await probe.wait_for(f"{root}/availability", "online")
                await probe.publish(f"{root}/allow_charging/set", "true")
                await until(lambda: charger.frc == 2, what="allowed")
                proc.send_signal(signal.SIGSTOP)
                await probe.publish(f"{root}/current_limit_a/set", "7", retain=True)
                await asyncio.sleep(0.3)
                broker.save()  # the broker's last save: the 7 on its way
                await asyncio.sleep(0.5)
                proc.send_signal(signal.SIGCONT)
                await until(lambda: charger.amp == 7, what="7 A applied")
                await probe.publish(f"{root}/current_limit_a/set", "14")
                await until(lambda: charger.amp == 14, what="14 A applied")
                await asyncio.sleep(1.0)  # the state file is written within 0.2 s
            proc.kill()  # the power cut: both at once
            broker.kill()
        charger.amp, charger.frc = 16, 0  # the charger rebooted too
        broker.start()
        with bridge(cfg) as proc:
            await until(lambda: proc.poll() is None and charger.amp == 14 and charger.frc == 2,
                        timeout=30, what="the newest command restored")  # fmt: skip
            await asyncio.sleep(3)
            assert charger.amp == 14, [(w.key, w.value) for w in charger.writes]
            events = log_events(proc)
    assert any(e.get("event") == "memory.broker_older" for e in events)
