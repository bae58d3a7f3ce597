"""The published contract (docs/design.md#contract), checked by a subscriber on a real mosquitto,
for a v1 and a v2 charger served by the simulator over real HTTP."""

from __future__ import annotations

import asyncio
import json

import pytest

from bridge.goe.model import SECRET_KEYS, ApiVersion
from bridge.simulator.charger import SimCharger
from bridge.simulator.http import HttpFrontend
from tests.bridge_helpers import http_charger, make_config, running_bridge
from tests.mqtt_helpers import Probe, until

V2_FIELDS = {
    "api_version", "car_state", "car", "plugged", "charging", "allow_charging", "force_state",
    "error", "error_code", "model_status", "model_status_code", "current_limit_a",
    "max_current_a", "power_w", "power_l1_w", "power_l2_w", "power_l3_w", "power_n_w",
    "current_l1_a", "current_l2_a", "current_l3_a", "voltage_l1_v", "voltage_l2_v",
    "voltage_l3_v", "voltage_n_v", "power_factor_l1_pct", "power_factor_l2_pct",
    "power_factor_l3_pct", "power_factor_n_pct", "phases_in_use", "phases",
    "phase_l1_available", "phase_l2_available", "phase_l3_available", "energy_total_wh",
    "energy_session_wh", "temperature_c", "firmware", "serial", "hardware", "variant_kw",
    "wifi_rssi_dbm", "frequency_hz", "energy_session_charger_wh", "meter_fault",
    "access_control", "session_authorized",
}  # fmt: skip
V1_FIELDS = V2_FIELDS - {
    "access_control", "session_authorized", "force_state", "model_status", "model_status_code", "hardware", "variant_kw",
    "wifi_rssi_dbm", "frequency_hz", "phases",
}  # fmt: skip


@pytest.mark.parametrize("api", [ApiVersion.V1, ApiVersion.V2])
async def test_every_topic_payload_and_retain_flag(
    mosquitto, base_topic: str, api: ApiVersion
) -> None:
    sim = SimCharger(api=api, serial="072246", alw_delay_s=0.05)
    async with HttpFrontend(sim) as fe:
        cfg = make_config(mosquitto, base_topic, [http_charger("garage", fe.port)], raw=True)
        async with running_bridge(cfg):
            root = f"{base_topic}/garage"
            async with Probe(mosquitto.host, mosquitto.port, f"{base_topic}/#") as live:
                await live.wait_for(f"{root}/car_state", "idle")
                await live.wait_for(f"{root}/raw/car")
            # A subscriber that arrives now gets the retained state, flagged as retained.
            async with Probe(mosquitto.host, mosquitto.port, f"{base_topic}/#") as probe:
                await probe.wait_for(f"{root}/raw/car")
                await asyncio.sleep(0.5)
                seen = {m.topic: m for m in probe.messages if m.retain}

            # bridge state and info: retained; info is JSON without secrets
            assert seen[f"{base_topic}/bridge/state"].payload == "online"
            assert seen[f"{base_topic}/bridge/state"].retain
            info = json.loads(seen[f"{base_topic}/bridge/info"].payload)
            assert info["version"] and info["chargers"]["garage"]["control"] == "mqtt"
            assert info["chargers"]["garage"]["type"] == "http"
            assert seen[f"{root}/availability"].payload == "online"

            fields = {
                t.removeprefix(root + "/") for t in seen if t.count("/") == 2 and t.startswith(root)
            }
            fields -= {"availability", "result", "set", "memory"}
            # the bridge's own record for its next start (internal, retained JSON)
            memory = seen[f"{root}/memory"]
            assert memory.retain and json.loads(memory.payload)["source"] == "mqtt"
            assert fields == (V2_FIELDS if api is ApiVersion.V2 else V1_FIELDS)
            for name in fields:
                message = seen[f"{root}/{name}"]
                assert message.retain, name
            # payload formats: bare scalars
            assert seen[f"{root}/plugged"].payload == "false"
            assert seen[f"{root}/car_state"].payload == "idle"
            assert seen[f"{root}/voltage_l1_v"].payload == "230"
            assert seen[f"{root}/serial"].payload == "072246"
            assert seen[f"{root}/api_version"].payload == api.value
            # control/*: retained
            assert seen[f"{root}/control/source"].payload == "mqtt"
            assert seen[f"{root}/control/failsafe_active"].payload == "false"
            assert {t for t in seen if "/control/" in t} >= {
                f"{root}/control/source",
                f"{root}/control/failsafe_active",
            }
            # raw mirror: JSON values, secrets never
            raw = {t.rsplit("/", 1)[1]: m for t, m in seen.items() if t.startswith(f"{root}/raw/")}
            assert raw["car"].payload == ("1" if api is ApiVersion.V2 else '"1"')
            if api is ApiVersion.V2:  # the start-up status too, not only the polled keys
                assert raw["oem"].payload == '"go-e"'
            assert not SECRET_KEYS & set(raw)
            for m in probe.messages + live.messages:
                assert "simulated-wifi-key" not in m.payload
                assert "simulated-cloud-key" not in m.payload


