"""/healthz, /metrics, `goe-bridge health` and the status page against a running bridge."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bridge.goe.model import ApiVersion
from bridge.simulator.charger import SimCharger
from bridge.simulator.http import HttpFrontend
from tests.conftest import free_port
from tests.system.test_cli import run
from tests.system.test_openwb import bridge_process


def write_config(path: Path, broker: Any, base: str, sim_port: int, http_port: int) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({
        "log": {"level": "info", "format": "json"},
        "brokers": {"home": {"host": broker.host, "port": broker.port}},
        "publish": {"base_topic": base},
        "http": {"enabled": True, "host": "127.0.0.1", "port": http_port},
        "chargers": [{
            "id": "garage",
            "connection": {"type": "http", "host": "127.0.0.1", "port": sim_port, "poll_interval_s": 0.3, "timeout_s": 0.5},
            "control": {"source": "mqtt", "min_command_interval_s": 0},
        }],
    }))  # fmt: skip
    path.chmod(0o600)
    return path


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def fetch(url: str) -> tuple[int, str]:
    return await asyncio.get_running_loop().run_in_executor(None, get, url)


@pytest.fixture
async def sim() -> Any:
    charger = SimCharger(api=ApiVersion.V2, serial="072246", alw_delay_s=0.05)
    charger.plug()
    charger.frc = 2
    async with HttpFrontend(charger) as fe:
        yield charger, fe.port


async def test_health_metrics_and_the_health_command(
    mosquitto: Any, sim: Any, base_topic: str, tmp_path: Path
) -> None:
    charger, sim_port = sim
    http_port = free_port()
    cfg = write_config(tmp_path / "c.yaml", mosquitto, base_topic, sim_port, http_port)
    url = f"http://127.0.0.1:{http_port}"
    with bridge_process(cfg):

        async def healthy() -> bool:
            try:
                return (await fetch(url + "/healthz"))[0] == 200
            except OSError:
                return False

        for _ in range(200):
            if await healthy():
                break
            await asyncio.sleep(0.1)
        code, body = await fetch(url + "/healthz")
        assert code == 200, body
        health = json.loads(body)
        assert health["brokers"]["home"]["connected"] is True
        garage = health["chargers"]["garage"]
        assert (garage["available"], garage["failsafe_active"]) == (True, False)
        assert garage["last_poll_age_s"] < 5
        assert (await asyncio.to_thread(run, "health", url + "/healthz")).returncode == 0
        assert (
            await asyncio.to_thread(run, "health", f"127.0.0.1:{http_port}")
        ).returncode == 0  # path added

        code, text = await fetch(url + "/metrics")
        assert code == 200
        for line in (
            'goe_bridge_charger_available{charger="garage"} 1',
            'goe_bridge_broker_connected{broker="home"} 1',
            "# TYPE goe_bridge_charger_writes_total counter",
            "# TYPE goe_bridge_broker_messages_published_total counter",
            "# TYPE goe_bridge_charger_polls_total counter",
            "# TYPE goe_bridge_charger_poll_latency_seconds gauge",
            "# TYPE process_resident_memory_bytes gauge",
        ):
            assert line in text, line
        assert 'goe_bridge_charger_power_watts{charger="garage"} 11040' in text
        assert 'goe_bridge_charger_energy_wh_total{charger="garage"}' in text

        # unhealthy: the charger stops answering
        charger.inject("timeout", count=1_000_000, delay_s=5)
        for _ in range(100):
            if not await healthy():
                break
            await asyncio.sleep(0.1)
        code, body = await fetch(url + "/healthz")
        assert code == 503
        assert json.loads(body)["problems"] == ["charger garage unavailable"]
        result = await asyncio.to_thread(run, "health", url + "/healthz")
        assert result.returncode == 1
        assert "unhealthy: charger garage unavailable" in result.stderr
        charger.clear_faults()
    # the bridge is gone: unhealthy, not a crash
    result = await asyncio.to_thread(run, "health", url + "/healthz", "--timeout", "1")
    assert result.returncode == 1 and result.stderr.startswith("unhealthy:")


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: apt-get install chromium (.ci/run does it)")
    return path


async def test_status_page_in_headless_chromium(
    mosquitto: Any, sim: Any, base_topic: str, tmp_path: Path
) -> None:
    _, sim_port = sim
    http_port = free_port()
    cfg = write_config(tmp_path / "c.yaml", mosquitto, base_topic, sim_port, http_port)
    url = f"http://127.0.0.1:{http_port}/"
    with bridge_process(cfg):
        for _ in range(200):
            try:
                if (await fetch(url + "healthz"))[0] == 200:
                    break
            except OSError:
                pass
            await asyncio.sleep(0.1)
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=4000"]  # fmt: skip
        dom = await asyncio.to_thread(
            subprocess.run,
            [_chromium(), *flags, "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert dom.returncode == 0, dom.stderr[-2000:]
        html = dom.stdout
        assert 'data-charger="garage"' in html
        assert ">11040 W<" in html  # power
        assert ">charging<" in html
        assert ">16 A<" in html  # current limit
        assert ">mqtt<" in html  # control source
        assert "online" in html
        shot = tmp_path / "status-page.png"
        result = await asyncio.to_thread(subprocess.run, [_chromium(), *flags, "--window-size=420,900", f"--screenshot={shot}", url],
                                         capture_output=True, text=True, timeout=90, check=False)  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        assert shot.stat().st_size > 5000
        print(f"status page screenshot: {shot}")
