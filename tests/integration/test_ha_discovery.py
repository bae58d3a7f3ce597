"""Home Assistant device discovery over a bridge's life, with a real mosquitto and the
simulator: nothing is invented while the charger has never answered, capabilities (not one
status) decide the components, and components that are gone — after a control-source change
or once the API version is known — are deleted the way Home Assistant documents: the
component id with only its platform. Every document is checked against the discovery rules."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bridge.goe.model import ApiVersion
from bridge.simulator.charger import SimCharger
from bridge.simulator.http import HttpFrontend
from tests.bridge_helpers import http_charger, make_config, running_bridge
from tests.mqtt_helpers import Probe, run_mosquitto, until

# https://www.home-assistant.io/integrations/mqtt/#device-discovery-payload: per platform, the
# keys a component needs (abbreviated or not)
REQUIRED = {
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
    "switch": {"command_topic"},
    "number": {"command_topic"},
    "select": {"command_topic", "options"},
}


# Option names (or their documented abbreviations) Home Assistant's MQTT discovery knows, as far
# as the bridge uses them: a typo here would be silently ignored by Home Assistant.
TOP_KEYS = {"dev", "o", "cmps", "availability", "availability_mode", "qos"}
DEVICE_KEYS = {"ids", "name", "mf", "mdl", "sw", "sn", "via_device"}
COMPONENT_KEYS = {
    "p", "name", "unique_id", "state_topic", "command_topic", "device_class",
    "unit_of_measurement", "state_class", "entity_category", "enabled_by_default", "options",
    "value_template", "payload_on", "payload_off", "state_on", "state_off", "min", "max", "step",
    "mode", "qos", "json_attributes_topic", "availability",
}  # fmt: skip


def check_document(doc: dict[str, Any]) -> list[str]:
    problems = [f"unknown top-level key {k}" for k in doc if k not in TOP_KEYS]
    problems += [f"unknown device key {k}" for k in doc.get("dev", {}) if k not in DEVICE_KEYS]
    for cid, comp in doc.get("cmps", {}).items():
        problems += [f"{cid}: unknown key {k}" for k in comp if k not in COMPONENT_KEYS]
    for key in ("dev", "o", "cmps"):
        if key not in doc:
            problems.append(f"missing {key}")
    if not doc.get("dev", {}).get("ids"):
        problems.append("dev.ids missing")
    for cid, comp in doc.get("cmps", {}).items():
        platform = comp.get("p")
        if platform not in REQUIRED:
            problems.append(f"{cid}: unknown platform {platform!r}")
            continue
        if set(comp) == {"p"}:
            continue  # the removal form
        missing = REQUIRED[platform] - set(comp)
        if missing:
            problems.append(f"{cid}: missing {sorted(missing)}")
        if comp.get("unique_id") != cid:
            problems.append(f"{cid}: unique_id differs")
        if "command_topic" in comp and comp.get("qos") != 1:
            problems.append(f"{cid}: a command without qos 1")
    return problems


def config_topic(cid: str) -> str:
    return f"homeassistant/device/goe_bridge_{cid}/config"


def documents(probe: Probe, cid: str, since: int) -> list[str]:
    return [m.payload for m in probe.messages[since:] if m.topic == config_topic(cid) and m.payload]


async def last_document(probe: Probe, cid: str, since: int = 0) -> dict[str, Any]:
    seen = await probe.wait_for(config_topic(cid), lambda p: bool(p), since=since)
    doc = json.loads(seen.payload)
    assert check_document(doc) == [], check_document(doc)
    return doc


async def test_unreachable_at_start_announces_nothing_then_what_the_charger_has(
    mosquitto: Any, base_topic: str
) -> None:
    sim = SimCharger(api=ApiVersion.V1)
    sim.inject("timeout", 10**9, 1.0)
    async with HttpFrontend(sim) as fe:
        charger = http_charger("u", fe.port)
        charger["connection"]["timeout_s"] = 0.3
        cfg = make_config(mosquitto, base_topic, [charger])
        async with (
            Probe(mosquitto.host, mosquitto.port, "homeassistant/#") as probe,
            running_bridge(cfg),
        ):
            await probe.wait_for(f"homeassistant/device/goe_bridge_{base_topic}/config")
            await asyncio.sleep(1.5)
            assert probe.values(config_topic("u")) == []  # nothing invented
            sim.clear_faults()
            doc = await last_document(probe, "u")
    cmps = doc["cmps"]
    platforms = {cid.removeprefix("goe_bridge_u_"): c["p"] for cid, c in cmps.items()}
    assert platforms["current_limit_a"] == "number" and "phases" not in platforms  # API v1
    assert "effective_current_a" not in platforms and "frequency_hz" not in platforms
    assert platforms["power_w"] == "sensor"


async def test_a_v2_charger_gets_the_fields_that_are_null_at_times(
    mosquitto: Any, base_topic: str
) -> None:
    sim = SimCharger(api=ApiVersion.V2)  # idle: acu is null, no card, no cable
    async with HttpFrontend(sim) as fe:
        cfg = make_config(mosquitto, base_topic, [http_charger("v", fe.port)])
        async with (
            Probe(mosquitto.host, mosquitto.port, "homeassistant/#") as probe,
            running_bridge(cfg),
        ):
            doc = await last_document(probe, "v")
    cmps = doc["cmps"]
    assert "goe_bridge_v_effective_current_a" in cmps
    assert cmps["goe_bridge_v_phases"]["options"] == ["auto", "1", "3"]


async def test_a_control_source_change_deletes_the_controls(
    mosquitto: Any, base_topic: str
) -> None:
    sim = SimCharger(api=ApiVersion.V2)
    async with HttpFrontend(sim) as fe:
        controlled = make_config(mosquitto, base_topic, [http_charger("s", fe.port)])
        read_only = make_config(mosquitto, base_topic, [http_charger("s", fe.port, source="none")])
        async with Probe(mosquitto.host, mosquitto.port, "homeassistant/#") as probe:
            async with running_bridge(controlled):
                doc = await last_document(probe, "s")
                assert doc["cmps"]["goe_bridge_s_current_limit_a"]["p"] == "number"
            since = probe.mark()
            async with running_bridge(read_only) as bridge:
                await until(lambda: any(
                    '"goe_bridge_s_phases":{"p":"select"}' in p.replace(" ", "")
                    for p in documents(probe, "s", since)
                ), what="the removal form")  # fmt: skip
                await asyncio.sleep(1.0)
                docs = [json.loads(p) for p in documents(probe, "s", since)]
                final = docs[-1]
                assert check_document(final) == []
                assert final["cmps"]["goe_bridge_s_phases"] == {"p": "select"}
                assert final["cmps"]["goe_bridge_s_allow_charging"] == {"p": "switch"}
                assert final["cmps"]["goe_bridge_s_current_limit_a"] == {"p": "number"}
                assert final["cmps"]["goe_bridge_s_allow_charging_state"]["p"] == "binary_sensor"
                assert final["cmps"]["goe_bridge_s_current_limit_a_state"]["p"] == "sensor"
                assert final["cmps"]["goe_bridge_s_phases_state"]["p"] == "sensor"
                # what a read-only charger has no use for is gone with the controls
                assert final["cmps"]["goe_bridge_s_control_in_sync"] == {"p": "binary_sensor"}
                assert bridge.chargers["s"].announced.get("goe_bridge_s_phases") is None
            # a third start finds the removal form: the pair again (for a Home Assistant that
            # is up and will not send a birth), until Home Assistant's next birth
            since = probe.mark()
            async with running_bridge(read_only):
                await last_document(probe, "s", since=since)
                await asyncio.sleep(1.0)
                assert len(documents(probe, "s", since)) <= 3
                await probe.publish("homeassistant/status", "online")
                await asyncio.sleep(1.0)
            # told after a birth: gone for good, no further rounds
            since = probe.mark()
            async with running_bridge(read_only):
                await last_document(probe, "s", since=since)
                await asyncio.sleep(1.0)
            assert len(documents(probe, "s", since)) == 1
            assert "goe_bridge_s_phases" not in json.loads(documents(probe, "s", since)[0])["cmps"]


async def test_home_assistant_coming_online_gets_the_discovery_again(
    mosquitto: Any, base_topic: str
) -> None:
    sim = SimCharger(api=ApiVersion.V2)
    async with HttpFrontend(sim) as fe:
        cfg = make_config(mosquitto, base_topic, [http_charger("h", fe.port)])
        async with (
            Probe(mosquitto.host, mosquitto.port, "homeassistant/#") as probe,
            running_bridge(cfg),
        ):
            first = await last_document(probe, "h")
            since = probe.mark()
            await probe.publish("homeassistant/status", "online")  # HA restarted
            again = await last_document(probe, "h", since=since)
            assert again == first
            await probe.wait_for(
                f"homeassistant/device/goe_bridge_{base_topic}/config", since=since
            )


async def test_a_broker_that_lost_everything_gets_the_device_configs_again(
    base_topic: str,
) -> None:
    """The device configs are not kept for the link's replay (17 kB each); they are built
    again after every reconnect, so a broker restarted without persistence has them back."""
    sim = SimCharger(api=ApiVersion.V2)
    with run_mosquitto() as broker:
        async with HttpFrontend(sim) as fe:
            cfg = make_config(broker, base_topic, [http_charger("r", fe.port)])
            async with running_bridge(cfg) as bridge:
                async with Probe(broker.host, broker.port, "homeassistant/#") as probe:
                    first = await last_document(probe, "r")
                link = bridge.links["test"]
                broker.stop()  # no persistence: every retained message is gone
                await until(lambda: not link.connected.is_set(), what="disconnect")
                broker.start()
                await until(lambda: link.connected.is_set(), timeout=30, what="reconnect")
                # a new subscriber gets what the broker holds as retained
                async with Probe(broker.host, broker.port, "homeassistant/#") as probe:
                    assert await last_document(probe, "r") == first
                    await probe.wait_for(f"homeassistant/device/goe_bridge_{base_topic}/config")


def live_documents(probe: Probe, cid: str, since: int = 0) -> list[str]:
    """What the bridge published while we listened (not the retained copy of the last run)."""
    return [m.payload for m in probe.messages[since:]
            if m.topic == config_topic(cid) and not m.retain]  # fmt: skip


def dead(doc: dict[str, Any]) -> bool:
    """Every component of a config in the valid form on topics nothing publishes to."""
    return bool(doc["cmps"]) and all(
        c.get("state_topic", "").endswith("/bridge/removed") for c in doc["cmps"].values()
    )


async def test_a_device_removed_while_home_assistant_was_away_is_removed_at_its_birth(
    mosquitto: Any, base_topic: str
) -> None:
    """Home Assistant acts on a removal only for what it discovered since its own start: a
    charger dropped from the config while it was down is announced once more in a valid form
    and then removed, at the bridge's start and again after Home Assistant's birth (then the
    retained config is deleted). Checked against Home Assistant 2026.11 (see the closing
    note of issue 26); here the messages, in their order."""
    sim = SimCharger(api=ApiVersion.V2)
    async with HttpFrontend(sim) as fe:
        both = make_config(mosquitto, base_topic, [http_charger("gone", fe.port),
                                                   http_charger("kept", fe.port)])  # fmt: skip
        async with running_bridge(both) as bridge:
            await until(lambda: bridge.chargers["gone"].status is not None, what="status")
            await asyncio.sleep(0.5)
        one = make_config(mosquitto, base_topic, [http_charger("kept", fe.port)])
        async with (
            Probe(mosquitto.host, mosquitto.port, "homeassistant/#") as probe,
            running_bridge(one),
        ):
            await until(lambda: len(live_documents(probe, "gone")) >= 2, what="the pair")
            first, second = (json.loads(p) for p in live_documents(probe, "gone")[:2])
            assert dead(first) and check_document(first) == []
            assert all(c == {"p": c["p"]} for c in second["cmps"].values())
            assert set(first["cmps"]) == set(second["cmps"])
            # Home Assistant starts: the pair again, then the config goes
            since = probe.mark()
            await probe.publish("homeassistant/status", "online")
            await until(lambda: [m.payload for m in probe.messages[since:]
                                     if m.topic == config_topic("gone")][-1:] == [""],
                            what="the empty config")  # fmt: skip
            payloads = [m.payload for m in probe.messages[since:]
                            if m.topic == config_topic("gone")]  # fmt: skip
            assert dead(json.loads(payloads[0])) and payloads[-1] == ""


async def test_components_removed_while_home_assistant_was_away_reach_it_at_its_birth(
    mosquitto: Any, base_topic: str
) -> None:
    sim = SimCharger(api=ApiVersion.V2)
    async with HttpFrontend(sim) as fe:
        controlled = make_config(mosquitto, base_topic, [http_charger("t", fe.port)])
        read_only = make_config(mosquitto, base_topic, [http_charger("t", fe.port,
                                                                      source="none")])  # fmt: skip
        async with running_bridge(controlled) as bridge:
            await until(lambda: bridge.chargers["t"].status is not None, what="status")
            await asyncio.sleep(0.5)
        async with (
            Probe(mosquitto.host, mosquitto.port, "homeassistant/#") as probe,
            running_bridge(read_only),
        ):
            await until(lambda: any('"goe_bridge_t_phases":{"p":"select"}' in p.replace(" ", "")
                                        for p in live_documents(probe, "t")),
                            what="the removal form")  # fmt: skip
            since = probe.mark()
            await probe.publish("homeassistant/status", "online")
            await until(lambda: len(documents(probe, "t", since)) >= 3, what="three")
            docs = [json.loads(p) for p in documents(probe, "t", since)]
            first = docs[0]
            assert first["cmps"]["goe_bridge_t_phases"]["state_topic"].endswith("/bridge/removed")
            assert first["cmps"]["goe_bridge_t_phases"]["options"] == ["-"]
            assert docs[1]["cmps"]["goe_bridge_t_phases"] == {"p": "select"}
            final = docs[-1]
            assert "goe_bridge_t_phases" not in final["cmps"]  # dropped once told
            assert check_document(final) == []


async def test_a_field_empty_after_a_restart_keeps_its_entity(
    mosquitto: Any, base_topic: str
) -> None:
    """No history gap: an entity announced before stays while its field is empty (a card
    that was there, a cable current without a car), as long as the charger's API has it."""
    sim = SimCharger(api=ApiVersion.V1)
    sim.plug()
    sim.card_names = ["04a1b2c3"] if hasattr(sim, "card_names") else []
    async with HttpFrontend(sim) as fe:
        cfg = make_config(mosquitto, base_topic, [http_charger("k", fe.port)])
        async with Probe(mosquitto.host, mosquitto.port, "homeassistant/#") as probe:
            async with running_bridge(cfg):
                doc = await last_document(probe, "k")
            before = set(doc["cmps"])
            assert "goe_bridge_k_cable_current_a" in before
            sim.unplug()  # no car, no cable current in the next first status
            since = probe.mark()
            async with running_bridge(cfg):
                doc = await last_document(probe, "k", since=since)
        assert before <= set(doc["cmps"])
        assert doc["cmps"]["goe_bridge_k_cable_current_a"]["p"] == "sensor"
