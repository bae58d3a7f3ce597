"""go-e quirks end to end: the real bridge in-process, real mosquitto, the simulator over
real HTTP behaving like the firmware (each behaviour cites its go-e source in the
simulator)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from bridge.control import pv_input
from bridge.goe.model import ApiVersion
from bridge.publish.fields import bridge_info_topic
from bridge.simulator import charger as sim_charger
from bridge.simulator.charger import Car, SimCharger
from bridge.simulator.http import HttpFrontend
from tests.bridge_helpers import http_charger, make_config, running_bridge
from tests.mqtt_helpers import Probe, until


def charging(**kw: Any) -> SimCharger:
    sim = SimCharger(api=ApiVersion.V2, alw_delay_s=0.05, **kw)
    sim.phase_switch_pause_s = 0.3
    sim.plug(Car(max_current_a=16, energy_needed_wh=1e9))
    sim.set_v2({"frc": "2"})
    return sim


def number(text: str) -> float:
    return float(text) if text else -1.0


@pytest.mark.slow(12)
async def test_session_energy_goes_on_through_a_phase_switch(
    mosquitto: Any, base_topic: str
) -> None:
    """go-e's `wh` starts from 0 after a phase switch (go-eCharger-API-v2 #198): the session
    energy comes from `eto` since plug-in; go-e's own counter stays visible beside it."""
    sim = charging(psm=2)
    sim.eto_wh, sim.session_wh = 50_000.0, 0.0
    async with HttpFrontend(sim) as fe:
        cfg = make_config(mosquitto, base_topic,
                          [http_charger("c", fe.port, phase_switch_min_interval_s=0)])  # fmt: skip
        root = f"{base_topic}/c"
        async with running_bridge(cfg), Probe(mosquitto.host, mosquitto.port,
                                              f"{root}/#") as probe:  # fmt: skip
            await probe.wait_for(f"{root}/energy_session_wh")
            sim.eto_wh += 2000
            sim.session_wh += 2000
            await probe.wait_for(f"{root}/energy_session_wh", lambda p: number(p) >= 2000)
            await probe.publish(f"{root}/phases/set", "1")
            await until(lambda: sim.psm == 1 and sim.session_wh < 100, what="switched")
            since = probe.mark()
            await probe.wait_for(f"{root}/energy_session_charger_wh",
                                 lambda p: number(p) < 100, since=since)  # fmt: skip
            sim.eto_wh += 1000
            sim.session_wh += 1000
            await probe.wait_for(f"{root}/energy_session_wh", lambda p: number(p) >= 3000)
            assert all(number(p) >= 2000 for p in probe.values(f"{root}/energy_session_wh")[1:])


async def test_all_zero_meter_while_charging_is_flagged_not_published_as_0_w(
    mosquitto: Any, base_topic: str
) -> None:
    """fw 60.4 reports an all-zero `nrg` while charging (go-eCharger-API-v2 #321)."""
    sim = charging()
    async with HttpFrontend(sim) as fe:
        cfg = make_config(mosquitto, base_topic, [http_charger("c", fe.port)])
        root = f"{base_topic}/c"
        async with running_bridge(cfg), Probe(mosquitto.host, mosquitto.port,
                                              f"{root}/#") as probe:  # fmt: skip
            await probe.wait_for(f"{root}/power_w", lambda p: number(p) > 1000)
            await probe.wait_for(f"{root}/meter_fault", "false")
            since = probe.mark()
            sim.inject("zero_nrg", 1_000_000)
            await probe.wait_for(f"{root}/meter_fault", "true", since=since)
            await probe.wait_for(f"{root}/power_w", "", since=since)  # cleared, not 0
            assert "0" not in probe.values(f"{root}/power_w")[-3:]
            sim.clear_faults()
            await probe.wait_for(f"{root}/meter_fault", "false", since=since)
            await probe.wait_for(f"{root}/power_w", lambda p: number(p) > 1000, since=since)


async def test_settings_that_fight_the_controller_are_reported_and_cleared(
    mosquitto: Any, base_topic: str
) -> None:
    """lmo not Default, fup on, acs on: warned in bridge/info (and the log, the page)."""
    sim = charging()
    sim.lmo, sim.fup = 4, True
    async with HttpFrontend(sim) as fe:
        cfg = make_config(mosquitto, base_topic, [http_charger("c", fe.port)])
        info = bridge_info_topic(base_topic)
        async with running_bridge(cfg) as bridge, Probe(mosquitto.host, mosquitto.port,
                                                        info) as probe:  # fmt: skip

            def warnings(payload: str) -> set[str]:
                return set(json.loads(payload)["chargers"]["c"].get("warnings", {}))

            await probe.wait_for(info, lambda p: warnings(p) == {"lmo", "fup"})
            assert "eco (lmo=4)" in bridge.chargers["c"].setting_warnings["lmo"]
            sim.lmo, sim.fup, sim.acs = 3, False, 1
            await probe.wait_for(info, lambda p: warnings(p) == {"acs"})
            sim.acs = 0
            await probe.wait_for(info, lambda p: warnings(p) == set())


