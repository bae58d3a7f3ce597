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


@pytest.mark.parametrize(
    ("source", "topic", "payload"),
    [
        ("openwb-mqtt", "openWB/mqtt/chargepoint/1/set/current", "16"),
        ("openwb-1.9", "openWB/lp/1/AConfigured", "16"),
    ],
)
async def test_a_retained_set_point_redelivered_by_reconnects_is_no_sign_of_life(
    base_topic: str, charging: tuple[SimCharger, int], source: str, topic: str, payload: str
) -> None:
    """openWB is gone after publishing its set point retained; the bridge's link flaps and
    gets the retained message again on every reconnect: the failsafe still stops the car
    (only a new message from openWB is a heartbeat)."""
    sim, port = charging
    with run_mosquitto() as broker:
        async with TcpProxy(broker.host, broker.port) as proxy:
            cfg = make_config(proxy, base_topic, [http_charger(
                "c", port, source=source, failsafe={"timeout_s": 5})])  # fmt: skip
            async with running_bridge(cfg) as bridge:
                link = bridge.links["test"]
                await publish_retained(broker, topic, payload)  # openWB's last word
                await until(lambda: sim.frc == 2 and sim.amp == 16, what="charging at 16 A")

                async def flap() -> None:  # a reconnect every second or two, for ever
                    while True:
                        connects = link.connects
                        proxy.cut()
                        await until(lambda c=connects: link.connects > c, what="reconnected")
                        await asyncio.sleep(0.5)  # never cut a connect half-way

                flapping = asyncio.create_task(flap())
                try:
                    # while the link keeps flapping, not after it calmed down
                    await until(lambda: sim.frc == 1, timeout=20, what="the failsafe stop")
                    assert not flapping.done()
                finally:
                    flapping.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await flapping
                controller = bridge.chargers["c"].controller
                assert controller is not None and controller.failsafe_active


async def test_no_bridge_info_stops_a_bridge(
    mosquitto: Any, base_topic: str, charging: tuple[SimCharger, int]
) -> None:
    """A retained bridge/info naming our chargers with a later start (forged, or left by a
    bridge whose clock was ahead) and a live one with `Infinity`: the bridge serves on."""
    sim, port = charging
    root = f"{base_topic}/c"
    forged = {"version": "0", "instance": {"id": "zz", "host": "x", "pid": 1, "started": 9e99},
              "chargers": {"c": {"type": "http"}}}  # fmt: skip
    await publish_retained(mosquitto, f"{base_topic}/bridge/info", json.dumps(forged))
    cfg = make_config(mosquitto, base_topic, [http_charger("c", port)])
    async with running_bridge(cfg) as bridge, Probe(mosquitto.host, mosquitto.port,
                                                      f"{base_topic}/#") as probe:  # fmt: skip
        await probe.wait_for(f"{root}/availability", "online")
        live = '{"instance": {"id": "yy", "started": Infinity}, "chargers": {"c": {}}}'
        await probe.publish(f"{base_topic}/bridge/info", live)
        await probe.publish(f"{base_topic}/bridge/info", '{"instance": {"id": "yy", '
                            '"started": "9e99"}, "chargers": ["c"]}')  # fmt: skip
        await asyncio.sleep(1.5)
        assert not bridge.standing_by
        await probe.publish(f"{root}/current_limit_a/set", "9")
        await until(lambda: sim.amp == 9, what="still serving")
        assert probe.last(f"{base_topic}/bridge/state").payload == "online"


