"""The charger's own MQTT (v1, v2) against the simulator's MQTT front-end on real mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bridge.config import BrokerConfig
from bridge.goe.model import ApiVersion, ChargerStatus, WriteRejected
from bridge.goe.transports.mqtt import GoeMqttTransport
from bridge.mqtt.link import BrokerLink
from bridge.simulator.charger import SimCharger
from bridge.simulator.mqtt import MqttFrontend
from tests.conftest import fixture_path, load_fixture
from tests.mqtt_helpers import until


@contextlib.asynccontextmanager
async def link_to(broker: Any) -> AsyncIterator[BrokerLink]:
    link = BrokerLink("t", BrokerConfig(host=broker.host, port=broker.port))
    task = asyncio.create_task(link.run())
    try:
        async with asyncio.timeout(10):
            await link.connected.wait()
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Collector:
    def __init__(self) -> None:
        self.statuses: list[ChargerStatus] = []
        self.offline: list[str] = []

    def status(self, s: ChargerStatus) -> None:
        self.statuses.append(s)

    def unavailable(self, reason: str) -> None:
        self.offline.append(reason)


@contextlib.asynccontextmanager
async def rig(
    broker: Any,
    *,
    api: ApiVersion,
    prefix: str,
    config_prefix: str,
    write_access: bool = True,
    timeout_s: float = 30,
    serial: str | None = None,
    topic: str | None = None,
) -> AsyncIterator[tuple[SimCharger, GoeMqttTransport, Collector]]:
    import uuid

    serial = serial or uuid.uuid4().hex[:6]
    sim = SimCharger(api=api, serial=serial, alw_delay_s=0.05)
    async with link_to(broker) as link:
        transport = GoeMqttTransport(
            link,
            serial,
            prefix=config_prefix,
            topic=topic,
            timeout_s=timeout_s,
            result_timeout_s=1.5,
            v1_verify_timeout_s=2,
        )
        collector = Collector()
        runner = asyncio.create_task(transport.run(collector.status, collector.unavailable))
        await asyncio.sleep(0.2)  # subscriptions in place
        async with MqttFrontend(
            sim,
            broker.host,
            broker.port,
            prefix=prefix,
            topic=topic,
            write_access=write_access,
            v1_interval_s=0.5,
        ):
            try:
                yield sim, transport, collector
            finally:
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner


@pytest.mark.parametrize(
    ("prefix", "config_prefix"),
    [
        ("go-eCharger", "go-eCharger"),
        ("/go-eCharger", "go-eCharger"),
        ("go-eCharger", "/go-eCharger"),
        ("/custom/prefix", "custom/prefix"),
    ],
)
async def test_v2_status_is_assembled_and_pushed(
    mosquitto: Any, prefix: str, config_prefix: str
) -> None:
    async with rig(mosquitto, api=ApiVersion.V2, prefix=prefix, config_prefix=config_prefix) as (
        sim,
        t,
        got,
    ):
        await until(lambda: got.statuses, what="first status")
        status = got.statuses[-1]
        assert (status.api_version, status.serial, status.car_state) == (
            ApiVersion.V2,
            sim.serial,
            "idle",
        )
        assert t.write_root == f"{prefix}/{sim.serial}"
        sim.plug()
        await until(lambda: got.statuses[-1].plugged, what="plug pushed")


async def test_v2_write_answered_on_result(mosquitto: Any) -> None:
    async with rig(
        mosquitto, api=ApiVersion.V2, prefix="/go-eCharger", config_prefix="go-eCharger"
    ) as (sim, t, got):
        await until(lambda: got.statuses)
        await t.write({"amp": 11, "frc": 2})
        assert (sim.amp, sim.frc) == (11, 2)
        assert {w.via for w in sim.writes} == {"mqtt-v2"}
        with pytest.raises(WriteRejected) as info:
            await t.write({"amp": 40})
        assert info.value.reason == "amp: failed: Value 40 exceeds range 6 to 32 (40)"


async def test_v2_write_access_off_gives_a_hint(mosquitto: Any) -> None:
    async with rig(
        mosquitto,
        api=ApiVersion.V2,
        prefix="go-eCharger",
        config_prefix="go-eCharger",
        write_access=False,
    ) as (sim, t, got):
        await until(lambda: got.statuses)
        with pytest.raises(WriteRejected) as info:
            await t.write({"amp": 10})
        assert "MQTT write access is probably off" in info.value.reason
        assert sim.amp == 16


async def test_v1_status_and_commands(mosquitto: Any) -> None:
    async with rig(
        mosquitto, api=ApiVersion.V1, prefix="go-eCharger", config_prefix="go-eCharger"
    ) as (sim, t, got):
        await until(lambda: got.statuses)
        assert got.statuses[-1].api_version is ApiVersion.V1
        await t.write({"amx": 9, "alw": 0})
        assert (sim.amp, sim.alw) == (9, False)
        with pytest.raises(WriteRejected, match="not applied: status shows amp='9' after amx=40"):
            await t.write({"amx": 40})


async def test_silence_makes_the_charger_unavailable_and_traffic_brings_it_back(
    mosquitto: Any,
) -> None:
    sim = SimCharger(api=ApiVersion.V2, serial="0000aa")
    async with link_to(mosquitto) as link:
        t = GoeMqttTransport(link, sim.serial, timeout_s=1.5)
        got = Collector()
        runner = asyncio.create_task(t.run(got.status, got.unavailable))
        await until(lambda: got.offline == ["waiting for the charger's first MQTT status"])
        async with MqttFrontend(sim, mosquitto.host, mosquitto.port):
            await until(lambda: got.statuses)
        # the charger stops publishing
        await until(lambda: len(got.offline) == 2, timeout=10, what="offline after silence")
        assert got.offline[1].startswith("no MQTT message from the charger for")
        count = len(got.statuses)
        async with MqttFrontend(sim, mosquitto.host, mosquitto.port):
            await until(lambda: len(got.statuses) > count, what="back online")
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def test_capture_replay_yields_the_fixture_status(mosquitto: Any) -> None:
    """Replaying the recorded go-e MQTT v2 capture into the broker gives exactly the
    status in v2-status-full-idle.json (minus secrets)."""
    from bridge.goe.model import SECRET_KEYS

    lines = fixture_path("v2-mqtt-capture-excerpt.txt").read_text().splitlines()
    async with link_to(mosquitto) as link:
        t = GoeMqttTransport(link, "072246", prefix="go-eCharger")
        got = Collector()
        runner = asyncio.create_task(t.run(got.status, got.unavailable))
        await asyncio.sleep(0.3)
        import aiomqtt

        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            for line in lines:
                topic, _, payload = line.partition(" ")
                await client.publish(topic, payload, qos=1)
        await until(
            lambda: (
                got.statuses
                and got.statuses[-1].raw.get("avgfhz") == 49.90246582
                and len(got.statuses[-1].raw) >= 118
            )
        )
        expected = {
            k: v
            for k, v in load_fixture("v2-status-full-idle.json").items()
            if k not in SECRET_KEYS
        }
        assert dict(got.statuses[-1].raw) == expected
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def test_a_custom_topic_prefix_replaces_prefix_and_serial(mosquitto: Any) -> None:
    """The go-e app's custom topic prefix (key mtp) replaces `<prefix>/<serial>/` entirely
    (syssi/homeassistant-goecharger-mqtt #80, PR #128): `connection.topic` follows it."""
    async with rig(mosquitto, api=ApiVersion.V2, prefix="go-eCharger", config_prefix="go-eCharger",
                   topic="home/garage/wallbox") as (sim, transport, collector):  # fmt: skip
        await until(lambda: collector.statuses, what="a status from the custom topic")
        assert transport.write_root == "home/garage/wallbox"
        await transport.write({"amp": 11})
        assert sim.amp == 11


async def test_retained_is_not_live_a_switched_off_charger_is_not_shown_charging(
    mosquitto: Any,
) -> None:
    """go-e's topics are retained: a charger switched off leaves "charging" at the broker.
    Those values fill in the status, but only a live message makes the charger online."""
    import aiomqtt

    from bridge.simulator.charger import Car

    sim = SimCharger(api=ApiVersion.V2, serial="0ff001", alw_delay_s=0)
    sim.plug(Car(energy_needed_wh=1e9))
    sim.set_v2({"frc": "2"})
    async with MqttFrontend(sim, mosquitto.host, mosquitto.port) as fe:
        await until(lambda: fe.sent > 20, what="the charger's retained topics")
    # switched off (no will): its retained "car 2" stays at the broker
    async with link_to(mosquitto) as link:
        t = GoeMqttTransport(link, "0ff001", timeout_s=30)
        got = Collector()
        runner = asyncio.create_task(t.run(got.status, got.unavailable))
        await asyncio.sleep(1.5)
        assert got.statuses == [] and t._keys.get("car") == 2  # known, not live
        async with MqttFrontend(sim, mosquitto.host, mosquitto.port):
            await until(lambda: got.statuses, what="a live status")
            assert got.statuses[-1].charging
            # the charger's Last Will (`mcc` false, go-eCharger-API-v2 PR #345): offline now
            got.offline.clear()
            async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
                await client.publish("go-eCharger/0ff001/mcc", "false", qos=1, retain=True)
            await until(lambda: got.offline, timeout=3, what="offline from the will")
            assert "mcc=false" in got.offline[-1]
            async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
                await client.publish("go-eCharger/0ff001/mcc", "", qos=1, retain=True)
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
