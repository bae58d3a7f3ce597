"""The shipped Node-RED flow in real Node-RED: installed from npm (cached), the flow imported
through Node-RED's admin API as docs/node-red.md says (the tab's environment variables and the
broker node changed, nothing else), its buttons pressed through the admin API, and what its
debug nodes show read from the editor's own websocket. The bridge runs as a subprocess against
a real mosquitto and the simulator."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from bridge.goe.model import ApiVersion
from bridge.simulator.charger import Car, SimCharger
from bridge.simulator.http import HttpFrontend
from tests.conftest import ROOT, free_port
from tests.mqtt_helpers import until
from tests.system.test_cli import goe_bridge
from tests.system.test_packaging import contract_topic

NODE_RED = "4.1.15"
NPM = shutil.which("npm")
FLOW = ROOT / "examples" / "node-red" / "goe-bridge-flow.json"

pytestmark = pytest.mark.skipif(NPM is None, reason="npm is not installed: no Node-RED to test")


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "goe-bridge-tests" / f"node-red-{NODE_RED}"


def install_node_red() -> Path:
    """node-red from npm into the cache (once per version): its red.js."""
    target = cache_dir()
    red = target / "node_modules" / "node-red" / "red.js"
    if red.exists():
        return red
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="node-red-", dir=target.parent))
    result = subprocess.run(
        [NPM or "npm", "install", "--prefix", str(staging), "--no-audit", "--no-fund",
         "--loglevel=error", f"node-red@{NODE_RED}"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    staging.rename(target)
    return red


class NodeRed:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session
        self.debug: list[dict[str, Any]] = []

    async def deploy(self, flow: list[dict[str, Any]]) -> None:
        async with self.session.post(
            f"{self.url}/flows", json=flow, headers={"Node-RED-Deployment-Type": "full"}
        ) as response:
            assert response.status in (200, 204), await response.text()

    async def press(self, node_id: str) -> None:
        async with self.session.post(f"{self.url}/inject/{node_id}") as response:
            assert response.status == 200, await response.text()

    async def watch(self) -> None:
        async with self.session.ws_connect(f"{self.url}/comms") as ws:
            await ws.send_json({"subscribe": "debug"})
            async for message in ws:
                for event in json.loads(message.data):
                    if event.get("topic") == "debug":
                        self.debug.append(event["data"])

    def shown(self, debug_name: str) -> list[tuple[str, Any]]:
        """(msg.topic, payload) of every message a debug node showed."""
        out = []
        for data in self.debug:
            if data.get("name") == debug_name:
                form = data.get("format", "")
                if form == "null":
                    value = None
                elif form.startswith("string"):
                    value = data["msg"]
                else:  # number, boolean, Object: the editor gets them as JSON
                    value = json.loads(data["msg"])
                out.append((data.get("topic"), value))
        return out


@pytest.fixture
async def node_red(tmp_path: Path) -> AsyncIterator[NodeRed]:
    red = await asyncio.to_thread(install_node_red)
    port = free_port()
    user_dir = tmp_path / "node-red"
    user_dir.mkdir()
    (user_dir / "settings.js").write_text(
        "module.exports = {uiHost: '127.0.0.1', flowFile: 'flows.json',"
        " diagnostics: {enabled: false}, telemetry: {enabled: false},"
        " editorTheme: {tours: false}, logging: {console: {level: 'warn'}}};\n"
    )
    log = (tmp_path / "node-red.log").open("w")
    proc = await asyncio.create_subprocess_exec(
        "node", str(red), "--userDir", str(user_dir), "--port", str(port),
        stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:

            async def admin_api_up() -> bool:
                try:
                    async with session.get(f"{url}/flows") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            # Node-RED starts in about a second here; on a loaded machine it may take much
            # longer: only a process that ended or two minutes of silence is a failure
            deadline = asyncio.get_running_loop().time() + 120
            while asyncio.get_running_loop().time() < deadline:
                if proc.returncode is not None or await admin_api_up():
                    break
                await asyncio.sleep(0.1)
            assert await admin_api_up(), (tmp_path / "node-red.log").read_text()[-3000:]
            yield NodeRed(url, session)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


def user_edits(flow: list[dict[str, Any]], broker: Any, base: str, charger: str) -> None:
    """What docs/node-red.md has a user change: the tab's two environment variables and the
    broker config node's address."""
    (tab,) = [n for n in flow if n["type"] == "tab"]
    env = {item["name"]: item for item in tab["env"]}
    assert set(env) == {"GOE_BASE", "GOE_CHARGER"}
    env["GOE_BASE"]["value"] = base
    env["GOE_CHARGER"]["value"] = charger
    (config,) = [n for n in flow if n["type"] == "mqtt-broker"]
    config["broker"], config["port"] = broker.host, str(broker.port)


