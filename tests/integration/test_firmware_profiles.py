"""The real bridge (in-process, real mosquitto) against each firmware profile of the simulator
over real HTTP: every quirk in docs/firmware-matrix.md with the bridge's answer to it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from bridge.control import reconciler as reconciler_module
from bridge.goe.transports.cloud import CloudV1Transport
from bridge.publish.fields import bridge_info_topic
from bridge.simulator import profiles
from bridge.simulator.charger import Car, SimCharger
from bridge.simulator.cloud import CloudFrontend, CloudState
from bridge.simulator.http import HttpFrontend
from tests import bridge_helpers
from tests.bridge_helpers import http_charger, make_config, running_bridge
from tests.mqtt_helpers import Probe, until


class Rig(bridge_helpers.Rig):
    def writes(self, key: str) -> list[Any]:
        return [w.value for w in self.sim.writes if w.key == key]

    def since(self, mark: int, field: str) -> list[str]:
        topic = f"{self.root}/{field}"
        return [m.payload for m in self.probe.messages[mark:] if m.topic == topic]

    @property
    def runtime(self) -> Any:
        return self.bridge.chargers["c"]


@contextlib.asynccontextmanager
async def profile_rig(
    mosquitto: Any,
    base_topic: str,
    sim: SimCharger,
    *,
    api: str = "auto",
    max_current_a: int = 16,
    **control: Any,
) -> AsyncIterator[Rig]:
    async with HttpFrontend(sim) as fe:
        charger = http_charger("c", fe.port, **control)
        charger["connection"]["api"] = api
        charger["limits"]["max_current_a"] = max_current_a
        cfg = make_config(mosquitto, base_topic, [charger])
        root = f"{base_topic}/c"
        async with (
            running_bridge(cfg) as bridge,
            Probe(mosquitto.host, mosquitto.port, f"{base_topic}/#") as probe,
        ):
            await probe.wait_for(f"{root}/availability", "online")
            yield Rig(sim, probe, bridge, root)


def number(text: str) -> float:
    return float(text) if text else -1.0


# --------------------------------------------------------------------------- every profile


@pytest.mark.parametrize("name", list(profiles.PROFILES))
async def test_the_bridge_serves_each_firmware_line(
    mosquitto: Any, base_topic: str, name: str
) -> None:
    """Start, stop and a current on every profile: the charger ends charging at the
    commanded current, the topics show it, `in_sync` is true and no write was repeated."""
    sim = SimCharger(profile=name, alw_delay_s=0.05, phase_switch_pause_s=0.3)
    sim.plug(Car(max_current_a=16, energy_needed_wh=1e9))
    async with profile_rig(mosquitto, base_topic, sim) as rig:
        assert (await rig.command("allow_charging/set", "false"))["ok"]
        await until(lambda: not sim.is_charging(), what="stopped")
        result = await rig.command("set", '{"allow_charging": true, "current_limit_a": 10}')
        assert result["ok"], result
        await until(lambda: sim.is_charging() and sim.charging_current() == 10, what="10 A")
        await rig.probe.wait_for(f"{rig.root}/current_limit_a", "10")
        await rig.probe.wait_for(f"{rig.root}/charging", "true")
        await rig.probe.wait_for(f"{rig.root}/control/in_sync", "true")
        current_key = "amp" if sim.api == "v2" else ("amp" if name == "v2-033" else "amx")
        assert rig.writes(current_key) == [10]
        assert rig.runtime.reconciler.writes_failed == 0
        await rig.probe.wait_for(f"{rig.root}/firmware", sim.firmware)


# --------------------------------------------------------------------------- HW V2, 042.0


async def test_042_current_writes_are_verified_on_amx(mosquitto: Any, base_topic: str) -> None:
    """042.0 keeps the stored value in `amp` and shows the one in effect in its own `amx`
    (go-eCharger-API-v1 #114): a write below the stored value is applied, not failed."""
    sim = SimCharger(profile="v2-042.0")
    sim.amp = sim.amp_eeprom = 16
    sim.plug(Car(max_current_a=16, energy_needed_wh=1e9))
    async with profile_rig(mosquitto, base_topic, sim) as rig:
        await rig.command("current_limit_a/set", "8")
        await until(lambda: sim.charging_current() == 8, what="8 A")
        await rig.probe.wait_for(f"{rig.root}/current_limit_a", "8")
        await rig.probe.wait_for(f"{rig.root}/control/in_sync", "true")
        assert rig.writes("amx") == [8] and rig.writes("amp") == []
        assert rig.runtime.reconciler.writes_failed == 0
        assert sim.amp_eeprom == 16 and sim.eeprom_writes == 0


async def test_042_raises_the_stored_amp_to_the_limit_in_effect_only(
    mosquitto: Any, base_topic: str
) -> None:
    """A stored 6 A caps `amx` on 042.0: the bridge raises the stored value once, to
    min(limits.max_current_a, ama, cable) — here ama 16 of an 11 kW unit, not the configured
    32 A — because after a reboot the charger runs at it."""
    sim = SimCharger(profile="v2-042.0")
    sim.amp = sim.amp_eeprom = 6
    sim.plug(Car(max_current_a=32, energy_needed_wh=1e9))
    async with profile_rig(mosquitto, base_topic, sim, max_current_a=32) as rig:
        await rig.command("current_limit_a/set", "10")
        await until(lambda: sim.charging_current() == 10, what="10 A")
        await rig.probe.wait_for(f"{rig.root}/control/in_sync", "true")
        assert rig.writes("amp") == [16] and sim.amp_eeprom == 16 and sim.eeprom_writes == 1
        sim.reboot()  # amx is volatile: the stored value is what the charger runs at
        await rig.probe.wait_for(f"{rig.root}/current_limit_a", "10")  # written again
        assert sim.eeprom_writes == 1


# --------------------------------------------------------------------------- phase switch


async def test_the_chargers_own_phase_switch_is_left_alone_and_no_unplug(
    mosquitto: Any, base_topic: str
) -> None:
    """V3 on 56.x: the switch shows car=1 and frc=0 for `psmd`, then the car is back with
    `wh` restarted (go-eCharger-API-v2 #198, #248). The bridge writes nothing meanwhile,
    restores frc=2 after it, and plug, car state and session energy hold throughout."""
    sim = SimCharger(profile="v3-056", alw_delay_s=0.05, phase_switch_pause_s=3, psm=2)
    sim.plug(Car(max_current_a=16, energy_needed_wh=1e9))
    sim.eto_wh = 50_000.0
    async with profile_rig(mosquitto, base_topic, sim, phase_switch_min_interval_s=0) as rig:
        await rig.command("allow_charging/set", "true")
        await until(lambda: sim.frc == 2 and sim.is_charging(), what="charging")
        sim.eto_wh += 2000
        sim.session_wh += 2000
        await rig.probe.wait_for(f"{rig.root}/energy_session_wh", lambda p: number(p) >= 2000)
        mark = rig.probe.mark()
        frc_writes = len(rig.writes("frc"))
        await rig.command("phases/set", "1")
        await until(lambda: sim.switching(), what="the switch runs")
        await until(lambda: sim.frc == 0, what="frc reset by the switch")
        await until(lambda: not sim.switching(), timeout=20, what="the switch is over")
        await until(lambda: sim.frc == 2, what="frc restored after the switch")
        psm_at = next(w.at for w in sim.writes if w.key == "psm")
        frc_at = [w.at for w in sim.writes if w.key == "frc"][frc_writes:]
        assert len(frc_at) == 1 and frc_at[0] >= psm_at + sim.phase_switch_pause_s
        await rig.probe.wait_for(f"{rig.root}/control/in_sync", "true", since=mark)
        assert "false" not in rig.since(mark, "plugged")
        assert "idle" not in rig.since(mark, "car_state")
        energy = [number(p) for p in rig.since(mark, "energy_session_wh")]
        assert all(e >= 2000 for e in energy), energy


async def test_a_car_that_does_not_resume_after_the_switch_is_reported(
    mosquitto: Any, base_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some cars stop at car=4 after the switch until re-plugged (go-eCharger-API-v2 #144):
    `in_sync` false, the reason in the log and the status page's command list."""
    monkeypatch.setattr(reconciler_module, "RESUME_GRACE_S", 1.0)
    sim = SimCharger(profile="v3-055.5", alw_delay_s=0.05, phase_switch_pause_s=1, psm=2)
    sim.plug(Car(max_current_a=16, energy_needed_wh=1e9, resumes_after_phase_switch=False))
    async with profile_rig(mosquitto, base_topic, sim, phase_switch_min_interval_s=0) as rig:
        await rig.command("allow_charging/set", "true")
        await until(lambda: sim.is_charging(), what="charging")
        await rig.probe.wait_for(f"{rig.root}/control/in_sync", "true")
        mark = rig.probe.mark()
        await rig.command("phases/set", "1")
        await until(lambda: rig.runtime.reconciler.not_resumed, timeout=20, what="reported")
        await rig.probe.wait_for(f"{rig.root}/control/in_sync", "false", since=mark)
        assert any(c["key"] == "psm" and c["error"] and "#144" in c["error"]
                   for c in rig.runtime.commands)  # fmt: skip
        sim.unplug()
        sim.plug(Car(max_current_a=16, energy_needed_wh=1e9))
        await rig.probe.wait_for(f"{rig.root}/control/in_sync", "true", since=mark)


async def test_phases_auto_needs_055_5(mosquitto: Any, base_topic: str) -> None:
    """psm=0 exists from 055.5 (syssi #89, one report): refused before, with the reason."""
    sim = SimCharger(profile="v3-052", alw_delay_s=0.05, psm=2)
    async with profile_rig(mosquitto, base_topic, sim) as rig:
        result = await rig.command("phases/set", "auto")
        assert result["ok"] is False
        assert result["error"] == "phases auto needs firmware 055.5 or later (this charger: 052.2)"
        assert (await rig.command("phases/set", "1"))["ok"]
        await until(lambda: sim.psm == 1, what="psm 1")
        assert rig.writes("psm") == [1]


async def test_a_charger_without_psm_is_not_sent_one(mosquitto: Any, base_topic: str) -> None:
    """The V5 firmware's key exports have no psm: the charger leaves it out of its status,
    and a phases command is refused instead of failing three writes."""
    sim = SimCharger(profile="gemini", alw_delay_s=0.05)
    async with profile_rig(mosquitto, base_topic, sim) as rig:
        await rig.probe.wait_for(f"{rig.root}/firmware", "60.4")
        result = await rig.command("phases/set", "1")
        assert result == {"ok": False, "field": "phases", "value": 1,
                          "error": "this charger does not report psm (no phase switching)"}  # fmt: skip
        assert rig.writes("psm") == []


# --------------------------------------------------------------------------- PV input


async def test_pv_input_in_eco_mode_charges_on_the_surplus_without_warnings(
    mosquitto: Any, base_topic: str
) -> None:
    """go-e's PV logic wants lmo=4, fup=true, frc=0 (syssi README): fed by pv/set it charges
    on the surplus (modelStatus 12), and the bridge warns about none of those settings."""
    sim = SimCharger(profile="v3-056", alw_delay_s=0.05, lmo=4, fup=True, psm=2)
    sim.plug(Car(max_current_a=16, energy_needed_wh=1e9))
    async with profile_rig(mosquitto, base_topic, sim, enable_mode="neutral") as rig:
        info = bridge_info_topic(rig.root.split("/")[0])

        def warnings(payload: str) -> set[str]:
            return set(json.loads(payload)["chargers"]["c"].get("warnings", {}))

        await rig.probe.wait_for(info, lambda p: warnings(p) == {"lmo", "fup"})
        result = await rig.command("pv/set", '{"grid_w": -5000, "pv_w": 6000}')
        assert result == {"ok": True, "field": "pv", "value": {"grid_w": -5000.0, "pv_w": 6000.0},
                          "error": None}  # fmt: skip
        await until(lambda: sim.is_charging(), what="charging on the surplus")
        await rig.probe.wait_for(f"{rig.root}/model_status", "charging_because_pv_surplus")
        await rig.probe.wait_for(info, lambda p: warnings(p) == set())
        # Default mode ignores the input: now that is warned about
        sim.lmo = 3
        await rig.probe.wait_for(info, lambda p: warnings(p) == {"lmo"})


async def test_pv_input_needs_055_6(mosquitto: Any, base_topic: str) -> None:
    """`ids` from 055.6 (syssi PR #104): older firmware gets no write, and the answer says
    why."""
    sim = SimCharger(profile="v3-055.5", alw_delay_s=0.05, lmo=4, fup=True)
    async with profile_rig(mosquitto, base_topic, sim, enable_mode="neutral") as rig:
        await rig.probe.wait_for(f"{rig.root}/firmware", "055.5")
        result = await rig.command("pv/set", "-3000")
        assert result["ok"] is False
        assert result["error"] == (
            "the PV input (ids) needs firmware 055.6 or later (this charger: 055.5)"
        )
        assert rig.writes("ids") == []


async def test_pv_input_stops_after_the_charger_rejects_it(mosquitto: Any, base_topic: str) -> None:
    """A charger that answers `ids` with an error gets no write every 4 s from then on: one
    write, the reason on `result`, and the next pv/set answered without writing."""
    no_ids = replace(profiles.get("v3-056"), name="v3-056-no-ids", lacks=frozenset({"ids"}))
    sim = SimCharger(profile=no_ids, alw_delay_s=0.05)
    async with profile_rig(mosquitto, base_topic, sim) as rig:
        await rig.probe.wait_for(f"{rig.root}/firmware", "56.9")
        result = await rig.command("pv/set", "-3000")
        assert result["ok"] is False and result["error"] == "rejected: ids: unknown api key"
        again = await rig.command("pv/set", "-3100")
        assert again["ok"] is False and again["error"] == "rejected: ids: unknown api key"
        await until(lambda: rig.runtime.pv_input.value is None, what="stopped")
        assert len(rig.writes("ids")) == 1


# --------------------------------------------------------------------------- V3 legacy API


async def test_v3_052_legacy_api_powers_in_watts_are_kept(mosquitto: Any, base_topic: str) -> None:
    """fw 52.2's legacy API v1 sends nrg currents in A and powers in W (go-eCharger-API-v1
    #100): told from P ≈ U·I·pf, published as measured instead of dropped."""
    sim = SimCharger(profile="v3-052", legacy_v1=True, alw_delay_s=0.05)
    sim.plug(Car(max_current_a=15, energy_needed_wh=1e9))
    sim.set_v2({"frc": "2", "amp": "15"})
    async with profile_rig(mosquitto, base_topic, sim, api="v1") as rig:
        await rig.probe.wait_for(f"{rig.root}/current_l1_a", "15")
        await rig.probe.wait_for(f"{rig.root}/power_l1_w", "3450")
        await rig.probe.wait_for(f"{rig.root}/power_w", lambda p: abs(number(p) - 10350) < 20)
        await rig.probe.wait_for(f"{rig.root}/phases_in_use", "3")


# --------------------------------------------------------------------------- V3 051.x


async def test_alw_lagging_frc_by_seconds_costs_no_second_write(
    mosquitto: Any, base_topic: str
) -> None:
    """On 051.4 `alw` follows `frc` after several seconds (go-eCharger-API-v2 #5): the
    bridge verifies `frc` and writes it once."""
    sim = SimCharger(profile="v3-051")
    sim.plug(Car(max_current_a=16, energy_needed_wh=1e9))
    sim.set_v2({"frc": "1"})
    async with profile_rig(mosquitto, base_topic, sim) as rig:
        await rig.command("allow_charging/set", "true")
        await rig.probe.wait_for(f"{rig.root}/allow_charging", "true")
        await rig.probe.wait_for(f"{rig.root}/control/in_sync", "true")
        assert rig.writes("frc") == [1, 2]  # the test's own 1, then the bridge's 2
        assert rig.runtime.reconciler.writes_failed == 0


@pytest.mark.parametrize(("profile", "fault"), [("v3-051", "api_lock"), ("v4-60", "hang")])
async def test_a_locked_api_is_offline_with_the_way_out(
    mosquitto: Any, base_topic: str, profile: str, fault: str
) -> None:
    """ "couldn't take api lock in 3s" until a power cycle (go-eCharger-API-v1 #64, #70); a
    REST API that stops answering until a reboot (marq24 #82, go-eCharger-API-v2 #299)."""
    sim = SimCharger(profile=profile, alw_delay_s=0.05)
    async with profile_rig(mosquitto, base_topic, sim) as rig:
        mark = rig.probe.mark()
        sim.inject(fault)
        await rig.probe.wait_for(f"{rig.root}/availability", "offline", since=mark)
        if fault == "api_lock":
            assert "power cycle" in (rig.runtime.poller.last_error or "")
        sim.reboot()
        await rig.probe.wait_for(f"{rig.root}/availability", "online", since=mark)


async def test_no_mqtt_result_before_051_5_is_no_failed_write(
    mosquitto: Any, base_topic: str
) -> None:
    """Before 051.5 the charger applies an MQTT write and answers no `result`
    (go-eCharger-API-v2 mqtt-de.md): the write is verified on the key's own topic."""
    import uuid

    from bridge.simulator.mqtt import MqttFrontend

    serial = uuid.uuid4().hex[:6]
    sim = SimCharger(profile="v3-051", serial=serial, alw_delay_s=0.05)
    sim.plug(Car(max_current_a=16, energy_needed_wh=1e9))
    sim.set_v2({"frc": "1"})
    charger = {
        "id": "c",
        "connection": {"type": "mqtt", "broker": "test", "serial": serial, "timeout_s": 30},
        "limits": {"max_current_a": 16},
        "control": {"source": "mqtt", "min_command_interval_s": 0},
    }
    cfg = make_config(mosquitto, base_topic, [charger])
    root = f"{base_topic}/c"
    async with (
        MqttFrontend(sim, mosquitto.host, mosquitto.port),
        running_bridge(cfg) as bridge,
        Probe(mosquitto.host, mosquitto.port, f"{base_topic}/#") as probe,
    ):
        rig = Rig(sim, probe, bridge, root)
        await probe.wait_for(f"{root}/availability", "online")
        await rig.command("allow_charging/set", "true")
        await until(lambda: sim.frc == 2, what="frc=2 applied")
        await probe.wait_for(f"{root}/control/in_sync", "true")
        assert rig.runtime.reconciler.writes_failed == 0


# --------------------------------------------------------------------------- PRO 60.3


async def test_http_400_with_the_data_is_the_status(mosquitto: Any, base_topic: str) -> None:
    """A PRO on 60.3 answers the full status, and a filter with `cbl` (which it does not
    have), with HTTP 400 and the JSON (go-eCharger-API-v2 #312, one report)."""
    sim = SimCharger(profile="pro-60", alw_delay_s=0.05)
    sim.plug(Car(max_current_a=16, energy_needed_wh=1e9))
    async with profile_rig(mosquitto, base_topic, sim) as rig:
        await rig.probe.wait_for(f"{rig.root}/hardware", "go-eCharger_Phoenix")
        await rig.probe.wait_for(f"{rig.root}/car_state", "charging")


# --------------------------------------------------------------------------- car codes


async def test_car_codes_that_say_nothing_about_the_plug_hold_it(
    mosquitto: Any, base_topic: str
) -> None:
    """car 5 (Error), null (no charge controller), 6 (Initializing after a reboot on 60.x)
    and the car=3 a plug-in goes through: none of them is an unplug."""
    sim = SimCharger(profile="v4-60", alw_delay_s=0.05)
    sim.plug(Car(max_current_a=16, energy_needed_wh=1e9, wake_s=1.0))
    async with profile_rig(mosquitto, base_topic, sim) as rig:
        await rig.probe.wait_for(f"{rig.root}/car_state", "charging")
        mark = rig.probe.mark()
        for code, state in ((5, "error"), ("null", "unknown"), (0, "unknown")):
            sim.charge_ctrl_fault(code)
            await rig.probe.wait_for(f"{rig.root}/car_state", state, since=mark)
        sim.charge_ctrl_fault(None)
        sim.reboot()
        await rig.probe.wait_for(f"{rig.root}/car_state", "initializing", since=mark)
        await rig.probe.wait_for(f"{rig.root}/car_state", "charging", since=mark)
        assert "false" not in rig.since(mark, "plugged")
        assert "" not in rig.since(mark, "plugged")


# --------------------------------------------------------------------------- go-e cloud v1


async def test_cloud_v1_writes_send_the_payload_raw() -> None:
    """`payload=amx=16` with a raw `=`, as go-e's example and evcc send it; a URL-encoded
    `amx%3D16` is not what the cloud documents."""
    state = CloudState(SimCharger(profile="v2-041", serial="012345"), "tok")
    async with CloudFrontend(state) as fe:
        transport = CloudV1Transport("tok", base_url=fe.url)
        try:
            await transport.write({"amx": 12})
        finally:
            await transport.close()
        assert [(w.key, w.value, w.accepted) for w in state.charger.writes] == [("amx", 12, True)]
