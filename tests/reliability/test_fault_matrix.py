"""A car charges while everything that can go wrong does. Real mosquitto (restarted over and
over), the simulator over real HTTP, the bridge in-process so its queues can be inspected.

Invariants after every fault: the bridge runs; availability follows reality within three
polls; after recovery the charger shows the controller's last Target; nothing invalid was
ever written; the outbox stays bounded."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import aiomqtt
import pytest

from bridge.goe.model import ApiVersion
from bridge.mqtt import link as mqtt_link
from bridge.service import Bridge
from bridge.simulator.charger import Car, SimCharger
from bridge.simulator.http import HttpFrontend
from tests.bridge_helpers import http_charger, make_config, running_bridge
from tests.mqtt_helpers import Probe, run_mosquitto, until

VALID = {"amp": set(range(6, 17)), "frc": {0, 1, 2}, "psm": {1, 2}}


def nothing_invalid_written(sim: SimCharger) -> None:
    for w in sim.writes:
        assert w.value in VALID.get(w.key, set()), f"invalid write {w.key}={w.value!r}"
        assert w.accepted, f"rejected write {w.key}={w.value!r}"


def bounded(bridge: Bridge) -> None:
    # One pending entry per topic: what the owners replay after a reconnect, plus a few
    # one-off messages.
    for link in bridge.links.values():
        owned = link.outbox.replay_size()
        pending, transient = link.queue_sizes
        assert pending <= owned + 50, (link.queue_sizes, owned)
        assert transient <= 1000, link.queue_sizes


async def command(probe: Probe, root: str, payload: dict[str, Any]) -> None:
    await probe.publish(f"{root}/set", json.dumps(payload))


@pytest.mark.slow(40)
async def test_fault_matrix_while_charging(
    monkeypatch: pytest.MonkeyPatch, base_topic: str
) -> None:
    # the reconnect backoff at a quarter of its pace: 20 restarts are the subject, not the
    # wait before each reconnect
    monkeypatch.setattr(mqtt_link, "RETRY_BASE_S", mqtt_link.RETRY_BASE_S / 4)
    rng = random.Random(20261121)
    sim = SimCharger(api=ApiVersion.V2, alw_delay_s=0.05)
    sim.plug(Car(max_current_a=32, energy_needed_wh=1e9))
    with run_mosquitto() as broker:
        async with HttpFrontend(sim) as fe:
            charger = http_charger("c", fe.port, poll=0.2, min_command_interval_s=0.2)
            charger["connection"]["timeout_s"] = 0.5
            cfg = make_config(broker, base_topic, [charger])
            async with (
                running_bridge(cfg) as bridge,
                Probe(broker.host, broker.port, f"{base_topic}/#") as probe,
            ):
                rt = bridge.chargers["c"]
                root = f"{base_topic}/c"
                target = {"allow_charging": True, "current_limit_a": 12}
                await command(probe, root, target)
                await until(
                    lambda: sim.amp == 12 and sim.frc == 2 and sim.is_charging(),
                    what="charging at 12 A",
                )

                async def recovered(what: str) -> None:
                    await until(
                        lambda: rt.available is True, timeout=30, what=f"online after {what}"
                    )
                    amps = target["current_limit_a"]
                    await until(
                        lambda: sim.amp == amps and sim.frc == 2,
                        timeout=30,
                        what=f"Target after {what}",
                    )
                    nothing_invalid_written(sim)
                    bounded(bridge)

                # 1. the broker goes away and comes back, 20 times, at random moments
                for i in range(20):
                    await asyncio.sleep(rng.uniform(0.05, 0.8))
                    broker.stop()
                    await asyncio.sleep(rng.uniform(0.05, 0.8))
                    broker.start()
                    if i % 5 == 4:
                        # a new set point right after the broker is back
                        target["current_limit_a"] = 10 if target["current_limit_a"] == 12 else 12
                        await until(
                            lambda: bridge.links["test"].connected.is_set(),
                            timeout=30,
                            what="reconnect",
                        )
                        await command(probe, root, target)
                    await until(
                        lambda: bridge.links["test"].connected.is_set(),
                        timeout=30,
                        what="reconnect",
                    )
                    await recovered(f"broker restart {i + 1}")

                # 2. charger-side faults
                for kind, count, delay in [
                    ("timeout", 1_000_000, 5.0),  # unreachable for a while
                    ("slow", 1_000_000, 1.0),  # answers, but past the 0.5 s timeout
                    ("http500", 1_000_000, 0),
                    ("truncated", 1_000_000, 0),
                    ("wrong_type", 1_000_000, 0),
                ]:
                    rt.poller.failures = 0
                    sim.inject(kind, count, delay)
                    # availability reflects reality within three polls
                    await until(
                        lambda: rt.available is False, timeout=30, what=f"offline on {kind}"
                    )
                    assert rt.poller.failures <= 4, (kind, rt.poller.failures)
                    sim.clear_faults()
                    ok_before = rt.poller.ok_polls
                    await until(
                        lambda: rt.available is True, timeout=40, what=f"online after {kind}"
                    )
                    assert rt.poller.ok_polls - ok_before <= 2
                    await recovered(kind)

                # 3. all-zero nrg while charging (fw 60.4, go-eCharger-API-v2 #321): flagged,
                # the meter topics cleared rather than 0 W, never a crash
                sim.inject("zero_nrg", 5)
                await until(lambda: not sim.faults, timeout=20, what="zero nrg served")
                await recovered("zero nrg")
                assert any(
                    m.topic == f"{root}/meter_fault" and m.payload == "true" for m in probe.messages
                )
                assert not any(
                    m.topic == f"{root}/power_w" and m.payload == "0" for m in probe.messages
                )
                assert bridge.links["test"].connects >= 21


async def test_no_command_lost_in_a_broker_outage(base_topic: str) -> None:
    """A controller publishing retained set points while the bridge is cut off: exactly the
    last one reaches the charger."""
    sim = SimCharger(api=ApiVersion.V2, alw_delay_s=0.05)
    sim.plug()
    with run_mosquitto() as broker:
        async with HttpFrontend(sim) as fe:
            cfg = make_config(broker, base_topic, [http_charger("c", fe.port)])
            async with (
                running_bridge(cfg) as bridge,
                Probe(broker.host, broker.port, f"{base_topic}/c/availability") as probe,
            ):
                await probe.publish(
                    f"{base_topic}/c/set", '{"allow_charging": true, "current_limit_a": 6}'
                )
                await until(lambda: sim.amp == 6 and sim.frc == 2)
                before = len(sim.writes)
                broker.stop()
                broker.start()
                # the controller is back first and sends its burst before the bridge reconnects
                async with aiomqtt.Client(broker.host, broker.port) as controller:
                    for amps in range(7, 17):
                        await controller.publish(
                            f"{base_topic}/c/current_limit_a/set", str(amps), qos=1, retain=True
                        )
                await until(lambda: bridge.links["test"].connected.is_set(), timeout=30)
                await until(lambda: sim.amp == 16, timeout=20, what="the last set point")
                await asyncio.sleep(1.0)
                assert [(w.key, w.value) for w in sim.writes[before:]] == [("amp", 16)]


async def test_no_command_lost_in_a_charger_outage(mosquitto: Any, base_topic: str) -> None:
    sim = SimCharger(api=ApiVersion.V2, alw_delay_s=0.05)
    sim.plug()
    async with HttpFrontend(sim) as fe:
        charger = http_charger("c", fe.port, min_command_interval_s=0.5)
        charger["connection"]["timeout_s"] = 0.3
        cfg = make_config(mosquitto, base_topic, [charger])
        async with (
            running_bridge(cfg) as bridge,
            Probe(mosquitto.host, mosquitto.port, f"{base_topic}/c/#") as probe,
        ):
            await probe.publish(
                f"{base_topic}/c/set", '{"allow_charging": true, "current_limit_a": 6}'
            )
            await until(lambda: sim.amp == 6 and sim.frc == 2)
            sim.inject("timeout", 1_000_000, 3.0)
            await until(lambda: bridge.chargers["c"].available is False, timeout=20)
            before = len(sim.writes)
            for amps in range(7, 17):
                await probe.publish(f"{base_topic}/c/current_limit_a/set", str(amps))
            await asyncio.sleep(1.0)
            assert len(sim.writes) == before  # nothing is written to an unreachable charger
            sim.clear_faults()
            await until(lambda: sim.amp == 16, timeout=40, what="the last set point")
            await asyncio.sleep(1.0)
            assert [(w.key, w.value) for w in sim.writes[before:]] == [("amp", 16)]
