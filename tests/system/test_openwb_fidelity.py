"""The bridge as openWB's own code sees it: one test per way the bridge used to differ from
openWB's secondary and MQTT chargepoint, against stand-ins that follow openWB core's rules
(tests/openwb_standins.py cites the file of each). The bridge runs as a subprocess, or
in-process where a timing constant is shortened."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.goe.model import ApiVersion
from bridge.openwb import mapping
from bridge.simulator.charger import Car, SimCharger
from bridge.simulator.http import HttpFrontend
from tests.bridge_helpers import http_charger, make_config, running_bridge
from tests.mqtt_helpers import run_mosquitto, until
from tests.openwb_standins import (
    REQUIRED_MQTT,
    REQUIRED_SECONDARY,
    MqttChargepointModule,
    OpenWBControl,
    Primary,
    openwb_check,
)
from tests.system.test_openwb import bridge_config, bridge_process, logged


@pytest.fixture
def mosquitto() -> Any:
    with run_mosquitto() as broker:
        yield broker


@contextlib.asynccontextmanager
async def simulator(
    api: ApiVersion = ApiVersion.V2, car: bool = True, psm: int = 2
) -> AsyncIterator[tuple[SimCharger, HttpFrontend]]:
    sim = SimCharger(api=api, alw_delay_s=0.05, phase_switch_pause_s=0.5, psm=psm)
    sim.card_names = ["04a1b2c3"]
    if car:
        sim.plug(Car(max_current_a=32, energy_needed_wh=1e9))
    async with HttpFrontend(sim) as fe:
        yield sim, fe


def config(tmp_path: Path, broker: Any, port: int, base: str, **control: Any) -> Path:
    cfg = bridge_config(tmp_path / "c.yaml", broker, broker, port, base, control)
    # the shipped defaults, not the test defaults of test_openwb.py (phase guard 0)
    data = yaml.safe_load(cfg.read_text())
    del data["chargers"][0]["control"]["phase_switch_min_interval_s"]
    cfg.write_text(yaml.safe_dump(data))
    return cfg


async def ready(cfg: Path) -> None:
    await until(lambda: any(e.get("event") == "bridge.ready" for e in logged(cfg)), timeout=20)


async def test_a_second_phase_switch_is_carried_out_within_openwbs_window(
    mosquitto: Any, base_topic: str, tmp_path: Path
) -> None:
    async with simulator() as (sim, fe):
        cfg = config(tmp_path, mosquitto, fe.port, base_topic, source="openwb-secondary")
        assert "phase_switch_min_interval_s" not in cfg.read_text()
        primary, openwb = Primary(mosquitto.host, mosquitto.port), OpenWBControl()
        with bridge_process(cfg):
            await ready(cfg)
            await primary.cycle(16.0)
            await until(lambda: sim.is_charging(), what="charging")
            for phases in (1, 3, 1):
                await primary.cycle(16.0)
                await primary.switch_phases(phases)
                assert await openwb.check_phase_switch(primary.read, phases), phases
            assert openwb.failed_phase_switches == 0 and not openwb.switching_blocked
            assert openwb.unplugs == 0


async def test_a_phase_switch_a_v1_charger_cannot_do_is_reported_to_openwb(
    mosquitto: Any, base_topic: str, tmp_path: Path
) -> None:
    async with simulator(ApiVersion.V1) as (sim, fe):
        cfg = config(tmp_path, mosquitto, fe.port, base_topic, source="openwb-secondary")
        primary = Primary(mosquitto.host, mosquitto.port)
        with bridge_process(cfg):
            await ready(cfg)
            await primary.cycle(16.0)
            await until(lambda: sim.is_charging(), what="charging")
            await primary.switch_phases(1)
            await asyncio.sleep(1.5)
            values = await primary.read()
            assert values["fault_state"] == 1
            assert "Phasenumschaltung" in values["fault_str"]
            assert "nicht unterstützt" in values["fault_str"]


async def test_openwbs_module_start_does_not_fake_a_plugged_car(
    mosquitto: Any, base_topic: str, tmp_path: Path
) -> None:
    # psm 0 (auto), the go-e default: openWB's phases_to_use=3 at its start is written, but
    # with no car there is no switch to hold a plug state for
    async with simulator(car=False, psm=0) as (_sim, fe):
        cfg = config(tmp_path, mosquitto, fe.port, base_topic, source="openwb-mqtt",
                     chargepoint_id=5)  # fmt: skip
        module, openwb = MqttChargepointModule(mosquitto.host, mosquitto.port, 5), OpenWBControl()
        with bridge_process(cfg):
            await ready(cfg)
            await module.start()  # every openWB start
            await module.set_current(0)
            for _ in range(4):
                values = await module.read()
                openwb.observe(values)
                assert values.get("plug_state") is False, values


@pytest.mark.slow(11)
async def test_an_unreachable_go_e_is_no_unplug_and_shows_no_frozen_values(
    mosquitto: Any, base_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A WiFi drop: like openWB's own secondary, the last values stand for a while (a
    warning, no cut to the minimum current for a short drop), then no charging, no frozen
    measurements, the fault; never an unplug edge, never a counter reset. In-process, with
    the 60 s hold shortened (mapping.OUTAGE_HOLD_S)."""
    monkeypatch.setattr(mapping, "OUTAGE_HOLD_S", 8.0)
    async with simulator() as (sim, fe):
        cfg = make_config(mosquitto, base_topic, [http_charger(
            "c", fe.port, source="openwb-secondary", poll=0.3)])  # fmt: skip
        primary, openwb = Primary(mosquitto.host, mosquitto.port), OpenWBControl()
        async with running_bridge(cfg):
            await primary.cycle(16.0)
            await until(lambda: sim.is_charging(), what="charging")
            before = await primary.read()
            openwb.observe(before)
            assert before["plug_state"] is True and before["imported"] > 0
            sim.inject("timeout", 10**9, 2.0)  # WiFi gone
            held: dict[str, Any] = {}
            for _ in range(40):
                await primary.cycle(16.0)
                values = await primary.read()
                openwb.observe(values)
                if values.get("fault_state") == 1:
                    held = values
                if values.get("fault_state") == 2:
                    break
            # first the last values, as a warning
            assert held and "nicht erreichbar" in held["fault_str"]
            assert held["charge_state"] is True and held["power"] == before["power"]
            # then the fault, no charging, nothing frozen
            assert values["fault_state"] == 2 and "nicht erreichbar" in values["fault_str"]
            assert openwb.unplugs == 0  # no false unplug: no chargelog reset, no lock
            assert values["plug_state"] is True and values["charge_state"] is False
            assert values["imported"] == before["imported"]  # never a reset
            assert values["voltages"] == [230.0] * 3 and values["power"] == 0  # not frozen
            assert values["evse_current"] is None
            assert openwb_check(values, REQUIRED_SECONDARY) == []


