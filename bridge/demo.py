"""`goe-bridge demo`: an embedded broker, the simulator with a car that plugs in, the
bridge, and a scripted controller, with the live topic flow printed. Ctrl-C ends it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any, TextIO

import aiomqtt

from . import config, logs, service
from .goe.model import ApiVersion
from .mqtt.embedded import EmbeddedBroker
from .simulator.charger import Car, SimCharger
from .simulator.http import HttpFrontend

CHARGER_ID = "demo"
BASE = "goe"

# (seconds after start, topic suffix, payload, what it shows): the whole story in 30 s, with
# something new on screen at least every 5 s
PLUG_AT = 1.0
SCENARIO: tuple[tuple[float, str, str, str], ...] = (
    (3, "set", '{"allow_charging": true, "current_limit_a": 10}', "start charging at 10 A"),
    (7, "current_limit_a/set", "16", "raise the current to 16 A"),
    (7.5, "current_limit_a/set", "12", "…and at once to 12 A: the last value wins"),
    (12, "phases/set", "1", "switch to one phase (API v2; refused on v1)"),
    (17, "allow_charging/set", "off", "stop charging"),
    (21, "allow_charging/set", "on", "resume"),
    (25, "current_limit_a/set", "40", "an out-of-range current is refused"),
)
DONE_AT = 28.0
PHASE_SWITCH_PAUSE_S = 3.0  # a real go-e pauses about 10 s (psmd)


class Printer:
    def __init__(self, out: TextIO, started: float) -> None:
        self.out = out
        self.started = started
        self.color = out.isatty()

    def _paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def line(self, text: str, code: str = "") -> None:
        stamp = f"[{time.monotonic() - self.started:6.1f}s]"
        shown = self._paint(text, code) if code else text
        print(f"{self._paint(stamp, '2')} {shown}", file=self.out, flush=True)


def demo_config(
    broker_port: int, charger_port: int, protocol: str = "auto", speed: float = 1.0
) -> config.Config:
    return config.from_data(
        {
            "log": {"level": "warning", "format": "console"},
            "brokers": {"demo": {"host": "127.0.0.1", "port": broker_port, "protocol": protocol}},
            "publish": {"base_topic": BASE, "refresh_s": 300},
            "chargers": [
                {
                    "id": CHARGER_ID,
                    "connection": {
                        "type": "http",
                        "host": "127.0.0.1",
                        "port": charger_port,
                        "poll_interval_s": 1,
                    },
                    "limits": {"max_current_a": 16},
                    "control": {
                        "source": "mqtt",
                        # go-e's recommended spacing, the default: the 16 A sent at 7 s
                        # waits for 8 s, and the 12 A sent meanwhile replaces it
                        "min_command_interval_s": 5 / speed,
                        "phase_switch_min_interval_s": 0,
                    },
                }
            ],
        },
        env={},
    )


async def watch(broker: EmbeddedBroker, printer: Printer) -> None:
    async with aiomqtt.Client(broker.host, broker.port, identifier="goe-bridge-demo-watch") as c:
        await c.subscribe(f"{BASE}/#")
        await c.subscribe("homeassistant/#")
        async for message in c.messages:
            topic = message.topic.value
            payload = message.payload
            text = payload.decode() if isinstance(payload, bytes) else str(payload)
            if topic.startswith("homeassistant/"):
                try:
                    count = len(json.loads(text).get("cmps", {}))
                except (ValueError, AttributeError):
                    count = 0
                noun = "entity" if count == 1 else "entities"
                printer.line(f"{topic}  (Home Assistant discovery, {count} {noun})", "36")
            elif topic.endswith("/set"):
                continue  # printed by the scenario
            elif topic.endswith("/result"):
                printer.line(f"{topic} = {text}", "33")
            elif "/control/" in topic or topic.endswith(("/availability", "/state")):
                printer.line(f"{topic} = {text}", "1")
            else:
                printer.line(f"{topic} = {text}")


async def scenario(broker: EmbeddedBroker, sim: SimCharger, printer: Printer, speed: float) -> None:
    started = time.monotonic()

    async def at(seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds / speed - (time.monotonic() - started)))

    async with aiomqtt.Client(broker.host, broker.port, identifier="goe-bridge-demo-ctl") as c:
        await at(PLUG_AT)
        sim.plug(Car(max_current_a=16, phases=3, energy_needed_wh=40_000))
        printer.line("simulator: a car is plugged in (3 phases, up to 16 A)", "35")
        for seconds, suffix, payload, what in SCENARIO:
            await at(seconds)
            topic = f"{BASE}/{CHARGER_ID}/{suffix}"
            printer.line(f"→ {topic} {payload}    ({what})", "32")
            await c.publish(topic, payload, qos=1)
        await at(DONE_AT)
        printer.line(
            "scenario done; the bridge goes on serving the simulator (Ctrl-C ends the demo)", "35"
        )


async def run(
    api: str, duration: float | None, speed: float, out: TextIO, broker_kind: str = "auto"
) -> int:
    printer = Printer(out, time.monotonic())
    async with EmbeddedBroker(kind=broker_kind) as broker:
        printer.line(f"embedded MQTT broker ({broker.kind}) on {broker.host}:{broker.port}", "35")
        sim = SimCharger(
            api=ApiVersion(api),
            serial="000001",
            phase_switch_pause_s=PHASE_SWITCH_PAUSE_S / speed,
            alw_delay_s=1 / speed,
        )
        async with HttpFrontend(sim) as frontend:
            printer.line(f"go-e simulator (API {api}) on {frontend.url}", "35")
            # amqtt speaks MQTT 3.1.1 only (and does not answer an MQTT 5 CONNECT)
            protocol = "3.1.1" if broker.kind == "amqtt" else "auto"
            bridge = service.Bridge(demo_config(broker.port, frontend.port, protocol, speed))
            printer.line(
                f"bridge: charger '{CHARGER_ID}' → topics {BASE}/{CHARGER_ID}/…; "
                "Ctrl-C ends the demo",
                "35",
            )
            helpers = [
                asyncio.create_task(watch(broker, printer), name="demo-watch"),
                asyncio.create_task(scenario(broker, sim, printer, speed), name="demo-scenario"),
            ]
            if duration is not None:
                loop = asyncio.get_running_loop()
                loop.call_later(duration, bridge.request_stop)
            try:
                code = await bridge.run()
            finally:
                await asyncio.sleep(0.2)  # let the watcher print `offline`
                for task in helpers:
                    task.cancel()
                for task in helpers:
                    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                        await task
    printer.line("demo stopped", "35")
    return code


def main(
    api: str = "v2", duration: float | None = None, speed: float = 1.0, broker: str = "auto"
) -> int:
    logs.setup("warning", "console")
    out: Any = sys.stdout
    return asyncio.run(run(api, duration, speed, out, broker))
