"""Control integrity with a real mosquitto, the simulator over real HTTP and the bridge
in-process: hostile payloads change nothing, a phase switch ends where it started, the
bridge's own state topic cannot be left `offline`, two bridges on one config never both
write, and a command already handled is never applied again."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bridge.goe.model import ApiVersion
from bridge.mqtt.messages import Incoming
from bridge.service import Bridge
from bridge.simulator.charger import Car, SimCharger
from bridge.simulator.http import HttpFrontend
from tests.bridge_helpers import http_charger, make_config, running_bridge
from tests.mqtt_helpers import Probe, until


@pytest.fixture
async def charging_sim() -> Any:
    sim = SimCharger(api=ApiVersion.V2, alw_delay_s=0.05, psm=2)  # forced three-phase
    sim.phase_switch_pause_s = 0.5
    sim.plug(Car(max_current_a=32, energy_needed_wh=1e9))
    async with HttpFrontend(sim) as fe:
        yield sim, fe


async def results(probe: Probe, root: str, since: int) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in probe.messages[since:] if m.topic == f"{root}/result"]


@pytest.mark.parametrize(
    "payload,error",
    [
        (b"1" * 70_000, "payload too large (70000 bytes, limit 65536)"),
        (b"[" * 30_000 + b"]" * 30_000, "payload is nested too deeply"),
        ("١٦".encode(), "expected a number, got '١٦'"),
        (b"1_6", "expected a number, got '1_6'"),
        (b"NaN", "expected a number, got 'NaN'"),
        (b"\xff\xfe", "payload is not UTF-8 text"),
    ],
    ids=["oversized", "deep", "arabic-digits", "underscore", "nan", "not-utf8"],
)
async def test_hostile_payloads_are_rejected_and_change_nothing(
    mosquitto: Any, base_topic: str, charging_sim: Any, payload: bytes, error: str
) -> None:
    sim, fe = charging_sim
    cfg = make_config(mosquitto, base_topic, [http_charger("c", fe.port)])
    async with (
        running_bridge(cfg),
        Probe(mosquitto.host, mosquitto.port, f"{base_topic}/c/result") as probe,
    ):
        root = f"{base_topic}/c"
        writes = len(sim.writes)
        await probe.publish(f"{root}/current_limit_a/set", payload)
        seen = await probe.wait_for(f"{root}/result")
        result = json.loads(seen.payload)
        assert result["ok"] is False and result["error"] == error
        assert len(seen.payload) < 400  # never an echo of the whole payload
        assert len(sim.writes) == writes


async def test_phase_switch_right_after_a_restart_resumes_charging(
    mosquitto: Any, base_topic: str, charging_sim: Any
) -> None:
    sim, fe = charging_sim
    cfg = make_config(mosquitto, base_topic, [http_charger("c", fe.port)])
    root = f"{base_topic}/c"
    async with Probe(mosquitto.host, mosquitto.port, f"{root}/#") as probe:
        async with running_bridge(cfg):
            await probe.publish(f"{root}/set", json.dumps({"allow_charging": True,
                                                             "current_limit_a": 10}))  # fmt: skip
            await until(lambda: sim.frc == 2 and sim.amp == 10 and sim.is_charging(),
                        what="charging")  # fmt: skip
        # a new bridge process knows no `allow` target; the user switches phases at once
        async with running_bridge(cfg):
            writes = len(sim.writes)
            await probe.publish(f"{root}/phases/set", "1")
            await until(lambda: sim.psm == 1, what="psm=1")
            await until(lambda: sim.is_charging() and sim.active_phases() == 1, timeout=20,
                        what="charging again on one phase")  # fmt: skip
            # psm alone; the switch resets frc to neutral like an unplug (go-eCharger-API-v2
            # #198), and with no `allow` target the bridge puts back what was there before
            await until(lambda: sim.frc == 2, what="frc as before the switch")
            assert [(w.key, w.value) for w in sim.writes[writes:]] == [("psm", 1), ("frc", 2)]
            # an unsupported request changes nothing
            since = probe.mark()
            await probe.publish(f"{root}/phases/set", "2")
            await probe.wait_for(f"{root}/result", since=since)
            assert (await results(probe, root, since))[-1]["ok"] is False
            assert sim.psm == 1 and sim.is_charging()


async def test_a_foreign_offline_on_our_state_topic_is_answered_with_online(
    mosquitto: Any, base_topic: str, charging_sim: Any
) -> None:
    _, fe = charging_sim
    cfg = make_config(mosquitto, base_topic, [http_charger("c", fe.port)])
    state = f"{base_topic}/bridge/state"
    async with running_bridge(cfg), Probe(mosquitto.host, mosquitto.port, state) as probe:
        await probe.wait_for(state, "online")
        since = probe.mark()
        await probe.publish(state, "offline", retain=True)  # a twin's Last Will
        await probe.wait_for(state, "online", since=since + 1)


async def start(cfg: Any) -> tuple[Bridge, asyncio.Task[int]]:
    bridge = Bridge(cfg, install_signals=False)
    task = asyncio.create_task(bridge.run())
    await asyncio.wait_for(bridge.ready.wait(), 15)
    return bridge, task


@pytest.mark.parametrize("same_client_id", [True, False], ids=["same-client-id", "own-client-ids"])
async def test_two_bridges_on_one_config_the_older_stands_by(
    mosquitto: Any, base_topic: str, charging_sim: Any, same_client_id: bool
) -> None:
    sim, fe = charging_sim
    cfg = make_config(mosquitto, base_topic, [http_charger("c", fe.port)])
    root = f"{base_topic}/c"
    async with Probe(mosquitto.host, mosquitto.port, f"{base_topic}/#") as probe:
        old, old_task = await start(cfg)
        await until(lambda: old.chargers["c"].available, what="old online")
        if not same_client_id:  # e.g. a second machine, or a client_id set by hand
            for link in old.links.values():
                link.client_id += "-old"
        new, new_task = await start(cfg)
        try:
            await until(lambda: old.standing_by, what="the older one stands by")
            assert not new.standing_by and not old_task.done()
            writes = len(sim.writes)
            await probe.publish(f"{root}/current_limit_a/set", "11")
            await until(lambda: sim.amp == 11, what="the new bridge writes")
            await asyncio.sleep(1)
            assert [(w.key, w.value) for w in sim.writes[writes:]] == [("amp", 11)]  # once
            await until(lambda: getattr(probe.last(f"{base_topic}/bridge/state"), "payload",
                                        None) == "online", what="state online")  # fmt: skip
            await asyncio.sleep(1)
            assert probe.last(f"{base_topic}/bridge/state").payload == "online"
            assert old.standing_by
            # the one standing by says nothing on its way out: the state stays the other's
            old.request_stop()
            assert await asyncio.wait_for(old_task, 15) == 0
            await asyncio.sleep(0.5)
            assert probe.last(f"{base_topic}/bridge/state").payload == "online"
            assert probe.last(f"{root}/availability").payload == "online"
        finally:
            old.request_stop()
            new.request_stop()
            assert await asyncio.wait_for(new_task, 15) == 0
            await asyncio.wait_for(old_task, 15)


async def test_a_command_already_handled_is_never_applied_again(
    mosquitto: Any, base_topic: str, charging_sim: Any
) -> None:
    sim, fe = charging_sim
    cfg = make_config(mosquitto, base_topic, [http_charger("c", fe.port)])
    root = f"{base_topic}/c"
    async with running_bridge(cfg) as bridge, Probe(mosquitto.host, mosquitto.port,
                                                      f"{root}/#") as probe:  # fmt: skip
        link = bridge.links["test"]
        delivered: list[Incoming] = []
        append = link._inbox.append
        link._inbox.append = lambda m: (delivered.append(m), append(m))[1]  # type: ignore[method-assign]
        await probe.publish(f"{root}/current_limit_a/set", "7", retain=True)
        await until(lambda: sim.amp == 7, what="7 A")
        await probe.wait_for(f"{root}/current_limit_a/set", "")  # the retained one cleared
        await probe.publish(f"{root}/current_limit_a/set", "14")
        await until(lambda: sim.amp == 14, what="14 A")
        # what a broker restored from its database after a crash sends: the delivery of the
        # 7 again (DUP, its packet identifier)
        seven = next(m for m in delivered if m.payload == b"7")
        link._dispatch(seven._replace(dup=True))
        assert link.redeliveries_dropped == 1
        await asyncio.sleep(1.0)
        assert sim.amp == 14
        # a new command with the same value, sent live, is a command
        await probe.publish(f"{root}/current_limit_a/set", "7")
        await until(lambda: sim.amp == 7, what="7 A again")


async def test_phases_auto_end_to_end(mosquitto: Any, base_topic: str, charging_sim: Any) -> None:
    """`phases/set auto` gives the phase choice back to the charger (psm 0), and `phases` is
    published as `auto`."""
    sim, fe = charging_sim
    cfg = make_config(mosquitto, base_topic,
                      [http_charger("c", fe.port, phase_switch_min_interval_s=0)])  # fmt: skip
    root = f"{base_topic}/c"
    async with running_bridge(cfg), Probe(mosquitto.host, mosquitto.port, f"{root}/#") as probe:
        await probe.wait_for(f"{root}/phases", "3")
        await probe.publish(f"{root}/phases/set", "1")
        await until(lambda: sim.psm == 1, what="psm=1")
        await probe.wait_for(f"{root}/phases", "1")
        since = probe.mark()
        await probe.publish(f"{root}/phases/set", "auto")
        result = json.loads((await probe.wait_for(f"{root}/result", since=since)).payload)
        assert result == {"ok": True, "field": "phases", "value": "auto", "error": None}
        await until(lambda: sim.psm == 0, what="psm=0")
        await probe.wait_for(f"{root}/phases", "auto", since=since)


async def test_phase_switching_before_firmware_051_8_is_refused_with_the_reason(
    mosquitto: Any, base_topic: str
) -> None:
    sim = SimCharger(api=ApiVersion.V2, firmware="051.4", alw_delay_s=0.05)
    async with HttpFrontend(sim) as fe:
        cfg = make_config(mosquitto, base_topic, [http_charger("o", fe.port)])
        root = f"{base_topic}/o"
        async with running_bridge(cfg) as bridge, Probe(mosquitto.host, mosquitto.port,
                                                          f"{root}/#") as probe:  # fmt: skip
            await until(lambda: bridge.chargers["o"].status is not None, what="first status")
            await probe.publish(f"{root}/phases/set", "1")
            result = json.loads((await probe.wait_for(f"{root}/result")).payload)
            assert result["ok"] is False
            assert result["error"] == (
                "phase switching needs firmware 051.8 or later (this charger: 051.4)"
            )
            await asyncio.sleep(0.5)
            assert not any(w.key == "psm" for w in sim.writes)
