"""What the bridge leaves retained is its memory and what every reader believes: kept true
across the lifecycle edges — a charger removed or renamed in the config, two bridges on one
broker and one discovery prefix, an orderly stop and a crash, a restart in the middle of a
session, an openWB primary reading while the charger or the bridge is away, a fleet with a
slow cloud charger. Real mosquitto, the simulator, the bridge in-process (timing constants
shortened where the test says so)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from bridge.goe.model import ApiVersion
from bridge.openwb import common as openwb_common
from bridge.publish import charger as charger_outputs
from bridge.simulator.charger import Car, SimCharger
from bridge.simulator.cloud import CloudFrontend, CloudState
from bridge.simulator.http import HttpFrontend
from tests.bridge_helpers import http_charger, make_config, running_bridge
from tests.mqtt_helpers import Probe, TcpProxy, run_mosquitto, until
from tests.openwb_standins import Primary, read_retained


@pytest.fixture
async def charging() -> AsyncIterator[tuple[SimCharger, int]]:
    sim = SimCharger(api=ApiVersion.V2, alw_delay_s=0.05, phase_switch_pause_s=0.3, psm=2)
    sim.plug(Car(max_current_a=32, energy_needed_wh=1e9))
    async with HttpFrontend(sim) as fe:
        yield sim, fe.port


async def retained_under(broker: Any, pattern: str, seconds: float = 0.6) -> dict[str, str]:
    """What a reader that subscribes now gets (retained messages only)."""
    out: dict[str, str] = {}
    async with aiomqtt.Client(broker.host, broker.port) as reader:
        await reader.subscribe(pattern, qos=1)
        try:
            async with asyncio.timeout(seconds):
                async for m in reader.messages:
                    if m.retain and isinstance(m.payload, bytes) and m.payload:
                        out[m.topic.value] = m.payload.decode()
        except TimeoutError:
            pass
    return out


def only_removals(retained: dict[str, str]) -> bool:
    """The device config left for a Home Assistant that was away: every component in the
    removal form, until Home Assistant's next birth (tests/integration/test_ha_discovery.py)."""
    [payload] = retained.values()
    cmps = json.loads(payload)["cmps"]
    return bool(cmps) and all(c == {"p": c["p"]} for c in cmps.values())


async def test_a_removed_or_renamed_charger_leaves_no_ghost(
    mosquitto: Any, base_topic: str, charging: tuple[SimCharger, int]
) -> None:
    """Its retained topics (availability `online` among them) go when the config no longer
    has it, and its Home Assistant device is removed (the config kept in the removal form
    for a Home Assistant that was away); a renamed charger is the same charger under a new
    id."""
    _, port = charging
    prefix = f"ha{base_topic}"
    ha = {"home_assistant": {"enabled": True, "prefix": prefix}}
    both = make_config(mosquitto, base_topic, [http_charger("keep", port),
                                               http_charger("old", port)], **ha)  # fmt: skip
    async with running_bridge(both), Probe(mosquitto.host, mosquitto.port,
                                           f"{base_topic}/old/availability") as probe:  # fmt: skip
        await probe.wait_for(f"{base_topic}/old/availability", "online")
    before = await retained_under(mosquitto, f"{base_topic}/old/#")
    assert len(before) > 20
    assert await retained_under(mosquitto, f"{prefix}/device/goe_bridge_old/config")
    renamed = make_config(mosquitto, base_topic, [http_charger("keep", port),
                                                  http_charger("new", port)], **ha)  # fmt: skip
    async with running_bridge(renamed), Probe(mosquitto.host, mosquitto.port,
                                              f"{base_topic}/new/availability") as probe:  # fmt: skip
        await probe.wait_for(f"{base_topic}/new/availability", "online")
    assert await retained_under(mosquitto, f"{base_topic}/old/#") == {}
    assert only_removals(await retained_under(mosquitto, f"{prefix}/device/goe_bridge_old/config"))
    assert await retained_under(mosquitto, f"{prefix}/device/goe_bridge_new/config")
    assert await retained_under(mosquitto, f"{base_topic}/keep/availability")


