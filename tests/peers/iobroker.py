"""docs/iobroker.md against the real ioBroker: js-controller 7.1 with its jsonl databases, the
admin adapter (the MQTT adapter needs it installed) and the MQTT adapter 6.1 (`iobroker.mqtt`),
all from npm, configured as the guide says, with the bridge, a mosquitto and the simulator.

    .venv/bin/python -m tests.peers.iobroker [--dir DIR]

The ioBroker installation is kept in DIR (default ~/.cache/goe-bridge-tests/iobroker-7.1.1) and
reused; its databases listen on free ports of 127.0.0.1. Prints each check and exits 0 when all
pass. tests/system/test_iobroker.py runs it in the suite."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from bridge.goe.model import ApiVersion
from bridge.mqtt.embedded import free_port
from bridge.simulator.charger import Car, SimCharger
from bridge.simulator.http import HttpFrontend
from tests.mqtt_helpers import Probe, run_mosquitto, until

PACKAGES = ("iobroker.js-controller@7.1.1", "iobroker.admin@7.8.20", "iobroker.mqtt@6.1.4")
CHARGER = "garage"

# The MQTT adapter's options as docs/iobroker.md sets them (labels as the adapter shows them)
GUIDE_OPTIONS = {
    "type": "client",  # Connection: "Client/Subscriber"
    "patterns": "goe/+/+,goe/+/control/+",  # Client settings: "Subscribe patterns"
    "onchange": "false",  # MQTT Settings: "Publish/update only in case of change" off
    "publishAllOnStart": "false",  # "Publish own states on connect" off
    "defaultQoS": "1",  # "Default QoS:" 1
}


def default_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "goe-bridge-tests" / "iobroker-7.1.1"


def say(text: str) -> None:
    print(f"iobroker: {text}", flush=True)


class IoBroker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.controller: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            ["node", str(self.root / "node_modules/iobroker.js-controller/iobroker.js"), *args],
            cwd=self.root, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise RuntimeError(f"iobroker {' '.join(args)}: {result.stdout}{result.stderr}")
        return result.stdout

    def install(self) -> None:
        """npm packages, `setup first` (jsonl databases), one MQTT instance; once per DIR."""
        if (self.root / ".goe-bridge-ready").exists():
            return
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not installed")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "package.json").write_text('{"name": "iobroker.inst", "private": true}\n')
        say(f"npm install {' '.join(PACKAGES)} into {self.root} (once)")
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", *PACKAGES],
            cwd=self.root, check=True, timeout=900,
        )  # fmt: skip
        self.cli("setup", "first")
        self.free_ports()
        say("adding the instance mqtt.0")
        self.cli("add", "mqtt", "--enabled", "false")
        # the admin adapter must be installed, not running (its web server wants port 8081)
        self.cli("object", "set", "system.adapter.admin.0", "common.enabled=false")
        (self.root / ".goe-bridge-ready").write_text("")

    def free_ports(self) -> None:
        path = self.root / "iobroker-data" / "iobroker.json"
        data = json.loads(path.read_text())
        data["objects"]["port"] = free_port()
        data["states"]["port"] = free_port()
        path.write_text(json.dumps(data, indent=2))

    def start(self, log: Path) -> None:
        self.free_ports()
        out = log.open("w")
        self.controller = subprocess.Popen(
            ["node", str(self.root / "node_modules/iobroker.js-controller/controller.js")],
            cwd=self.root, stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while "is running on this host" not in self.cli("status", check=False):
            if time.monotonic() > deadline or self.controller.poll() is not None:
                raise RuntimeError("js-controller did not start: " + log.read_text()[-2000:])
            time.sleep(1)

    def stop(self) -> None:
        if self.controller is not None and self.controller.poll() is None:
            os.killpg(self.controller.pid, signal.SIGTERM)
            try:
                self.controller.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.controller.pid, signal.SIGKILL)
                self.controller.wait()

    def state(self, state_id: str) -> dict[str, Any] | None:
        out = self.cli("state", "get", state_id, check=False).strip()
        return json.loads(out) if out.startswith("{") else None


async def wait_state(
    io: IoBroker, state_id: str, what: str, check: Any, timeout: float = 60
) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(io.state, state_id)
        if last is not None and check(last["val"]):
            say(f"ok: {state_id} = {json.dumps(last['val'])} ({what})")
            return last["val"]
        await asyncio.sleep(1)
    raise AssertionError(f"{state_id}: {what}; last: {last}")


@contextlib.contextmanager
def exclusive(root: Path) -> Iterator[None]:
    """One run at a time per installation: a second js-controller on the same databases
    (another checkout's suite using the same cache, say) stops the first or fails to start."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with (root.parent / f"{root.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


async def run(root: Path) -> None:
    with exclusive(root):
        await run_alone(root)


async def run_alone(root: Path) -> None:
    io = IoBroker(root)
    await asyncio.to_thread(io.install)
    work = Path(tempfile.mkdtemp(prefix="goe-iobroker-"))
    sim = SimCharger(api=ApiVersion.V2, alw_delay_s=0.05)
    with run_mosquitto() as broker:
        async with HttpFrontend(sim) as fe:
            cfg = work / "config.yaml"
            cfg.write_text(yaml.safe_dump({
                "brokers": {"home": {"host": broker.host, "port": broker.port}},
                "publish": {"home_assistant": {"enabled": False}},
                "chargers": [{"id": CHARGER,
                              "connection": {"type": "http", "host": "127.0.0.1",
                                             "port": fe.port, "poll_interval_s": 1},
                              "control": {"source": "mqtt", "min_command_interval_s": 1}}],
            }))  # fmt: skip
            bridge_log = (work / "bridge.log").open("w")
            bridge = subprocess.Popen(  # noqa: ASYNC220 - one process, waited for off the loop
                [sys.executable, "-m", "bridge", "run", "-c", str(cfg)],
                stdout=bridge_log, stderr=bridge_log,
            )  # fmt: skip
            try:
                await asyncio.to_thread(io.start, work / "iobroker.log")
                say("js-controller running; configuring mqtt.0 as docs/iobroker.md says")
                options = [word for k, v in GUIDE_OPTIONS.items() for word in (f"--{k}", v)]
                await asyncio.to_thread(
                    io.cli, "set", "mqtt.0", "--url", "127.0.0.1", "--port", str(broker.port),
                    *options,
                )  # fmt: skip
                await asyncio.to_thread(io.cli, "start", "mqtt.0")
                await checks(io, sim, broker)
            finally:
                await asyncio.to_thread(io.stop)
                bridge.send_signal(signal.SIGTERM)
                await asyncio.to_thread(bridge.wait, 20)
                bridge_log.close()
    shutil.rmtree(work, ignore_errors=True)


async def checks(io: IoBroker, sim: SimCharger, broker: Any) -> None:
    ns = f"mqtt.0.goe.{CHARGER}"
    await wait_state(io, f"{ns}.availability", "the charger is reachable", lambda v: v == "online")
    await wait_state(io, "mqtt.0.goe.bridge.state", "the bridge is online", lambda v: v == "online")
    await wait_state(io, f"{ns}.car_state", "text stays text", lambda v: v == "idle")
    await wait_state(io, f"{ns}.power_w", "a number", lambda v: v == 0 and isinstance(v, int))
    await wait_state(io, f"{ns}.allow_charging", "a boolean", lambda v: v is True)
    # the adapter reads every payload that looks like a number as a number
    # (iobroker.mqtt lib/common.js convertMessage): the serial 000001 arrives as 1
    await wait_state(io, f"{ns}.serial", "000001 read as the number 1", lambda v: v == 1)
    await wait_state(io, f"{ns}.firmware", "56.9 read as a number", lambda v: v == 56.9)

    # a command through a state the user creates, as the guide says
    set_id = f"{ns}.current_limit_a.set"
    state_object = {"type": "state", "native": {},
                    "common": {"name": "charging current set point", "type": "number",
                               "role": "level.current", "unit": "A", "min": 0, "max": 32,
                               "read": True, "write": True}}  # fmt: skip
    await asyncio.to_thread(io.cli, "object", "set", set_id, json.dumps(state_object))
    sim.plug(Car(max_current_a=16, phases=3, energy_needed_wh=40_000))
    # Retain As Published: the bridge's own messages (retained, and repeated: availability
    # every minute) keep their flag, so anything unretained on its topics is the adapter's
    async with Probe(
        broker.host, broker.port, f"goe/{CHARGER}/#", retain_as_published=True
    ) as probe:
        await asyncio.to_thread(io.cli, "state", "set", set_id, "10")
        await until(lambda: sim.amp == 10, timeout=30, what="10 A at the charger")
        say("ok: setting mqtt.0.goe.garage.current_limit_a.set to 10 reached the charger")
        topic = f"goe/{CHARGER}/current_limit_a/set"

        def sent() -> int:  # the adapter's commands (the bridge clears the topic after each)
            return probe.values(topic).count("10")

        assert sent() == 1, probe.values(topic)
        # the same value again (a script that repeats its set point): with "Publish/update
        # only in case of change" off it is published again
        await asyncio.to_thread(io.cli, "state", "set", set_id, "10")
        await until(lambda: sent() == 2, timeout=30, what="the repeated set point published")
        say("ok: the repeated set point 10 was published again")
        await wait_state(io, f"{ns}.current_limit_a", "the charger's current", lambda v: v == 10)

        # a cleared field (not charging: no effective current) reads null
        await wait_state(io, f"{ns}.effective_current_a", "charging", lambda v: v == 10)
        allow_id = f"{ns}.allow_charging.set"
        allow_object = {**state_object,
                        "common": {"name": "allow charging", "type": "boolean",
                                   "role": "switch.enable", "read": True, "write": True}}  # fmt: skip
        await asyncio.to_thread(io.cli, "object", "set", allow_id, json.dumps(allow_object))
        await asyncio.to_thread(io.cli, "state", "set", allow_id, "false")
        await wait_state(io, f"{ns}.effective_current_a", "cleared → null", lambda v: v is None)

        # "Publish own states on connect" off: a restarted adapter writes nothing onto the
        # bridge's topics (on, it republishes every state it holds, non-retained)
        mark = len(probe.messages)
        await asyncio.to_thread(io.cli, "restart", "mqtt.0")
        await wait_state(io, "mqtt.0.info.connection", "reconnected", lambda v: v is True)
        await asyncio.sleep(5)  # the adapter's "Delay before sending topics" is 2 s
        foreign = [m for m in probe.messages[mark:] if not m.retain
                   and not m.topic.endswith(("/result", "/set"))]  # fmt: skip
        # the bridge itself publishes its fields retained; anything else came from the adapter
        assert not foreign, [(m.topic, m.payload) for m in foreign[:5]]
        say("ok: nothing published by the adapter on (re)connect")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=default_dir())
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        asyncio.run(run(args.dir))
    except (AssertionError, RuntimeError) as exc:
        say(f"FAILED: {exc}")
        return 1
    say(f"all checks passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
