"""The newest command wins whatever its value, across the lifecycle edges a real link and a
real broker have: a half-dead WiFi link that makes the broker send a command again (DUP), a
broker restart without persistence, commands queued while the bridge was away, clients that
echo what they see, and payloads far over any sane size. Real mosquitto, the simulator over
HTTP, the bridge in-process, a TCP hop that fails like WiFi (tests/mqtt_helpers.TcpProxy)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import pytest

from bridge.goe.model import ApiVersion
from bridge.simulator.charger import Car, SimCharger
from bridge.simulator.http import HttpFrontend
from tests.bridge_helpers import http_charger, make_config, running_bridge
from tests.mqtt_helpers import Probe, TcpProxy, run_mosquitto, until


@pytest.fixture
async def charging() -> AsyncIterator[tuple[SimCharger, int]]:
    sim = SimCharger(api=ApiVersion.V2, alw_delay_s=0.05)
    sim.plug(Car(max_current_a=32, energy_needed_wh=1e9))
    async with HttpFrontend(sim) as fe:
        yield sim, fe.port


async def published_in_the_dark(proxy: TcpProxy, probe: Probe, topic: str, value: str) -> None:
    """`value` reaches the broker, the broker sends it to the bridge, the link loses it; the
    link is then cut and the bridge reconnects: the broker sends it again with DUP=1."""
    proxy.blackhole()
    await probe.publish(topic, value)  # QoS 1: the broker accepted it
    await asyncio.sleep(0.3)  # and sent it into the void
    proxy.cut()


@pytest.mark.parametrize(
    ("field", "sequence", "check"),
    [
        ("current_limit_a", ["7", "14", "7"], lambda sim: sim.amp == 7),
        ("allow_charging", ["true", "false", "true", "false"], lambda sim: sim.frc == 1),
    ],
    ids=["current-7-14-7", "allow-true-false-true-false"],
)
async def test_a_command_sent_again_after_a_half_dead_link_is_applied_whatever_its_value(
    mosquitto: Any, base_topic: str, charging: tuple[SimCharger, int], field: str,
    sequence: list[str], check: Any,
) -> None:  # fmt: skip
    sim, port = charging
    root = f"{base_topic}/c"
    topic = f"{root}/{field}/set"
    async with TcpProxy(mosquitto.host, mosquitto.port) as proxy:
        cfg = make_config(proxy, base_topic, [http_charger("c", port)])
        async with running_bridge(cfg) as bridge, Probe(mosquitto.host, mosquitto.port,
                                                          f"{root}/#") as probe:  # fmt: skip
            link = bridge.links["test"]
            await probe.wait_for(f"{root}/availability", "online")
            for value in sequence[:-1]:
                mark = probe.mark()
                await probe.publish(topic, value)
                await probe.wait_for(f"{root}/result", since=mark)
            connects = link.connects
            await published_in_the_dark(proxy, probe, topic, sequence[-1])
            await until(lambda: link.connects > connects and link.connected.is_set(),
                        what="reconnected")  # fmt: skip
            await until(lambda: check(sim), what=f"the last {field} {sequence[-1]} applied")
            assert link.redeliveries_dropped == 0


async def test_a_redelivery_of_a_command_already_handled_is_dropped(
    mosquitto: Any, base_topic: str, charging: tuple[SimCharger, int]
) -> None:
    """The other half of the rule: a DUP with the packet identifier of a delivery this
    process handled (its PUBACK lost in a disconnect) is the same message, not a new one."""
    sim, port = charging
    root = f"{base_topic}/c"
    async with TcpProxy(mosquitto.host, mosquitto.port) as proxy:
        cfg = make_config(proxy, base_topic, [http_charger("c", port)])
        async with running_bridge(cfg) as bridge, Probe(mosquitto.host, mosquitto.port,
                                                          f"{root}/#") as probe:  # fmt: skip
            link = bridge.links["test"]
            await probe.wait_for(f"{root}/availability", "online")
            delivered: list[Any] = []
            original = link._inbox.append
            link._inbox.append = lambda m: (delivered.append(m), original(m))[1]  # type: ignore[method-assign]
            await probe.publish(f"{root}/current_limit_a/set", "7")
            await until(lambda: sim.amp == 7, what="7 A")
            await probe.publish(f"{root}/current_limit_a/set", "14")
            await until(lambda: sim.amp == 14, what="14 A")
            seven = next(m for m in delivered if m.payload == b"7")
            # the broker sends the first one again, as after a lost PUBACK
            link._receive(seven._replace(dup=True))
            await until(lambda: link.redeliveries_dropped == 1, what="dropped")
            await asyncio.sleep(0.5)
            assert sim.amp == 14


async def test_a_fresh_retained_command_after_a_broker_restart_is_applied_whatever_its_value(
    base_topic: str, charging: tuple[SimCharger, int]
) -> None:
    """A broker without persistence restarts; the controller (here faster than the bridge)
    publishes its set point retained again: a value the bridge handled before is still a
    new command."""
    sim, port = charging
    root = f"{base_topic}/c"
    with run_mosquitto() as broker:
        async with TcpProxy(broker.host, broker.port) as proxy:
            cfg = make_config(proxy, base_topic, [http_charger("c", port)])
            async with running_bridge(cfg) as bridge:
                link = bridge.links["test"]
                async with Probe(broker.host, broker.port, f"{root}/#") as probe:
                    await probe.wait_for(f"{root}/availability", "online")
                    await probe.publish(f"{root}/current_limit_a/set", "7", retain=True)
                    await until(lambda: sim.amp == 7, what="7 A")
                    await probe.wait_for(f"{root}/current_limit_a/set", "")  # cleared
                    await probe.publish(f"{root}/current_limit_a/set", "14")
                    await until(lambda: sim.amp == 14, what="14 A")
                for allow in ("true", "false"):  # a retained stop handled before, too
                    await publish_retained(broker, f"{root}/allow_charging/set", allow)
                    await until(lambda a=allow: sim.frc == (2 if a == "true" else 1),
                                what=f"allow {allow}")  # fmt: skip
                await publish_retained(broker, f"{root}/allow_charging/set", "true")
                await until(lambda: sim.frc == 2, what="allowed again")
                proxy.refusing = True
                proxy.cut()
                broker.stop()
                broker.start()  # everything it had is gone
                await publish_retained(broker, f"{root}/current_limit_a/set", "7")
                await publish_retained(broker, f"{root}/allow_charging/set", "false")
                connects = link.connects
                proxy.refusing = False
                await until(lambda: link.connects > connects, what="bridge back")
                target = lambda: bridge.chargers["c"].reconciler.target  # noqa: E731
                await until(lambda: sim.frc == 1, what="the fresh retained stop applied")
                # (the current is written once charging is allowed again)
                await until(lambda: target().current_a == 7, what="the fresh retained 7 A")


async def publish_retained(broker: Any, topic: str, payload: str) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as controller:
        await controller.publish(topic, payload, qos=1, retain=True)


async def test_partial_json_commands_queued_while_the_bridge_was_away_are_all_applied(
    mosquitto: Any, base_topic: str, charging: tuple[SimCharger, int]
) -> None:
    sim, port = charging
    root = f"{base_topic}/c"
    cfg = make_config(mosquitto, base_topic, [http_charger("c", port)])
    async with running_bridge(cfg), Probe(mosquitto.host, mosquitto.port, f"{root}/#") as probe:
        await probe.wait_for(f"{root}/availability", "online")
        await probe.publish(f"{root}/set", '{"allow_charging": true, "current_limit_a": 16}')
        await until(lambda: sim.frc == 2 and sim.amp == 16, what="charging at 16 A")
    # the bridge is away; its session keeps what arrives, in order
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as controller:
        await controller.publish(f"{root}/set", '{"allow_charging": false}', qos=1)
        await controller.publish(f"{root}/set", '{"current_limit_a": 8}', qos=1)
    async with Probe(mosquitto.host, mosquitto.port, f"{root}/#") as probe, running_bridge(cfg):
        await until(lambda: sim.frc == 1, what="the stop, not lost")
        # the current goes to the charger once charging is allowed again
        await probe.wait_for(f"{root}/control/target_current_a", "8")
        oks = [json.loads(p) for p in probe.values(f"{root}/result") if p]
        assert [r["value"] for r in oks if r["ok"]][-2:] == [
            {"allow_charging": False},
            {"current_limit_a": 8},
        ]


class Echo:
    """A client that writes back what it sees on the command topics the way ioBroker's MQTT
    adapter does with "different topic names for set and get": an empty message becomes a
    `null` command, published retained."""

    def __init__(self, broker: Any, pattern: str) -> None:
        self.broker, self.pattern = broker, pattern
        self.written = 0

    async def run(self) -> None:
        async with aiomqtt.Client(self.broker.host, self.broker.port) as client:
            await client.subscribe(self.pattern, qos=1)
            async for m in client.messages:
                if not m.payload:
                    self.written += 1
                    await client.publish(m.topic.value, "null", qos=1, retain=True)


async def test_clients_that_echo_cause_no_storm(
    mosquitto: Any, base_topic: str, charging: tuple[SimCharger, int]
) -> None:
    sim, port = charging
    root = f"{base_topic}/c"
    cfg = make_config(mosquitto, base_topic, [http_charger("c", port)])
    echo = Echo(mosquitto, f"{root}/+/set")
    async with running_bridge(cfg), Probe(mosquitto.host, mosquitto.port, f"{root}/#") as probe:
        task = asyncio.create_task(echo.run())
        try:
            await probe.wait_for(f"{root}/availability", "online")
            await asyncio.sleep(0.3)
            mark = probe.mark()
            await probe.publish(f"{root}/current_limit_a/set", "10")  # live: nothing cleared
            await until(lambda: sim.amp == 10, what="10 A")
            await probe.publish(f"{root}/current_limit_a/set", "12", retain=True)
            await until(lambda: sim.amp == 12, what="12 A")
            # the retained one is cleared once; the echo's `null` is answered, not cleared
            null = await probe.wait_for(f"{root}/result", lambda p: "got null" in p, since=mark)
            assert json.loads(null.payload)["error"] == "expected a number, got null"
            await asyncio.sleep(2)
            assert echo.written == 1
            assert probe.values(f"{root}/current_limit_a/set")[-1] == "null"
            assert sim.amp == 12
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


async def test_huge_payloads_are_never_read_and_leave_nothing_behind(
    mosquitto: Any, base_topic: str, charging: tuple[SimCharger, int]
) -> None:
    """MQTT 5 Maximum Packet Size: the broker does not send the bridge a packet larger than
    it accepts; nothing of a refused message is kept. 20,000 topics the bridge does not know
    leave nothing behind either."""
    sim, port = charging
    root = f"{base_topic}/c"
    cfg = make_config(mosquitto, base_topic, [http_charger("c", port)])
    async with running_bridge(cfg) as bridge, Probe(mosquitto.host, mosquitto.port,
                                                      f"{root}/result") as probe:  # fmt: skip
        link = bridge.links["test"]
        seen: list[int] = []
        original = link._inbox.append
        link._inbox.append = lambda m: (seen.append(len(m.payload)), original(m))[1]  # type: ignore[method-assign]
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as other:
            for _ in range(5):
                await other.publish(f"{root}/current_limit_a/set", b"1" * 20_000_000, qos=1)
            for i in range(20_000):
                await other.publish(f"{root}/unknown{i}/set", b"1", qos=0)
            await other.publish(f"{root}/current_limit_a/set", b"9", qos=1)
        await until(lambda: sim.amp == 9, timeout=60, what="the real command after them")
        assert max(seen) < 1_000_000
        assert len(link._handled_mids) <= 1000
        assert len(link._inbox) == 0
        assert len(link.outbox.transient) <= 1000
        unknown = [p for p in probe.values(f"{root}/result") if "unknown field" in p]
        assert unknown  # each answered, none kept