async def test_bridges_sharing_a_broker_and_a_discovery_prefix_remove_only_their_own(
    mosquitto: Any, base_topic: str, charging: tuple[SimCharger, int]
) -> None:
    _, port = charging
    prefix = f"ha{base_topic}"
    ha = {"home_assistant": {"enabled": True, "prefix": prefix}}
    a, b = f"{base_topic}a", f"{base_topic}b"
    first = make_config(mosquitto, a, [http_charger("x", port)], **ha)
    second = make_config(mosquitto, b, [http_charger("y", port)], **ha)
    async with running_bridge(first) as one, running_bridge(second) as two:
        await until(lambda: one.chargers["x"].available and two.chargers["y"].available,
                    what="both online")  # fmt: skip
    assert await retained_under(mosquitto, f"{b}/y/availability")
    # the first bridge's charger is removed from its config: only its own topics go
    emptied = make_config(mosquitto, a, [http_charger("z", port)], **ha)
    async with running_bridge(emptied):
        await asyncio.sleep(1.0)
    assert await retained_under(mosquitto, f"{a}/x/#") == {}
    assert only_removals(await retained_under(mosquitto, f"{prefix}/device/goe_bridge_x/config"))
    assert len(await retained_under(mosquitto, f"{b}/y/#")) > 20
    assert await retained_under(mosquitto, f"{prefix}/device/goe_bridge_y/config")
    # each bridge has its own device in Home Assistant
    assert await retained_under(mosquitto, f"{prefix}/device/goe_bridge_{a}/config")
    assert await retained_under(mosquitto, f"{prefix}/device/goe_bridge_{b}/config")


