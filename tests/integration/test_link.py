"""The broker link's subscriptions against a real mosquitto: taking one back, and the
openWB secondary dropping its start-up-only subscriptions."""

from __future__ import annotations

import asyncio
from typing import Any

import aiomqtt

from bridge.config import BrokerConfig
from bridge.goe.model import ApiVersion
from bridge.mqtt.link import BrokerLink
from bridge.openwb.secondary import OpenWBSecondary
from bridge.simulator.charger import SimCharger
from bridge.simulator.http import HttpFrontend
from tests.bridge_helpers import http_charger, make_config, running_bridge
from tests.mqtt_helpers import until


async def test_unsubscribe_stops_the_delivery_with_the_last_handler(
    mosquitto: Any, base_topic: str
) -> None:
    link = BrokerLink("t", BrokerConfig(host=mosquitto.host, port=mosquitto.port))
    first: list[bytes] = []
    second: list[bytes] = []
    marks: list[bytes] = []

    def one(t: str, p: bytes, r: bool) -> None:
        first.append(p)

    def two(t: str, p: bytes, r: bool) -> None:
        second.append(p)

    topic = f"{base_topic}/echo/x"
    link.subscribe(f"{base_topic}/echo/+", one)
    link.subscribe(f"{base_topic}/echo/+", two)
    link.subscribe(f"{base_topic}/mark", lambda t, p, r: marks.append(p))
    task = asyncio.create_task(link.run())
    try:
        await until(lambda: link.connected.is_set(), what="connected")
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as other:
            await other.publish(topic, b"1")
            await until(lambda: first == [b"1"] and second == [b"1"], what="both handlers")
            link.unsubscribe(f"{base_topic}/echo/+", one)
            await other.publish(topic, b"2")
            await until(lambda: second == [b"1", b"2"], what="the other handler")
            assert first == [b"1"]
            link.unsubscribe(f"{base_topic}/echo/+", two)
            await asyncio.sleep(0.2)  # the UNSUBSCRIBE goes out in its own task
            await other.publish(topic, b"3")
            await other.publish(f"{base_topic}/mark", b"after")  # same client: in order
            await until(lambda: marks == [b"after"], what="the mark")
            assert second == [b"1", b"2"]  # the broker no longer sends the topic
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_secondary_stops_listening_to_its_own_echo_once_resumed(
    mosquitto: Any, base_topic: str
) -> None:
    """Its retained state is read at start-up only; afterwards every republished set point
    came back as a message, and under mosquitto's Nagle (set_tcp_nodelay off) the primary's
    next set point waited behind it: ~35 ms for 1 % of the commands
    (bench/command_latency.py)."""
    sim = SimCharger(api=ApiVersion.V2)
    async with HttpFrontend(sim) as fe:
        cfg = make_config(
            mosquitto, base_topic, [http_charger("wb", fe.port, source="openwb-secondary")]
        )
        async with running_bridge(cfg) as bridge:
            controller = bridge.chargers["wb"].controller
            assert isinstance(controller, OpenWBSecondary)
            link = bridge.links["test"]
            resume = [pattern for pattern, _ in controller._resume_subscriptions]
            assert set(resume) <= set(link._subscriptions)  # at start-up: listening
            await until(lambda: controller.resumed, what="resumed")
            assert not set(resume) & set(link._subscriptions)


async def test_a_connect_subscribes_a_fleet_in_a_few_packets(
    mosquitto: Any, base_topic: str, monkeypatch: Any
) -> None:
    """250 filters (a fleet's commands and discovery) go out in SUBSCRIBE_BATCH-sized
    packets, not one round trip each; every one of them is in effect at the broker, and a
    command filter keeps its MQTT 5 options (no local: the link's own message is not
    delivered back to it)."""
    from bridge.mqtt.client import Client

    calls: list[int] = []
    subscribe = Client.subscribe

    async def counting(self: Any, topic: Any, *args: Any, **kw: Any) -> Any:
        calls.append(len(topic) if isinstance(topic, list) else 1)
        return await subscribe(self, topic, *args, **kw)

    monkeypatch.setattr(Client, "subscribe", counting)
    link = BrokerLink("t", BrokerConfig(host=mosquitto.host, port=mosquitto.port))
    got: dict[str, bytes] = {}
    for i in range(250):
        link.subscribe(f"{base_topic}/c{i}/+", lambda t, p, r: got.__setitem__(t, p))
    own: list[bytes] = []
    link.subscribe(f"{base_topic}/cmd/set", lambda t, p, r: own.append(p), command=True)
    task = asyncio.create_task(link.run())
    try:
        await until(lambda: link.connected.is_set(), what="connected")
        assert calls == [100, 100, 51]
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as other:
            for i in range(250):
                await other.publish(f"{base_topic}/c{i}/x", str(i).encode())
            await until(lambda: len(got) == 250, what="a message on every filter")
            link.publish(f"{base_topic}/cmd/set", b"mine")  # no local
            await other.publish(f"{base_topic}/cmd/set", b"theirs")
            await until(lambda: own == [b"theirs"], what="only the other client's command")
            await asyncio.sleep(0.3)
            assert own == [b"theirs"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