async def test_changes_are_published_with_deadband_and_refresh(mosquitto, base_topic: str) -> None:
    sim = SimCharger(api=ApiVersion.V2, alw_delay_s=0.05)
    async with HttpFrontend(sim) as fe:
        cfg = make_config(
            mosquitto, base_topic, [http_charger("c1", fe.port, source="none")], refresh_s=2
        )
        async with (
            running_bridge(cfg),
            Probe(mosquitto.host, mosquitto.port, f"{base_topic}/#") as probe,
        ):
            root = f"{base_topic}/c1"
            await probe.wait_for(f"{root}/car_state", "idle")
            mark = probe.mark()
            sim.plug()
            await probe.wait_for(f"{root}/plugged", "true", since=mark)
            # nothing changes now: the next messages on car_state come from the refresh
            mark = probe.mark()
            await probe.wait_for(f"{root}/voltage_l1_v", "230", since=mark, timeout=10)


async def test_unreachable_charger_goes_offline_and_back(mosquitto, base_topic: str) -> None:
    sim = SimCharger(api=ApiVersion.V2)
    async with HttpFrontend(sim) as fe:
        cfg = make_config(mosquitto, base_topic, [http_charger("c1", fe.port, source="none")])
        async with (
            running_bridge(cfg) as bridge,
            Probe(mosquitto.host, mosquitto.port, f"{base_topic}/#") as probe,
        ):
            avail = f"{base_topic}/c1/availability"
            await probe.wait_for(avail, "online")
            sim.inject("http500", count=1_000_000)
            mark = probe.mark()
            await probe.wait_for(avail, "offline", since=mark)
            runtime = bridge.chargers["c1"]
            assert runtime.poller.failures >= 3  # three failed polls make it offline
            sim.clear_faults()
            await probe.wait_for(avail, "online", since=mark, timeout=40)
            await until(lambda: runtime.available)


async def test_home_assistant_discovery_is_published_and_repeated(
    mosquitto, base_topic: str
) -> None:
    sim = SimCharger(api=ApiVersion.V2, serial="072246")
    prefix = f"ha{base_topic}"
    async with HttpFrontend(sim) as fe:
        cfg = make_config(
            mosquitto, base_topic, [http_charger("garage", fe.port)],
            home_assistant={"enabled": True, "prefix": prefix},
        )  # fmt: skip
        async with (
            running_bridge(cfg),
            Probe(mosquitto.host, mosquitto.port, f"{prefix}/#") as probe,
        ):
            topic = f"{prefix}/device/goe_bridge_garage/config"
            await probe.wait_for(topic, lambda p: '"sn": "072246"' in p)
            async with Probe(mosquitto.host, mosquitto.port, topic) as late:
                first = await late.wait_for(topic, lambda p: '"sn": "072246"' in p)
                assert first.retain
            payload = json.loads(first.payload)
            assert payload["dev"]["mf"] == "go-e"
            assert payload["dev"]["sw"] == "56.9"
            assert payload["dev"]["via_device"] == f"goe_bridge_{base_topic}"
            assert {a["topic"] for a in payload["availability"]} == {
                f"{base_topic}/bridge/state", f"{base_topic}/garage/availability",
            }  # fmt: skip
            mark = probe.mark()
            await probe.publish(f"{prefix}/status", "online")
            await probe.wait_for(topic, since=mark)
            await probe.wait_for(f"{prefix}/device/goe_bridge_{base_topic}/config", since=mark)


async def test_an_unreachable_charger_does_not_stop_the_others(mosquitto, base_topic: str) -> None:
    from tests.conftest import free_port

    dead_port = free_port()
    sim = SimCharger(api=ApiVersion.V2)
    async with HttpFrontend(sim) as fe:
        cfg = make_config(mosquitto, base_topic, [
            http_charger("up", fe.port, source="none"),
            http_charger("down", dead_port, source="none"),
        ])  # fmt: skip
        async with (
            running_bridge(cfg),
            Probe(mosquitto.host, mosquitto.port, f"{base_topic}/#") as probe,
        ):
            await probe.wait_for(f"{base_topic}/up/availability", "online")
            await probe.wait_for(f"{base_topic}/up/power_w")
            await probe.wait_for(f"{base_topic}/down/availability", "offline")
            # the missing charger appears later: it is retried and comes online by itself
            async with HttpFrontend(SimCharger(api=ApiVersion.V1), port=dead_port):
                await probe.wait_for(f"{base_topic}/down/availability", "online", timeout=40)
                await probe.wait_for(f"{base_topic}/down/api_version", "v1")
