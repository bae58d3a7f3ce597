"""Commands on the generic namespace, through real mosquitto, into the simulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bridge.goe.model import ApiVersion
from bridge.simulator.charger import Car, SimCharger
from bridge.simulator.http import HttpFrontend
from tests import bridge_helpers
from tests.bridge_helpers import http_charger, make_config, running_bridge
from tests.mqtt_helpers import Probe, until


class Rig(bridge_helpers.Rig):
    def writes(self, key: str | None = None) -> list[Any]:
        return [(w.key, w.value) for w in self.sim.writes if key is None or w.key == key]


@pytest.fixture
async def rig(
    request: pytest.FixtureRequest, mosquitto: Any, base_topic: str
) -> AsyncIterator[Rig]:
    params = getattr(request, "param", {})
    sim = SimCharger(
        api=params.get("api", ApiVersion.V2), alw_delay_s=0.05, phase_switch_pause_s=0.3
    )
    sim.plug(Car(max_current_a=32))
    control = params.get("control", {})
    async with HttpFrontend(sim) as fe:
        cfg = make_config(mosquitto, base_topic, [http_charger("c1", fe.port, **control)])
        async with (
            running_bridge(cfg) as bridge,
            Probe(mosquitto.host, mosquitto.port, f"{base_topic}/#") as probe,
        ):
            root = f"{base_topic}/c1"
            await probe.wait_for(f"{root}/availability", "online")
            yield Rig(sim, probe, bridge, root)


async def test_nothing_is_written_before_the_controller_speaks(rig: Rig) -> None:
    await rig.probe.wait_for(f"{rig.root}/car_state", "charging")
    await asyncio.sleep(0.5)
    assert rig.sim.writes == []


@pytest.mark.parametrize(
    ("suffix", "payload", "field", "value", "sim_state"),
    [
        ("allow_charging/set", "true", "allow_charging", True, {"frc": 2}),
        ("allow_charging/set", "off", "allow_charging", False, {"frc": 1}),
        ("allow_charging/set", "1", "allow_charging", True, {"frc": 2}),
        ("current_limit_a/set", "10", "current_limit_a", 10, {"amp": 10}),
        ("current_limit_a/set", '"12"', "current_limit_a", 12, {"amp": 12}),
        ("current_limit_a/set", "14.0", "current_limit_a", 14, {"amp": 14}),
        ("phases/set", "1", "phases", 1, {"psm": 1}),
        (
            "set",
            '{"allow_charging": true, "current_limit_a": 8}',
            "set",
            {"allow_charging": True, "current_limit_a": 8},
            {"frc": 2, "amp": 8},
        ),
    ],
)
async def test_each_settable_field_reaches_the_charger(
    rig: Rig, suffix: str, payload: str, field: str, value: Any, sim_state: dict[str, int]
) -> None:
    result = await rig.command(suffix, payload)
    assert result == {"ok": True, "field": field, "value": value, "error": None}
    await until(
        lambda: all(getattr(rig.sim, k) == v for k, v in sim_state.items()), what=str(sim_state)
    )
    await rig.probe.wait_for(f"{rig.root}/control/in_sync", "true")


@pytest.mark.parametrize(
    ("suffix", "payload", "field", "error"),
    [
        (
            "current_limit_a/set",
            "5",
            "current_limit_a",
            "5 A is outside 6..16 A (limits.max_current_a)",
        ),
        (
            "current_limit_a/set",
            "17",
            "current_limit_a",
            "17 A is outside 6..16 A (limits.max_current_a)",
        ),
        ("current_limit_a/set", "10.5", "current_limit_a", "expected whole amps, got 10.5"),
        ("current_limit_a/set", "ten", "current_limit_a", "expected a number, got 'ten'"),
        ("current_limit_a/set", "true", "current_limit_a", "expected a number, got true"),
        ("current_limit_a/set", "NaN", "current_limit_a", "expected a number, got 'NaN'"),
        (
            "allow_charging/set",
            "maybe",
            "allow_charging",
            "expected true/false (or 1/0, on/off), got 'maybe'",
        ),
        (
            "allow_charging/set",
            "2",
            "allow_charging",
            "expected true/false (or 1/0, on/off), got 2",
        ),
        ("phases/set", "2", "phases", "expected 1, 3 or auto, got 2"),
        (
            "colour/set",
            "red",
            "colour",
            "unknown field 'colour'; settable: allow_charging, current_limit_a, phases",
        ),
        (
            "set",
            "[1, 2]",
            "set",
            'expected a JSON object such as {"allow_charging": true, "current_limit_a": 10}',
        ),
        (
            "set",
            '{"current_limit_a": 10, "allow_charging": "perhaps"}',
            "set",
            "allow_charging: expected true/false (or 1/0, on/off), got 'perhaps'",
        ),
    ],
)
async def test_every_rejection_says_why_and_writes_nothing(
    rig: Rig, suffix: str, payload: str, field: str, error: str
) -> None:
    result = await rig.command(suffix, payload)
    assert result["ok"] is False
    assert result["field"] == field
    assert result["error"] == error
    await asyncio.sleep(0.4)
    assert rig.sim.writes == []


async def test_invalid_utf8_is_rejected(rig: Rig) -> None:
    mark = rig.probe.mark()
    await rig.probe.publish(f"{rig.root}/current_limit_a/set", b"\xff\xfe")
    seen = await rig.probe.wait_for(f"{rig.root}/result", since=mark)
    assert json.loads(seen.payload)["error"] == "payload is not UTF-8 text"
    assert rig.sim.writes == []


@pytest.mark.parametrize("rig", [{"api": ApiVersion.V1}], indirect=True)
async def test_v1_charger_uses_alw_and_amx_and_refuses_phases(rig: Rig) -> None:
    result = await rig.command("set", '{"allow_charging": true, "current_limit_a": 9}')
    assert result["ok"]
    await until(lambda: rig.sim.amp == 9 and rig.sim.alw)
    assert set(rig.writes()) <= {("alw", 1), ("amx", 9)}
    assert rig.sim.eeprom_writes == 0
    result = await rig.command("phases/set", "1")
    assert result == {
        "ok": False,
        "field": "phases",
        "value": 1,
        "error": "API v1 chargers cannot switch phases",
    }


@pytest.mark.parametrize("rig", [{"control": {"min_command_interval_s": 1.0}}], indirect=True)
async def test_rapid_current_changes_coalesce_to_the_last_value(rig: Rig) -> None:
    assert (await rig.command("current_limit_a/set", "10"))["ok"]
    await until(lambda: rig.sim.amp == 10)
    for amps in range(11, 17):
        await rig.probe.publish(f"{rig.root}/current_limit_a/set", str(amps))
    await until(lambda: rig.sim.amp == 16, timeout=10)
    await asyncio.sleep(1.5)  # nothing more may follow
    amp_writes = [w for w in rig.sim.writes if w.key == "amp"]
    assert [w.value for w in amp_writes] == [10, 16]
    assert amp_writes[1].at - amp_writes[0].at >= 1.0  # spaced as configured


async def test_a_value_that_does_not_stick_is_retried_twice_then_out_of_sync(rig: Rig) -> None:
    rig.sim.ignore_writes = True  # acknowledges {"amp":true} but keeps the old value
    assert (await rig.command("current_limit_a/set", "10"))["ok"]
    await rig.probe.wait_for(f"{rig.root}/control/in_sync", "false")
    await until(lambda: rig.bridge.chargers["c1"].reconciler.gave_up, timeout=20, what="give up")
    await asyncio.sleep(1.0)
    assert rig.writes("amp") == [("amp", 10)] * 3  # the first write and two retries
    # the charger starts accepting writes again: a new target is written and in sync
    rig.sim.ignore_writes = False
    mark = rig.probe.mark()
    assert (await rig.command("current_limit_a/set", "11"))["ok"]
    await rig.probe.wait_for(f"{rig.root}/control/in_sync", "true", since=mark)
    assert rig.sim.amp == 11


async def test_rejected_writes_are_retried_then_reported(rig: Rig) -> None:
    assert (await rig.command("allow_charging/set", "true"))["ok"]
    await until(lambda: rig.sim.frc == 2)
    rig.sim.inject("http500", count=1_000_000)
    assert (await rig.command("allow_charging/set", "false"))["ok"]
    await until(lambda: rig.bridge.chargers["c1"].reconciler.writes_failed >= 1, timeout=10)
    rig.sim.clear_faults()


async def test_drift_is_reasserted_after_unplug_and_replug(rig: Rig) -> None:
    assert (await rig.command("allow_charging/set", "false"))["ok"]
    await until(lambda: rig.sim.frc == 1)
    rig.sim.unplug()  # go-e API v2 #117: frc resets to neutral
    assert rig.sim.frc == 0
    await until(lambda: rig.sim.frc == 1, what="frc re-asserted")
    assert rig.writes("frc") == [("frc", 1), ("frc", 1)]


async def test_a_retained_command_is_applied_once_and_cleared(rig: Rig, mosquitto: Any) -> None:
    result = await rig.command("current_limit_a/set", "7", retain=True)
    assert result["ok"]
    await until(lambda: rig.sim.amp == 7)
    # a fresh subscriber finds no retained command any more
    async with Probe(mosquitto.host, mosquitto.port, f"{rig.root}/current_limit_a/set") as late:
        await asyncio.sleep(0.5)
        assert [m for m in late.messages if m.payload] == []
    assert rig.writes("amp") == [("amp", 7)]


async def test_phase_switch_is_psm_alone_and_is_rate_limited(rig: Rig) -> None:
    assert (await rig.command("set", '{"allow_charging": true, "current_limit_a": 10}'))["ok"]
    await until(lambda: rig.sim.is_charging())
    assert (await rig.command("phases/set", "1"))["ok"]
    await until(lambda: rig.sim.psm == 1 and rig.sim.is_charging(), what="switched and charging")
    await until(lambda: rig.sim.frc == 2, what="frc restored after the switch")
    writes = [(k, v) for k, v in rig.writes() if k in ("frc", "psm")]
    # the enable, then the switch alone (the go-e pauses itself, never a stop written by the
    # bridge), then the force state the switch reset to neutral, as after an unplug
    # (go-eCharger-API-v2 #198)
    assert writes == [("frc", 2), ("psm", 1), ("frc", 2)]
    assert rig.sim.active_phases() == 1
    # a second switch inside phase_switch_min_interval_s (300 s) waits
    assert (await rig.command("phases/set", "3"))["ok"]
    await asyncio.sleep(1.0)
    assert rig.sim.psm == 1


async def test_commands_for_a_charger_owned_by_another_controller_are_refused(
    mosquitto: Any, base_topic: str
) -> None:
    sim = SimCharger(api=ApiVersion.V2)
    async with HttpFrontend(sim) as fe:
        cfg = make_config(mosquitto, base_topic, [http_charger("ro", fe.port, source="none")])
        async with (
            running_bridge(cfg),
            Probe(mosquitto.host, mosquitto.port, f"{base_topic}/#") as probe,
        ):
            await probe.wait_for(f"{base_topic}/ro/availability", "online")
            await probe.publish(f"{base_topic}/ro/current_limit_a/set", "10")
            seen = await probe.wait_for(f"{base_topic}/ro/result")
            assert json.loads(seen.payload) == {
                "ok": False, "field": "current_limit_a", "value": None,
                "error": "charger 'ro' is read-only (control.source: none)",
            }  # fmt: skip
            await asyncio.sleep(0.3)
            assert sim.writes == []


async def test_failsafe_when_the_controller_goes_quiet(mosquitto: Any, base_topic: str) -> None:
    sim = SimCharger(api=ApiVersion.V2, alw_delay_s=0.05)
    sim.plug()
    async with HttpFrontend(sim) as fe:
        charger = http_charger("fs", fe.port, failsafe={"timeout_s": 1, "action": "stop"})
        cfg = make_config(mosquitto, base_topic, [charger])
        async with (
            running_bridge(cfg),
            Probe(mosquitto.host, mosquitto.port, f"{base_topic}/#") as probe,
        ):
            root = f"{base_topic}/fs"
            await probe.wait_for(f"{root}/availability", "online")
            await probe.publish(f"{root}/set", '{"allow_charging": true, "current_limit_a": 10}')
            await until(lambda: sim.frc == 2)
            await probe.wait_for(f"{root}/control/failsafe_active", "true", timeout=10)
            await until(lambda: sim.frc == 1, what="stopped by the failsafe")
            mark = probe.mark()
            await probe.publish(f"{root}/allow_charging/set", "true")
            await probe.wait_for(f"{root}/control/failsafe_active", "false", since=mark)
            await until(lambda: sim.frc == 2)
