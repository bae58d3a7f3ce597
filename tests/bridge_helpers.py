"""Run the real Bridge in-process against real mosquitto and the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from bridge import config as config_mod
from bridge.service import Bridge
from bridge.simulator.charger import SimCharger
from tests.mqtt_helpers import Probe


def make_config(
    broker: Any, base: str, chargers: list[dict[str, Any]], **publish: Any
) -> config_mod.Config:
    return config_mod.from_data(
        {
            "log": {"level": "debug", "format": "json"},
            "brokers": {"test": {"host": broker.host, "port": broker.port}},
            "publish": {"base_topic": base, **publish},
            "chargers": chargers,
        },
        env={},
    )


def http_charger(
    cid: str, port: int, *, source: str = "mqtt", poll: float = 0.2, **control: Any
) -> dict[str, Any]:
    return {
        "id": cid,
        "connection": {
            "type": "http",
            "host": "127.0.0.1",
            "port": port,
            "poll_interval_s": poll,
            "timeout_s": 1,
        },
        "limits": {"max_current_a": 16},
        "control": {"source": source, "min_command_interval_s": 0, **control},
    }


@contextlib.asynccontextmanager
async def running_bridge(cfg: config_mod.Config) -> AsyncIterator[Bridge]:
    bridge = Bridge(cfg, install_signals=False)
    task = asyncio.create_task(bridge.run(), name="bridge-under-test")
    try:
        await asyncio.wait_for(bridge.ready.wait(), 15)
        yield bridge
    finally:
        bridge.request_stop()
        done, _ = await asyncio.wait({task}, timeout=15)
        if not done:
            # A shutdown that hangs is a bug: show where every task is stuck.
            import io

            out = io.StringIO()
            for t in asyncio.all_tasks():
                print(f"--- {t.get_name()} cancelling={t.cancelling()}", file=out)
                t.print_stack(file=out)
            raise AssertionError("bridge did not stop within 15 s\n" + out.getvalue())
        assert task.result() == 0


@dataclass
class Rig:
    """A running bridge with one simulated charger and a probe on the base topic."""

    sim: SimCharger
    probe: Probe
    bridge: Bridge
    root: str

    async def command(self, suffix: str, payload: str, *, retain: bool = False) -> dict[str, Any]:
        """Publish a command under the charger's topic; the `result` it got."""
        mark = self.probe.mark()
        await self.probe.publish(f"{self.root}/{suffix}", payload, retain=retain)
        seen = await self.probe.wait_for(f"{self.root}/result", since=mark)
        return json.loads(seen.payload)  # type: ignore[no-any-return]