async def test_a_go_e_unreachable_at_start_never_shows_a_counter_of_0(
    mosquitto: Any, base_topic: str, tmp_path: Path
) -> None:
    async with simulator() as (sim, fe):
        sim.inject("timeout", 10**9, 2.0)
        cfg = config(tmp_path, mosquitto, fe.port, base_topic, source="openwb-secondary")
        primary = Primary(mosquitto.host, mosquitto.port)
        with bridge_process(cfg):
            await ready(cfg)
            await primary.cycle(16.0)
            await asyncio.sleep(2)
            values = await primary.read()
            assert values["fault_state"] == 2
            assert "imported" not in values  # unknown: not published, never 0
            assert values["phases_in_use"] == 1
            assert openwb_check(values, REQUIRED_SECONDARY) == []


async def test_cp_interruption_pauses_and_resumes_and_never_writes_a_setting(
    mosquitto: Any, base_topic: str, tmp_path: Path
) -> None:
    async with simulator() as (sim, fe):
        cfg = config(tmp_path, mosquitto, fe.port, base_topic, source="openwb-secondary")
        primary, openwb = Primary(mosquitto.host, mosquitto.port), OpenWBControl()
        with bridge_process(cfg):
            await ready(cfg)
            await primary.cycle(16.0)
            await until(lambda: sim.is_charging() and sim.frc == 2, what="charging")
            await primary.interrupt_cp(3)
            await until(lambda: sim.frc == 1, what="paused")
            values = await primary.read()
            openwb.observe(values)
            assert values["plug_state"] is True and values["fault_state"] == 1
            assert "CP-Unterbrechung" in values["fault_str"]
            await primary.cycle(16.0)
            await until(lambda: sim.frc == 2 and sim.is_charging(), timeout=15, what="resumed")
            assert not any(w.key == "su" for w in sim.writes)
            assert sim.unplug_simulations == 0 and openwb.unplugs == 0


@pytest.mark.parametrize("source", ["openwb-secondary", "openwb-mqtt"])
async def test_a_card_scanned_at_the_go_e_reaches_openwb_and_its_clear_removes_it(
    mosquitto: Any, base_topic: str, tmp_path: Path, source: str
) -> None:
    async with simulator() as (sim, fe):
        cfg = config(tmp_path, mosquitto, fe.port, base_topic, source=source, chargepoint_id=2)
        primary = Primary(mosquitto.host, mosquitto.port)
        module = MqttChargepointModule(mosquitto.host, mosquitto.port, 2)
        read = primary.read if source == "openwb-secondary" else module.read
        with bridge_process(cfg):
            await ready(cfg)
            if source == "openwb-secondary":
                await primary.cycle(16.0)
            else:
                await module.set_current(16)
            await asyncio.sleep(1)
            assert (await read()).get("rfid") is None
            sim.scan_card("04a1b2c3")
            for _ in range(10):
                if (await read()).get("rfid") == "04a1b2c3":
                    break
            values = await read()
            assert values["rfid"] == "04a1b2c3" and values["rfid_timestamp"] > 0
            if source == "openwb-secondary":
                await primary.clear_rfid()
            else:
                await module.clear_rfid()
            for _ in range(10):
                if (await read()).get("rfid", "missing") is None:
                    break
            values = await read()
            assert "rfid" in values and values["rfid"] is None  # gone, still reported
            required = REQUIRED_SECONDARY if source == "openwb-secondary" else REQUIRED_MQTT
            assert openwb_check(values, required) == []


async def test_the_secondary_publishes_what_openwbs_secondary_publishes(
    mosquitto: Any, base_topic: str, tmp_path: Path
) -> None:
    async with simulator(car=False) as (_, fe):
        cfg = config(tmp_path, mosquitto, fe.port, base_topic, source="openwb-secondary")
        primary = Primary(mosquitto.host, mosquitto.port)
        with bridge_process(cfg):
            await ready(cfg)
            await primary.cycle(0)
            await asyncio.sleep(1.5)
            values = await primary.read()
            # store/_chargepoint_internal.py publishes these every cycle
            for key in ("version", "current_branch", "current_commit", "vehicle_id", "rfid",
                        "error_timestamp", "serial_number", "evse_current", "max_evse_current",
                        "frequency", "voltages", "powers", "power_factors"):  # fmt: skip
                assert key in values, key
            assert values["phases_in_use"] == 1  # before the first charge
            assert values["version"].startswith("goe-bridge")
            assert openwb_check(values, REQUIRED_SECONDARY) == []