async def test_access_control_waits_for_a_card_unless_authorising_is_opted_in(
    mosquitto: Any, base_topic: str
) -> None:
    """acs=1: the go-e waits for a card (modelStatus 2); `trx=0` authorises the session
    without one (apikeys-en.md; evcc does it), only when the user opts in."""
    for authorize in (False, True):
        await _access_control_run(mosquitto, base_topic, authorize=authorize)


async def _access_control_run(mosquitto: Any, base_topic: str, *, authorize: bool) -> None:
    sim = SimCharger(api=ApiVersion.V2, alw_delay_s=0.05, acs=1)
    sim.plug(Car(max_current_a=16, energy_needed_wh=1e9))
    async with HttpFrontend(sim) as fe:
        cfg = make_config(mosquitto, base_topic,
                          [http_charger("c", fe.port, authorize=authorize)])  # fmt: skip
        root = f"{base_topic}/c"
        async with running_bridge(cfg), Probe(mosquitto.host, mosquitto.port,
                                              f"{root}/#") as probe:  # fmt: skip
            await probe.wait_for(f"{root}/access_control", "wait")
            await probe.publish(f"{root}/allow_charging/set", "true")
            await until(lambda: sim.frc == 2, what="frc=2")
            if authorize:
                await until(lambda: sim.trx == 0 and sim.is_charging(), what="authorised")
                await probe.wait_for(f"{root}/session_authorized", "true")
            else:
                await probe.wait_for(f"{root}/model_status",
                                     "not_charging_because_access_control")  # fmt: skip
                assert sim.trx is None and not sim.is_charging()
                assert not any(w.key == "trx" for w in sim.writes)


async def test_pv_input_feeds_the_chargers_own_pv_logic_and_stops_when_quiet(
    monkeypatch: pytest.MonkeyPatch, mosquitto: Any, base_topic: str
) -> None:
    """`pv/set` → `ids` every ≤ 5 s ("needed all 5 seconds", apikeys-en.md) while the meter
    speaks; nothing once it is quiet, so the charger's PV logic sees no old surplus. go-e's
    PV logic runs in Eco mode with PV surplus on (syssi README: lmo=4, fup=true).

    The re-send (4 s) and the charger's lapse of an old `ids` (10 s) at a quarter of their
    pace: the order of events is the subject, not the seconds."""
    monkeypatch.setattr(pv_input, "RESEND_S", pv_input.RESEND_S / 4)
    monkeypatch.setattr(sim_charger, "IDS_LAPSE_S", sim_charger.IDS_LAPSE_S / 4)
    sim = SimCharger(api=ApiVersion.V2, alw_delay_s=0.05, fup=True, lmo=4)
    sim.plug(Car(max_current_a=16, energy_needed_wh=1e9))
    async with HttpFrontend(sim) as fe:
        charger = http_charger("c", fe.port, pv_input_timeout_s=5)
        cfg = make_config(mosquitto, base_topic, [charger])
        root = f"{base_topic}/c"
        async with running_bridge(cfg) as bridge, Probe(mosquitto.host, mosquitto.port,
                                                        f"{root}/#") as probe:  # fmt: skip
            await probe.wait_for(f"{root}/car_state", "waiting_for_car")
            assert not sim.is_charging()  # PV mode, no surplus known
            await probe.publish(f"{root}/pv/set", "oops")
            result = json.loads((await probe.wait_for(f"{root}/result")).payload)
            assert result["ok"] is False and result["field"] == "pv"
            assert not any(w.key == "ids" for w in sim.writes)

            await probe.publish(f"{root}/pv/set", '{"grid_w": -3000, "pv_w": 5000}')
            await until(lambda: sim.is_charging(), what="charging on the surplus")
            assert sim.ids == {"pGrid": -3000.0, "pPv": 5000.0}
            await until(lambda: sum(w.key == "ids" for w in sim.writes) >= 2, timeout=8,
                        what="re-sent within 5 s")  # fmt: skip
            ids = [w.at for w in sim.writes if w.key == "ids"]
            assert all(b - a <= 5 for a, b in itertools.pairwise(ids))
            # the meter goes quiet: after pv_input_timeout_s the bridge drops the value and
            # waits for a new one (nothing is sent again without one) ...
            pv = bridge.chargers["c"].pv_input
            await until(lambda: pv.value is None, timeout=30, what="the quiet meter noticed")
            count = sum(w.key == "ids" for w in sim.writes)
            # ... and the charger lets the last `ids` lapse: no surplus, no charging
            await until(lambda: not sim.is_charging(), timeout=30, what="the surplus lapsed")
            assert sum(w.key == "ids" for w in sim.writes) == count