async def test_a_foreign_write_on_a_status_topic_is_answered_with_the_truth(
    mosquitto: Any, base_topic: str, charging: tuple[SimCharger, int]
) -> None:
    """ioBroker's "publish own states on connect" writes its copies back onto the bridge's
    topics, some of them changed (a serial that became a number): every subscriber must read
    the charger's values again at once, not after refresh_s."""
    _, port = charging
    root = f"{base_topic}/c"
    cfg = make_config(mosquitto, base_topic, [http_charger("c", port)], refresh_s=3600)
    async with running_bridge(cfg), Probe(mosquitto.host, mosquitto.port, f"{root}/#") as probe:
        limit = await probe.wait_for(f"{root}/current_limit_a")
        serial = await probe.wait_for(f"{root}/serial")
        for topic, wrong in ((f"{root}/current_limit_a", "8"), (f"{root}/serial", "1"),
                             (f"{root}/availability", "offline")):  # fmt: skip
            mark = probe.mark()
            await probe.publish(topic, wrong, retain=True)
            truth = {f"{root}/current_limit_a": limit.payload, f"{root}/serial": serial.payload,
                     f"{root}/availability": "online"}[topic]  # fmt: skip
            await probe.wait_for(topic, truth, since=mark, timeout=5)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as late:  # a new reader
            await late.subscribe(f"{root}/serial")
            async with asyncio.timeout(5):
                async for m in late.messages:
                    assert m.payload == serial.payload.encode()
                    break


async def test_the_intent_survives_a_bridge_restart_and_a_charger_reboot(
    mosquitto: Any, base_topic: str, charging: tuple[SimCharger, int]
) -> None:
    """The charger reboots while the bridge is down (API v1 `amx` is volatile; here: the
    current and the force state back to the charger's own): the restarted bridge restores the
    controller's last intent (10 A, charging) while the controller's failsafe window has not
    run out, and otherwise shows no Target of the last run."""
    sim, port = charging
    root = f"{base_topic}/c"
    cfg = make_config(mosquitto, base_topic, [http_charger("c", port)])
    async with running_bridge(cfg), Probe(mosquitto.host, mosquitto.port, f"{root}/#") as probe:
        await probe.wait_for(f"{root}/availability", "online")
        await probe.publish(f"{root}/set", '{"allow_charging": true, "current_limit_a": 10}')
        await until(lambda: sim.amp == 10 and sim.frc == 2, what="10 A")
    sim.amp, sim.frc = 16, 0  # the charger rebooted: its stored current, neutral
    async with Probe(mosquitto.host, mosquitto.port, f"{root}/#") as probe, running_bridge(cfg):
        await until(lambda: sim.amp == 10 and sim.frc == 2, what="the intent restored")
        await probe.wait_for(f"{root}/control/target_current_a", "10")
        await probe.wait_for(f"{root}/control/in_sync", "true")
    # with a failsafe window that ran out while it was away, nothing is restored, and the
    # start-up shows no Target and no in_sync of the last run
    failsafe = make_config(mosquitto, base_topic, [http_charger("c", port,
                                                                failsafe={"timeout_s": 1})])  # fmt: skip
    await asyncio.sleep(1.2)
    sim.amp, sim.frc = 16, 0
    async with (
        Probe(mosquitto.host, mosquitto.port, f"{root}/#") as probe,
        running_bridge(failsafe),
    ):
        await probe.wait_for(f"{root}/control/target_current_a", "none")
        await probe.wait_for(f"{root}/availability", "online")
        await asyncio.sleep(1.0)
        assert (sim.amp, sim.frc) == (16, 0)
        # in_sync is deleted at start (unknown until the controller speaks), never `true`
        # from the last run
        assert probe.values(f"{root}/control/in_sync")[-1] == ""


async def test_a_config_edit_keeps_the_session_and_its_queued_commands(
    mosquitto: Any, base_topic: str, charging: tuple[SimCharger, int]
) -> None:
    sim, port = charging
    root = f"{base_topic}/c"
    one = make_config(mosquitto, base_topic, [http_charger("c", port)])
    two = make_config(mosquitto, base_topic, [http_charger("c", port), http_charger("d", port)])
    async with running_bridge(one), Probe(mosquitto.host, mosquitto.port, f"{root}/#") as probe:
        await probe.wait_for(f"{root}/availability", "online")
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as controller:
        await controller.publish(f"{root}/current_limit_a/set", "11", qos=1)  # while away
    async with running_bridge(two):  # a charger added to the config
        await until(lambda: sim.amp == 11, what="the command queued in the session")
