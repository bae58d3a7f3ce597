"""The optional local HTTP endpoint (config `http:`): `/healthz`, `/metrics`, `/api/state` and
a status page at `/` that a person reads on a phone. Off by default; bound to 127.0.0.1
unless configured otherwise. No build step, no external assets."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web

from . import logs
from .snapshot import BridgeSnapshot, ChargerView

log = logs.get("goe_bridge.web")

SNAPSHOT_KEY: web.AppKey[Callable[[], BridgeSnapshot]] = web.AppKey("snapshot")


def charger_state(charger: ChargerView) -> dict[str, Any]:
    return {
        "available": charger.available,
        "in_sync": charger.in_sync,
        "failsafe_active": charger.failsafe_active,
        "control_source": charger.control_source,
        "connection": charger.connection,
        "last_poll_age_s": charger.last_poll_age_s,
        "last_error": charger.last_error,
        "target": charger.target,
        "status": charger.status,
        "commands": charger.commands,
        "warnings": charger.warnings,
    }


def health(snap: BridgeSnapshot) -> tuple[bool, dict[str, Any]]:
    """Healthy: serving (not standing by for another bridge), every broker connected and
    every charger reachable."""
    brokers = {
        b.name: {"connected": b.connected, "host": b.host, "reconnects": b.reconnects,
                 "published": b.published, "last_error": b.last_error}
        for b in snap.brokers
    }  # fmt: skip
    chargers = {
        c.id: {k: v for k, v in charger_state(c).items()
               if k not in ("status", "commands", "target")}
        for c in snap.chargers
    }  # fmt: skip
    problems = []
    if snap.standby:
        problems.append("standing by: another goe-bridge serves this base topic")
    else:
        problems += [f"broker {n} disconnected" for n, b in brokers.items() if not b["connected"]]
        problems += [f"charger {c} unavailable" for c, s in chargers.items() if not s["available"]]
    body: dict[str, Any] = {
        "healthy": not problems,
        "problems": problems,
        "version": snap.version,
        "uptime_s": snap.uptime_s,
        "brokers": brokers,
        "chargers": chargers,
    }
    if snap.standby:
        body["standby_for"] = snap.standby_for
    return not problems, body


async def healthz(request: web.Request) -> web.Response:
    ok, body = health(request.app[SNAPSHOT_KEY]())
    return web.json_response(body, status=200 if ok else 503)


async def api_state(request: web.Request) -> web.Response:
    snap = request.app[SNAPSHOT_KEY]()
    _, body = health(snap)
    body["chargers"] = {c.id: charger_state(c) for c in snap.chargers}
    return web.json_response(body)


# ------------------------------------------------------------------------ metrics


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Prometheus text format 0.0.4: each family once, its HELP and TYPE, then all its
    samples together (samples of one family must not be split by another family's)."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str, list[str]]] = {}

    def add(self, name: str, kind: str, help_text: str, value: float | None, **labels: str) -> None:
        if value is None:
            return
        family = self._families.setdefault(name, (kind, help_text, []))
        label = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        family[2].append(f"{name}{{{label}}} {float(value):g}" if label else f"{name} {value:g}")

    def text(self) -> str:
        lines = []
        for name, (kind, help_text, samples) in self._families.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(samples)
        return "\n".join(lines) + "\n"


def rss_bytes() -> float | None:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return float(pages * os.sysconf("SC_PAGE_SIZE"))


def _open_fds() -> float | None:
    try:
        return float(len(os.listdir("/proc/self/fd")))
    except OSError:
        return None


def metrics_text(snap: BridgeSnapshot) -> str:
    m = Metrics()
    m.add("goe_bridge_info", "gauge", "goe-bridge version", 1, version=snap.version)
    m.add("goe_bridge_standby", "gauge", "1 while another goe-bridge serves this base topic",
          1 if snap.standby else 0)  # fmt: skip
    m.add("process_resident_memory_bytes", "gauge", "Resident memory size in bytes", rss_bytes())
    m.add("process_cpu_seconds_total", "counter", "CPU time used", time.process_time())
    m.add("process_open_fds", "gauge", "Open file descriptors", _open_fds())
    m.add("goe_bridge_asyncio_tasks", "gauge", "asyncio tasks alive", snap.tasks)
    for b in snap.brokers:
        m.add("goe_bridge_broker_connected", "gauge", "1 while connected to the broker",
              1 if b.connected else 0, broker=b.name)  # fmt: skip
        m.add("goe_bridge_broker_reconnects_total", "counter", "Reconnects after the first",
              b.reconnects, broker=b.name)  # fmt: skip
        m.add("goe_bridge_broker_messages_published_total", "counter", "Messages published",
              b.published, broker=b.name)  # fmt: skip
    for c in snap.chargers:
        cid = c.id
        s = c.status or {}
        m.add("goe_bridge_charger_available", "gauge", "1 while the charger is reachable",
              1 if c.available else 0, charger=cid)  # fmt: skip
        if c.status is not None:
            m.add("goe_bridge_charger_power_watts", "gauge", "Charging power", s.get("power_w"),
                  charger=cid)  # fmt: skip
            m.add("goe_bridge_charger_energy_wh_total", "counter", "Lifetime energy in Wh",
                  s.get("energy_total_wh"), charger=cid)  # fmt: skip
            m.add("goe_bridge_charger_current_limit_amperes", "gauge", "Requested current (amp)",
                  s.get("current_limit_a"), charger=cid)  # fmt: skip
            for n in (1, 2, 3):
                m.add("goe_bridge_charger_current_amperes", "gauge", "Current per phase",
                      s.get(f"current_l{n}_a"), charger=cid, phase=f"L{n}")  # fmt: skip
            m.add("goe_bridge_charger_charging", "gauge", "1 while charging",
                  1 if s.get("charging") else 0, charger=cid)  # fmt: skip
        for result in ("sent", "failed", "verified"):
            m.add("goe_bridge_charger_writes_total", "counter", "Writes to the charger",
                  c.writes.get(result, 0), charger=cid, result=result)  # fmt: skip
        m.add("goe_bridge_charger_in_sync", "gauge", "1 when the charger shows the Target",
              1 if c.in_sync else 0, charger=cid)  # fmt: skip
        for result in ("ok", "failed"):
            m.add("goe_bridge_charger_polls_total", "counter", "Status polls",
                  c.polls.get(result, 0), charger=cid, result=result)  # fmt: skip
        m.add("goe_bridge_charger_poll_latency_seconds", "gauge", "Duration of the last poll",
              c.poll_latency_s, charger=cid)  # fmt: skip
    return m.text()


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        text=metrics_text(request.app[SNAPSHOT_KEY]()),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


# ------------------------------------------------------------------------ status page

PAGE = (resources.files("bridge") / "status.html").read_text("utf-8")


async def page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html", charset="utf-8")


def make_app(snapshot: Callable[[], BridgeSnapshot]) -> web.Application:
    app = web.Application()
    app[SNAPSHOT_KEY] = snapshot
    app.router.add_get("/", page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/state", api_state)
    return app


class WebServer:
    def __init__(self, snapshot: Callable[[], BridgeSnapshot], host: str, port: int) -> None:
        self.snapshot, self.host, self.port = snapshot, host, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(
            make_app(self.snapshot), handle_signals=False, access_log=None, shutdown_timeout=1
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        log.info("http.listening", url=f"http://{self.host}:{self.port}/")

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
