"""The bridge end to end over each connection type: cloud v1, cloud v2, go-e MQTT v1/v2."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from bridge.goe.model import ApiVersion
from bridge.simulator.charger import SimCharger
from bridge.simulator.cloud import CloudFrontend, CloudState
from bridge.simulator.mqtt import MqttFrontend
from tests.bridge_helpers import make_config, running_bridge
from tests.mqtt_helpers import Probe, until

TOKEN = "e2e-token-123"


def charger(cid: str, connection: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": cid,
        "connection": connection,
        "limits": {"max_current_a": 16},
        "control": {"source": "mqtt", "min_command_interval_s": 0},
    }


@pytest.mark.parametrize("api", [ApiVersion.V1, ApiVersion.V2])
async def test_cloud_connection(
    mosquitto: Any, base_topic: str, api: ApiVersion, tmp_path: Path
) -> None:
    sim = SimCharger(api=api, serial="012345", alw_delay_s=0.05)
    sim.plug()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    async with CloudFrontend(CloudState(sim, TOKEN)) as cloud:
        conn = {"type": "cloud", "api": api.value, "serial": "012345", "token_file": str(token_file),
                "base_url": cloud.url, "poll_interval_s": 1}  # fmt: skip
        cfg = make_config(mosquitto, base_topic, [charger("c", conn)])
        async with (
            running_bridge(cfg),
            Probe(mosquitto.host, mosquitto.port, f"{base_topic}/#") as probe,
        ):
            await probe.wait_for(f"{base_topic}/c/availability", "online")
            await probe.wait_for(f"{base_topic}/c/data_age_s")
            info = json.loads((await probe.wait_for(f"{base_topic}/bridge/info")).payload)
            assert info["chargers"]["c"]["type"] == "cloud"
            await probe.publish(
                f"{base_topic}/c/set", '{"allow_charging": true, "current_limit_a": 9}'
            )
            await until(lambda: sim.amp == 9, what="current via the cloud")
            assert {w.via for w in sim.writes} == {f"cloud-{api.value}"}
            await probe.wait_for(f"{base_topic}/c/control/in_sync", "true")
            assert all(TOKEN not in m.payload for m in probe.messages)


@pytest.mark.parametrize(
    ("api", "prefix"), [(ApiVersion.V2, "/go-eCharger"), (ApiVersion.V1, "go-eCharger")]
)
async def test_goe_mqtt_connection(
    mosquitto: Any, base_topic: str, api: ApiVersion, prefix: str
) -> None:
    serial = uuid.uuid4().hex[:6]
    sim = SimCharger(api=api, serial=serial, alw_delay_s=0.05)
    sim.plug()
    conn = {"type": "mqtt", "serial": serial, "prefix": "go-eCharger", "timeout_s": 10}
    cfg = make_config(mosquitto, base_topic, [charger("m", conn)])
    async with (
        running_bridge(cfg),
        Probe(mosquitto.host, mosquitto.port, f"{base_topic}/#") as probe,
    ):
        async with MqttFrontend(
            sim, mosquitto.host, mosquitto.port, prefix=prefix, v1_interval_s=0.5
        ):
            await probe.wait_for(f"{base_topic}/m/availability", "online")
            await probe.wait_for(f"{base_topic}/m/api_version", api.value)
            await probe.publish(
                f"{base_topic}/m/set", '{"allow_charging": true, "current_limit_a": 7}'
            )
            await until(lambda: sim.amp == 7, what="current via go-e MQTT")
            assert {w.via for w in sim.writes} == {f"mqtt-{api.value}"}
            await probe.wait_for(f"{base_topic}/m/current_limit_a", "7")
            # push: a change at the charger is published without waiting for a poll
            mark = probe.mark()
            sim.unplug()
            await probe.wait_for(f"{base_topic}/m/plugged", "false", since=mark)
        # the charger goes quiet: unavailable after connection.timeout_s
        await probe.wait_for(f"{base_topic}/m/availability", "offline", timeout=20)