async def test_every_charger_is_offline_after_a_stop_and_online_expires_after_a_crash(
    mosquitto: Any, base_topic: str, charging: tuple[SimCharger, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """An orderly stop says `offline` for every charger; after a crash nobody can, so the
    retained `online` expires (MQTT 5 message expiry, repeated while the charger answers;
    shortened here from 60 s to 1 s, expiring after 2.5 periods)."""
    _, port = charging
    monkeypatch.setattr(charger_outputs, "AVAILABILITY_REFRESH_S", 1.0)
    cfg = make_config(mosquitto, base_topic, [http_charger("c", port), http_charger("d", port)])
    async with running_bridge(cfg), Probe(mosquitto.host, mosquitto.port,
                                          f"{base_topic}/+/availability") as probe:  # fmt: skip
        await probe.wait_for(f"{base_topic}/c/availability", "online")
        await probe.wait_for(f"{base_topic}/d/availability", "online")
    retained = await retained_under(mosquitto, f"{base_topic}/+/availability")
    assert retained == {f"{base_topic}/c/availability": "offline",
                        f"{base_topic}/d/availability": "offline"}  # fmt: skip
    async with TcpProxy(mosquitto.host, mosquitto.port) as proxy:
        crash = make_config(proxy, base_topic, [http_charger("c", port)])
        async with running_bridge(crash) as bridge:
            await until(lambda: bridge.chargers["c"].available, what="online")
            await asyncio.sleep(1.5)
            assert (await retained_under(mosquitto, f"{base_topic}/c/availability")) == {
                f"{base_topic}/c/availability": "online"
            }
            proxy.refusing = True  # the bridge is gone for the broker: a crash, a power cut
            proxy.cut()
            await asyncio.sleep(3.5)
            assert await retained_under(mosquitto, f"{base_topic}/c/availability") == {}
            proxy.refusing = False


async def test_the_session_energy_survives_a_bridge_restart_after_a_phase_switch(
    mosquitto: Any, base_topic: str, charging: tuple[SimCharger, int]
) -> None:
    """go-e's own `wh` restarts after a phase switch (go-eCharger-API-v2 #198); the session
    energy is counted from `eto` since the car was plugged in, and the baseline is kept in
    the bridge's record, so a restart after the switch does not make it drop (424 → 117 Wh
    was measured; Home Assistant takes a drop of a total_increasing sensor for a meter reset
    and counts the energy twice)."""
    sim, port = charging
    root = f"{base_topic}/c"
    sim.eto_wh, sim.session_wh = 100_000.0, 0.0
    cfg = make_config(mosquitto, base_topic, [http_charger("c", port)])
    async with running_bridge(cfg), Probe(mosquitto.host, mosquitto.port, f"{root}/#") as probe:
        await probe.wait_for(f"{root}/availability", "online")
        sim.eto_wh += 424.0
        sim.session_wh += 424.0
        await probe.wait_for(f"{root}/energy_session_wh", lambda p: float(p) >= 400)
        sim.session_wh = 0.03  # a phase switch: the charger's own counter starts again
        await probe.wait_for(f"{root}/energy_session_charger_wh", lambda p: float(p) < 50)
        sim.eto_wh += 117.0
        sim.session_wh += 117.0
        await probe.wait_for(f"{root}/energy_session_wh", lambda p: float(p) >= 540)
    async with Probe(mosquitto.host, mosquitto.port, f"{root}/#") as probe, running_bridge(cfg):
        await probe.wait_for(f"{root}/availability", "online")
        await asyncio.sleep(0.5)
        session = [float(p) for p in probe.values(f"{root}/energy_session_wh") if p]
        assert session and min(session) >= 540, session


@pytest.fixture
def openwb_broker() -> Iterator[Any]:
    """A broker per test: openWB's topic names are fixed, retained state must not leak."""
    with run_mosquitto() as broker:
        yield broker


async def test_an_openwb_secondary_started_while_the_charger_is_away_sees_no_unplug(
    openwb_broker: Any, base_topic: str, charging: tuple[SimCharger, int]
) -> None:
    mosquitto = openwb_broker
    """After a power cut the bridge host often boots before the go-e's WiFi: openWB must
    read the plug state it had, not an unplug (which closes its session, resets the RFID and
    locks the chargepoint)."""
    sim, port = charging
    cfg = make_config(mosquitto, base_topic, [http_charger("c", port, source="openwb-secondary")])
    primary = Primary(mosquitto.host, mosquitto.port)
    async with running_bridge(cfg):
        await primary.cycle(16.0)
        await until(lambda: sim.is_charging(), what="charging")
        assert (await primary.read())["plug_state"] is True
    sim.inject("timeout", 10**9, 2.0)  # the go-e is not back yet
    async with running_bridge(cfg):
        for _ in range(3):
            await primary.cycle(16.0)
            values = await primary.read()
            assert values["plug_state"] is True, values
            assert values["phases_in_use"] == 3, values
            assert values["fault_state"] == 2


async def test_openwb_does_not_read_a_stopped_bridge_as_live(
    openwb_broker: Any, base_topic: str, charging: tuple[SimCharger, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """An orderly stop leaves the complete stopped set (no charging, no power, the fault,
    the plug held); after a crash, charge state, power and currents expire (MQTT 5), which
    openWB reads as a secondary it cannot reach (shortened from 150 s to 3 s here)."""
    mosquitto = openwb_broker
    sim, port = charging
    cfg = make_config(mosquitto, base_topic, [http_charger("c", port, source="openwb-secondary")])
    primary = Primary(mosquitto.host, mosquitto.port)
    async with running_bridge(cfg):
        await primary.cycle(16.0)
        await until(lambda: sim.is_charging(), what="charging")
        assert (await primary.read())["charge_state"] is True
    values = await primary.read()
    assert values["charge_state"] is False and values["power"] == 0
    assert values["fault_state"] == 2 and values["plug_state"] is True
    monkeypatch.setattr(openwb_common.RetainedValues, "EXPIRY_PERIODS", 0.05)
    async with TcpProxy(mosquitto.host, mosquitto.port) as proxy:
        crash = make_config(proxy, base_topic, [http_charger("c", port,
                                                             source="openwb-secondary")])  # fmt: skip
        async with running_bridge(crash):
            await primary.cycle(16.0)
            await until(lambda: sim.is_charging(), what="charging again")
            await asyncio.sleep(0.5)
            assert (await primary.read())["charge_state"] is True
            proxy.refusing = True
            proxy.cut()
            await asyncio.sleep(3.5)
            values = await read_retained(mosquitto.host, mosquitto.port,
                                         "openWB/internal_chargepoint/0/get/#")  # fmt: skip
            assert "charge_state" not in values and "power" not in values, values
            assert values["plug_state"] is True
            proxy.refusing = False


async def test_a_slow_cloud_charger_shows_its_data_at_once(
    mosquitto: Any, base_topic: str, charging: tuple[SimCharger, int], tmp_path: Path
) -> None:
    """Two chargers, one of them on the go-e cloud v1 (polled every 120 s for go-e's fair
    use): both are online within seconds of the start, not the second after half of that."""
    _, port = charging
    cloud_sim = SimCharger(api=ApiVersion.V1, serial="012345")
    token = tmp_path / "token"
    token.write_text("tok")
    token.chmod(0o600)
    async with CloudFrontend(CloudState(cloud_sim, "tok")) as cloud:
        chargers = [
            http_charger("local", port),
            {"id": "cloud", "connection": {"type": "cloud", "api": "v1", "serial": "012345",
                                           "token_file": str(token), "base_url": cloud.url}},
        ]  # fmt: skip
        cfg = make_config(mosquitto, base_topic, chargers)
        assert cfg.chargers[1].connection.poll_interval_s is None  # the 120 s default
        async with (
            Probe(mosquitto.host, mosquitto.port, f"{base_topic}/+/availability") as probe,
            running_bridge(cfg),
        ):
            await probe.wait_for(f"{base_topic}/local/availability", "online", timeout=10)
            await probe.wait_for(f"{base_topic}/cloud/availability", "online", timeout=10)
        info = json.loads((await retained_under(mosquitto, f"{base_topic}/bridge/info"))[
            f"{base_topic}/bridge/info"])  # fmt: skip
        assert set(info["chargers"]) == {"local", "cloud"}


async def test_the_record_of_a_charger_that_has_not_answered_yet_is_kept(
    mosquitto: Any, base_topic: str, charging: tuple[SimCharger, int], tmp_path: Path
) -> None:
    """A restart while the charger is away (its WiFi comes back later): the session energy
    and plug state restored from the last run are the record until the charger answers. A
    save of the state file before then (the stop) and a record written for a command before
    then must keep them, or the start after that counts the session from zero."""
    import socket

    from bridge import config as config_mod

    sim, port = charging
    root = f"{base_topic}/c"
    state = tmp_path / "state.json"

    def cfg(charger_port: int) -> Any:
        data = {
            "log": {"level": "debug", "format": "json"},
            "brokers": {"test": {"host": mosquitto.host, "port": mosquitto.port}},
            "publish": {"base_topic": base_topic},
            "state_file": str(state),
            "chargers": [http_charger("c", charger_port)],
        }
        return config_mod.from_data(data, env={})

    def kept(record: Any) -> bool:
        return isinstance(record, dict) and "session" in record and "plug" in record

    sim.eto_wh, sim.session_wh = 100_000.0, 0.0
    async with (
        running_bridge(cfg(port)),
        Probe(mosquitto.host, mosquitto.port, f"{root}/#") as probe,
    ):
        await probe.wait_for(f"{root}/availability", "online")
        sim.eto_wh += 424.0
        sim.session_wh += 424.0
        await probe.wait_for(f"{root}/energy_session_wh", lambda p: float(p) >= 400)
        await until(lambda: kept(json.loads(probe.values(f"{root}/memory")[-1])), what="record")
    assert kept(json.loads(state.read_text())["chargers"]["c"])

    with socket.socket() as s:  # a port nothing answers on: the charger is away
        s.bind(("127.0.0.1", 0))
        away = s.getsockname()[1]
    async with running_bridge(cfg(away)):
        await asyncio.sleep(0.5)
    assert kept(json.loads(state.read_text())["chargers"].get("c")), state.read_text()

    async with (
        running_bridge(cfg(away)),
        Probe(mosquitto.host, mosquitto.port, f"{root}/#") as probe,
    ):
        mark = probe.mark()
        await probe.publish(f"{root}/current_limit_a/set", "10")
        seen = await probe.wait_for(f"{root}/memory", since=mark)
        assert kept(json.loads(seen.payload)), seen.payload
    assert kept(json.loads(state.read_text())["chargers"].get("c")), state.read_text()


async def test_a_record_nested_too_deeply_does_not_stop_the_start(
    mosquitto: Any, base_topic: str, charging: tuple[SimCharger, int]
) -> None:
    """Anyone with write access can leave a retained message on the record's topic; one
    nested deeper than Python's parser goes (a RecursionError, not a ValueError) ended
    every start of the bridge. It is unreadable, logged, and the charger served."""
    _, port = charging
    root = f"{base_topic}/c"
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
        await client.publish(f"{root}/memory", "[" * 100_000, qos=1, retain=True)
    cfg = make_config(mosquitto, base_topic, [http_charger("c", port)])
    async with running_bridge(cfg), Probe(mosquitto.host, mosquitto.port, f"{root}/#") as probe:
        await probe.wait_for(f"{root}/availability", "online")
        await probe.wait_for(f"{root}/memory", lambda p: p.startswith("{"))