def test_the_flow_names_the_charger_in_one_place() -> None:
    flow = json.loads(FLOW.read_text())
    text = json.dumps([n for n in flow if n["type"] != "tab"])
    assert "garage" not in text  # only in the tab's environment variables
    for node in flow:
        if node["type"] in ("mqtt in", "mqtt out"):
            assert node["topic"] == "", node  # built from the tab's environment
        for outputs in node.get("wires", []):
            assert set(outputs) <= {n["id"] for n in flow}
    # every topic it subscribes to or sends on is one of the bridge's
    (subscribe,) = [n for n in flow if n["id"] == "goe_subscribe"]
    fields = re.findall(r"'(\w+)'", subscribe["func"].split("fields = ", 1)[1].split(";")[0])
    assert "power_w" in fields and "result" in fields
    for field in fields:
        assert contract_topic(f"goe/garage/{field}"), field
    for node in flow:
        if node["type"] == "inject" and node.get("wires") == [["goe_command"]]:
            assert contract_topic(f"goe/garage/{node['topic']}/set"), node["topic"]


@pytest.mark.xdist_group("peers")  # the real peers take turns: each is a CPU-heavy Node.js
@pytest.mark.timeout(300)  # Node-RED starting on a loaded machine is no hang
async def test_the_shipped_flow_in_real_node_red(
    node_red: NodeRed, mosquitto: Any, tmp_path: Path, base_topic: str
) -> None:
    charger_id = "carport"
    sim = SimCharger(api=ApiVersion.V2, alw_delay_s=0.05, phase_switch_pause_s=0.2)
    async with HttpFrontend(sim) as fe:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(yaml.safe_dump({
            "brokers": {"home": {"host": mosquitto.host, "port": mosquitto.port}},
            "publish": {"base_topic": base_topic, "home_assistant": {"enabled": False}},
            "chargers": [{"id": charger_id,
                          "connection": {"type": "http", "host": "127.0.0.1", "port": fe.port,
                                         "poll_interval_s": 0.5},
                          "control": {"source": "mqtt", "min_command_interval_s": 0,
                                      "phase_switch_min_interval_s": 0}}],
        }))  # fmt: skip
        flow = json.loads(FLOW.read_text())
        user_edits(flow, mosquitto, base_topic, charger_id)
        watcher = asyncio.create_task(node_red.watch())
        await node_red.deploy(flow)
        log = (tmp_path / "bridge.log").open("w")
        bridge = subprocess.Popen([*goe_bridge(), "run", "-c", str(cfg)], stdout=log, stderr=log)  # noqa: ASYNC220
        try:
            prefix = f"{base_topic}/{charger_id}"

            def values(field: str) -> list[Any]:
                return [v for t, v in node_red.shown("values") if t == f"{prefix}/{field}"]

            await until(lambda: node_red.shown("reachable")[-1:] == [(f"{prefix}/reachable", True)],
                        timeout=30, what="reachable = true in Node-RED")  # fmt: skip
            await until(lambda: values("power_w"), what="power_w in Node-RED")
            assert values("power_w")[-1] == 0 and values("car_state")[-1] == "idle"
            assert values("phases")[-1] == "auto" and values("allow_charging")[-1] is True

            sim.plug(Car(max_current_a=16, phases=3, energy_needed_wh=40_000))
            await node_red.press("goe_set_10")
            await until(lambda: sim.amp == 10, what="10 A at the charger")
            await until(lambda: values("current_limit_a")[-1:] == [10], what="10 A shown")
            results = [v for _, v in node_red.shown("command results")]
            assert results[-1] == {"ok": True, "field": "current_limit_a", "value": 10,
                                   "error": None}  # fmt: skip
            await until(lambda: (values("power_w") or [0])[-1] > 0, what="charging power")

            await node_red.press("goe_phases_1")
            await until(lambda: sim.psm == 1, what="one phase at the charger")
            await until(lambda: values("phases")[-1:] == ["1"], what="phases '1' (text)")
            await node_red.press("goe_phases_auto")
            await until(lambda: values("phases")[-1:] == ["auto"], what="phases 'auto'")

            # not charging: the effective current is cleared, shown as null (not "")
            await node_red.press("goe_stop_charging")
            await until(lambda: values("allow_charging")[-1:] == [False], what="stopped")
            await until(lambda: values("power_w")[-1:] == [0], what="no power")
            cleared = values("effective_current_a")
            assert "" not in cleared
            await until(lambda: values("effective_current_a")[-1:] == [None],
                        what="effective current cleared → null")  # fmt: skip
        finally:
            bridge.send_signal(signal.SIGTERM)
            await asyncio.to_thread(bridge.wait, 20)
            log.close()
        await until(lambda: node_red.shown("reachable")[-1:] == [(f"{prefix}/reachable", False)],
                    what="reachable = false after the bridge stopped")  # fmt: skip
        watcher.cancel()
