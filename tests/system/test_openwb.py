"""openWB drives a go-e through the bridge (a subprocess), in the three ways openWB offers:
as a 2.x secondary, as a 2.x MQTT chargepoint, and for openWB 1.9."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import structlog.testing
import yaml

from bridge.goe.model import ApiVersion
from bridge.simulator.charger import Car, SimCharger
from bridge.simulator.http import HttpFrontend
from tests.bridge_helpers import http_charger, make_config, running_bridge
from tests.mqtt_helpers import Probe, run_mosquitto, until
from tests.openwb_standins import (
    REQUIRED_MQTT,
    REQUIRED_SECONDARY,
    Primary,
    openwb_check,
    read_retained,
)
from tests.system.test_cli import goe_bridge


def bridge_config(
    path: Path, openwb: Any, home: Any, sim_port: int, base: str, control: dict[str, Any]
) -> Path:
    brokers = {"openwb": {"host": openwb.host, "port": openwb.port}}
    if home is not openwb:
        brokers["home"] = {"host": home.host, "port": home.port}
    path.write_text(yaml.safe_dump({
        "log": {"level": "debug", "format": "json"},
        "brokers": brokers,
        "publish": {"broker": "home" if home is not openwb else "openwb", "base_topic": base},
        "chargers": [{
            "id": "wb",
            "connection": {"type": "http", "host": "127.0.0.1", "port": sim_port, "poll_interval_s": 0.3, "timeout_s": 1},
            "limits": {"max_current_a": 16},
            "control": {"broker": "openwb", "min_command_interval_s": 0, "phase_switch_min_interval_s": 0, **control},
        }],
    }))  # fmt: skip
    path.chmod(0o600)
    return path


@contextlib.contextmanager
def bridge_process(config: Path) -> Iterator[subprocess.Popen[str]]:
    log = open(config.with_suffix(".log"), "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([*goe_bridge(), "run", "-c", str(config)], stdout=log, stderr=log, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def logged(config: Path) -> list[dict[str, Any]]:
    out = []
    for line in config.with_suffix(".log").read_text().splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


@pytest.fixture
def mosquitto() -> Iterator[Any]:
    """A broker per test: openWB's topic names are fixed, so retained state (a stale
    heartbeat, say) must not leak from one test into the next."""
    with run_mosquitto() as broker:
        yield broker


@pytest.fixture
async def sim() -> AsyncIterator[SimCharger]:
    # set to three phases (psm 2), as these scenarios assume; the go-e default is auto (0)
    charger = SimCharger(api=ApiVersion.V2, alw_delay_s=0.05, phase_switch_pause_s=0.5, psm=2)
    charger.plug(Car(max_current_a=32))
    async with HttpFrontend(charger) as fe:
        charger.port = fe.port  # type: ignore[attr-defined]
        yield charger


async def retained(broker: Any, topic: str) -> str | None:
    async with Probe(broker.host, broker.port, topic) as probe:
        await asyncio.sleep(0.4)
        return probe.messages[-1].payload if probe.messages else None


# ----------------------------------------------------------------------------- secondary


@pytest.mark.slow(11)
async def test_secondary_scenarios(
    mosquitto: Any, sim: SimCharger, base_topic: str, tmp_path: Path
) -> None:
    cfg = bridge_config(tmp_path / "c.yaml", mosquitto, mosquitto, sim.port, base_topic,  # type: ignore[attr-defined]
                        {"source": "openwb-secondary", "duo_num": 0})  # fmt: skip
    primary = Primary(mosquitto.host, mosquitto.port)
    sim.amp = sim.amp_eeprom = 6
    with bridge_process(cfg) as proc:
        await until(lambda: any(e.get("event") == "bridge.ready" for e in logged(cfg)), timeout=20)
        # before the first heartbeat: stopped
        await until(lambda: sim.frc == 1, what="stopped before the first heartbeat")
        # start charging at 16 A
        await primary.cycle(16.0)
        await until(lambda: sim.frc == 2 and sim.amp == 16, what="16 A")
        await until(lambda: sim.is_charging())
        values = await primary.read()
        assert openwb_check(values, REQUIRED_SECONDARY) == [], values
        assert values["charge_state"] is True and values["plug_state"] is True
        assert values["phases_in_use"] == 3 and values["currents"] == [16.0, 16.0, 16.0]
        assert values["serial_number"] == "000001"
        # accepted values are republished without set/, set topics are cleared
        assert await retained(mosquitto, "openWB/internal_chargepoint/0/data/set_current") == "16.0"
        assert (
            await retained(mosquitto, "openWB/set/internal_chargepoint/0/data/set_current") is None
        )
        assert await retained(mosquitto, "openWB/set/isss/Current") is None
        # change to 10 A
        await primary.cycle(10.0)
        await until(lambda: sim.amp == 10, what="10 A")
        # stop with 0
        await primary.cycle(0)
        await until(lambda: sim.frc == 1 and not sim.is_charging(), what="stop")
        assert [w.value for w in sim.writes if w.key == "amp"] == [16, 10]  # 0 is never a current
        values = await primary.read()
        assert values["charge_state"] is False and values["plug_state"] is True
        # phase switch 3 -> 1 while charging
        await primary.cycle(16.0)
        await until(lambda: sim.is_charging())
        await primary.switch_phases(1)
        await until(lambda: sim.psm == 1, what="psm=1")
        await until(
            lambda: sim.is_charging() and sim.active_phases() == 1, what="charging on one phase"
        )
        assert (
            await retained(mosquitto, "openWB/internal_chargepoint/0/data/trigger_phase_switch")
            == "false"
        )
        values = await primary.read()
        assert openwb_check(values, REQUIRED_SECONDARY) == []
        # the primary disappears: openWB's rule heartbeat + 80 s < now, tested with a
        # heartbeat that is already 78 s old instead of waiting 80 s
        await primary.cycle(16.0, heartbeat=time.time() - 78)
        started = time.monotonic()
        await until(lambda: sim.frc == 1, timeout=15, what="stopped by the heartbeat rule")
        assert time.monotonic() - started >= 1.0  # not before the 80 s were up
        async with Probe(
            mosquitto.host, mosquitto.port, f"{base_topic}/wb/control/failsafe_active"
        ) as probe:
            await probe.wait_for(f"{base_topic}/wb/control/failsafe_active", "true")
        assert proc.poll() is None


async def test_secondary_restart_resumes_without_replaying(
    mosquitto: Any, sim: SimCharger, base_topic: str, tmp_path: Path
) -> None:
    cfg = bridge_config(tmp_path / "c.yaml", mosquitto, mosquitto, sim.port, base_topic,  # type: ignore[attr-defined]
                        {"source": "openwb-secondary", "duo_num": 1})  # fmt: skip
    primary = Primary(mosquitto.host, mosquitto.port, duo=1)
    with bridge_process(cfg):
        await until(lambda: any(e.get("event") == "bridge.ready" for e in logged(cfg)), timeout=20)
        await primary.cycle(12.0)
        await until(lambda: sim.amp == 12 and sim.frc == 2)
        await primary.switch_phases(3)  # already 3: nothing to do, but a trigger on record
    writes_before = len(sim.writes)
    # meanwhile someone changes the charger by hand; the bridge must not replay old commands,
    # only make its current Target (12 A, from its retained state) true again
    sim.set_v2({"amp": "8"}, via="user")
    with bridge_process(cfg):
        await until(lambda: any(e.get("event") == "bridge.ready" for e in logged(cfg)), timeout=20)
        await until(lambda: sim.amp == 12, what="Target resumed from retained state")
        await asyncio.sleep(1.0)
    bridge_writes = [(w.key, w.value) for w in sim.writes[writes_before:] if w.via != "user"]
    assert bridge_writes == [("amp", 12)]  # no frc, no psm replayed
    assert sim.psm == 2


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("openWB/set/internal_chargepoint/0/data/set_current", "abc"),
        ("openWB/set/internal_chargepoint/0/data/set_current", "3"),
        ("openWB/set/internal_chargepoint/0/data/set_current", "40"),
        ("openWB/set/internal_chargepoint/0/data/set_current", '"16"'),
        ("openWB/set/internal_chargepoint/0/data/set_current", "NaN"),
        ("openWB/set/internal_chargepoint/0/data/phases_to_use", "2.0"),
        ("openWB/set/internal_chargepoint/0/data/trigger_phase_switch", "yes"),
        ("openWB/set/internal_chargepoint/global_data", '{"heartbeat": "soon"}'),
        ("openWB/set/internal_chargepoint/global_data", "[1,2]"),
    ],
)
async def test_secondary_malformed_payloads_change_nothing(
    mosquitto: Any, sim: SimCharger, base_topic: str, topic: str, payload: str
) -> None:
    """In-process (nine cases; the process is not the subject): the rejection is read from
    the controller's count and its log event, and "nothing written" from its Target, which a
    rejected payload leaves as it was."""
    charger = http_charger("wb", sim.port, poll=0.3, source="openwb-secondary", duo_num=0,  # type: ignore[attr-defined]
                           phase_switch_min_interval_s=0)  # fmt: skip
    primary = Primary(mosquitto.host, mosquitto.port)
    async with running_bridge(make_config(mosquitto, base_topic, [charger])) as bridge:
        controller = bridge.chargers["wb"].controller
        await primary.cycle(10.0)
        await until(lambda: sim.amp == 10 and sim.frc == 2)
        count, target = len(sim.writes), controller.target
        with structlog.testing.capture_logs() as events:
            async with aiomqtt.Client(mosquitto.host, mosquitto.port) as c:
                await c.publish(topic, payload, retain=True)
            await until(lambda: controller.rejected == 1, what="rejection counted")
        assert controller.target == target and len(sim.writes) == count
        assert await retained(mosquitto, topic) is None  # cleared, as openWB does
    rejected = [e for e in events if e.get("event") == "openwb.rejected"]
    assert rejected[0]["topic"] == topic and rejected[0]["reason"]


# ----------------------------------------------------------------------------- MQTT chargepoint


async def test_mqtt_chargepoint(
    mosquitto: Any, sim: SimCharger, base_topic: str, tmp_path: Path
) -> None:
    cp = 7
    cfg = bridge_config(tmp_path / "c.yaml", mosquitto, mosquitto, sim.port, base_topic,  # type: ignore[attr-defined]
                        {"source": "openwb-mqtt", "chargepoint_id": cp, "failsafe": {"timeout_s": 3}})  # fmt: skip
    with bridge_process(cfg):
        await until(lambda: any(e.get("event") == "bridge.ready" for e in logged(cfg)), timeout=20)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as openwb:

            async def cycle(current: float) -> None:
                await openwb.publish(
                    f"openWB/mqtt/chargepoint/{cp}/set/current", json.dumps(current), retain=True
                )

            await cycle(12.73)
            await until(lambda: sim.amp == 12 and sim.frc == 2, what="12.73 A floored to 12")
            await until(lambda: sim.is_charging())
            # the required set arrives every cycle: a one-second read finds all of it
            values = await read_retained(
                mosquitto.host, mosquitto.port, f"openWB/set/mqtt/chargepoint/{cp}/get/#"
            )
            assert openwb_check(values, REQUIRED_MQTT) == [], values
            assert values["imported"] >= 0 and values["exported"] == 0
            assert values["charge_state"] is True and values["phases_in_use"] == 3
            await cycle(0)
            await until(lambda: sim.frc == 1, what="0 = stop")
            await cycle(16)
            await until(lambda: sim.frc == 2 and sim.amp == 16)
            await openwb.publish(
                f"openWB/mqtt/chargepoint/{cp}/set/phases_to_use", "1", retain=True
            )
            # the switch is stop, psm, resume: wait until it is complete
            await until(
                lambda: sim.psm == 1 and sim.frc == 2 and sim.is_charging(), what="switched"
            )
            await asyncio.sleep(0.5)
            # malformed: logged, nothing written
            count = len(sim.writes)
            await openwb.publish(
                f"openWB/mqtt/chargepoint/{cp}/set/current", "sixteen", retain=True
            )
            await until(lambda: any(e.get("event") == "openwb.rejected" for e in logged(cfg)))
            await asyncio.sleep(0.5)
            assert len(sim.writes) == count
            # openWB stops sending set/current: failsafe after failsafe.timeout_s
            await until(lambda: sim.frc == 1, timeout=15, what="failsafe")


async def test_mqtt_chargepoint_legacy_topics(
    mosquitto: Any, sim: SimCharger, base_topic: str, tmp_path: Path
) -> None:
    cfg = bridge_config(tmp_path / "c.yaml", mosquitto, mosquitto, sim.port, base_topic,  # type: ignore[attr-defined]
                        {"source": "openwb-mqtt", "chargepoint_id": 4, "legacy_topics": True})  # fmt: skip
    with bridge_process(cfg):
        await until(lambda: any(e.get("event") == "bridge.ready" for e in logged(cfg)), timeout=20)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as openwb:
            await openwb.publish("openWB/chargepoint/4/set/current", "9.5", retain=True)
        await until(lambda: sim.amp == 9 and sim.frc == 2)
        values = await read_retained(
            mosquitto.host, mosquitto.port, "openWB/set/chargepoint/4/get/#"
        )
        assert openwb_check(values, REQUIRED_MQTT) == []


# ----------------------------------------------------------------------------- openWB 1.9


@pytest.mark.slow(10)
async def test_openwb_19(mosquitto: Any, sim: SimCharger, base_topic: str, tmp_path: Path) -> None:
    cfg = bridge_config(tmp_path / "c.yaml", mosquitto, mosquitto, sim.port, base_topic,  # type: ignore[attr-defined]
                        {"source": "openwb-1.9", "lp": 2, "failsafe": {"timeout_s": 3}})  # fmt: skip
    with bridge_process(cfg):
        await until(lambda: any(e.get("event") == "bridge.ready" for e in logged(cfg)), timeout=20)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as openwb:
            await openwb.subscribe("openWB/set/lp/2/#")
            await openwb.publish("openWB/lp/2/AConfigured", "16", retain=True)
            await until(lambda: sim.amp == 16 and sim.frc == 2)
            await until(lambda: sim.is_charging())
            # behave like 1.9's mqttsub: read each value and clear the set topic
            seen: dict[str, str] = {}

            async def mqttsub(seconds: float) -> None:
                # Only the wait for a message runs under the timeout, never the publish:
                # aiomqtt's publish awaits through asyncio.wait_for, which on Python 3.11 can
                # swallow the timeout's cancellation (CPython gh-86296), and the loop then
                # read on until the test's own timeout.
                end = asyncio.get_running_loop().time() + seconds
                messages = openwb.messages
                while True:
                    try:
                        async with asyncio.timeout_at(end):
                            m = await anext(messages)
                    except TimeoutError:
                        return
                    text = m.payload.decode() if isinstance(m.payload, bytes) else str(m.payload)
                    if text:
                        seen[m.topic.value.rsplit("/", 1)[1]] = text
                        await openwb.publish(m.topic.value, "", retain=True)

            await mqttsub(6)  # longer than the failsafe timeout: the clears keep it alive
            assert seen["plugStat"] == "1" and seen["chargeStat"] == "1"
            assert float(seen["W"]) > 10000 and float(seen["kWhCounter"]) >= 0
            assert {"VPhase1", "APhase1", "APhase3"} <= set(seen)
            assert sim.frc == 2
            await openwb.publish("openWB/lp/2/AConfigured", "0", retain=True)
            await until(lambda: sim.frc == 1, what="0 = stop")
            await openwb.publish("openWB/lp/2/AConfigured", "10", retain=True)
            await until(lambda: sim.frc == 2 and sim.amp == 10)
            await openwb.publish("openWB/lp/2/AConfigured", "ten", retain=True)
            # openWB goes away (nobody clears): failsafe
        await until(lambda: sim.frc == 1, timeout=15, what="failsafe without openWB")  # type: ignore[unreachable]


async def test_two_brokers_openwb_and_home(
    sim: SimCharger, base_topic: str, tmp_path: Path
) -> None:
    with run_mosquitto() as openwb_broker, run_mosquitto() as home:
        cfg = bridge_config(tmp_path / "c.yaml", openwb_broker, home, sim.port, base_topic,  # type: ignore[attr-defined]
                            {"source": "openwb-secondary"})  # fmt: skip
        primary = Primary(openwb_broker.host, openwb_broker.port)
        with bridge_process(cfg):
            async with Probe(home.host, home.port, f"{base_topic}/#") as probe:
                await probe.wait_for(f"{base_topic}/bridge/state", "online", timeout=20)
                await primary.cycle(11.0)
                await until(lambda: sim.amp == 11)
                await probe.wait_for(f"{base_topic}/wb/current_limit_a", "11")
                await probe.wait_for(f"{base_topic}/wb/control/source", "openwb-secondary")
            values = await primary.read()
            assert openwb_check(values, REQUIRED_SECONDARY) == []
            # nothing of openWB's leaks onto the home broker and vice versa
            assert await read_retained(home.host, home.port, "openWB/#", 0.5) == {}
            assert (
                await read_retained(openwb_broker.host, openwb_broker.port, f"{base_topic}/#", 0.5)
                == {}
            )
    notice = [e for e in logged(cfg) if e.get("event") == "openwb.usage_terms"]
    assert notice and "Nutzungsbedingungen" in notice[0]["notice"]
