"""The optional local HTTP endpoint (config `http:`): `/healthz`, `/metrics`, `/api/state` and
a status page at `/` that a person reads on a phone. Off by default; bound to 127.0.0.1
unless configured otherwise. No build step, no external assets."""

from __future__ import annotations

import asyncio
import os
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import __version__, logs

if TYPE_CHECKING:
    from .service import Bridge

log = logs.get("goe_bridge.web")

BRIDGE_KEY: web.AppKey[Any] = web.AppKey("bridge")


def charger_state(bridge: Bridge) -> dict[str, Any]:
    now = time.monotonic()
    out: dict[str, Any] = {}
    for cid, rt in bridge.chargers.items():
        status = rt.status
        poller = rt.poller
        last_ok = poller.last_ok
        if rt.transport.push and rt.available:
            last_ok = now  # push transports: availability is the freshness
        target = rt.reconciler.target
        out[cid] = {
            "available": bool(rt.available),
            "in_sync": rt.reconciler.in_sync,
            "failsafe_active": bool(rt.control_state.get("failsafe_active")),
            "control_source": rt.cfg.control.source,
            "connection": rt.transport.describe(),
            "last_poll_age_s": round(now - last_ok, 1) if last_ok is not None else None,
            "last_error": poller.last_error,
            "target": (
                {"allow": target.allow, "current_a": target.current_a, "phases": target.phases}
                if target
                else None
            ),
            "status": status.fields() if status else None,
            "commands": list(rt.commands),
            "warnings": dict(rt.setting_warnings),
        }
    return out


def broker_state(bridge: Bridge) -> dict[str, Any]:
    return {
        name: {
            "connected": link.connected.is_set(),
            "host": f"{link.cfg.host}:{link.cfg.port}",
            "reconnects": max(0, link.connects - 1),
            "published": link.published,
            "last_error": link.last_error,
        }
        for name, link in bridge.links.items()
    }


def health(bridge: Bridge) -> tuple[bool, dict[str, Any]]:
    """Healthy: every broker connected and every charger reachable."""
    brokers = broker_state(bridge)
    chargers = {
        cid: {k: v for k, v in c.items() if k not in ("status", "commands", "target")}
        for cid, c in charger_state(bridge).items()
    }
    problems = [f"broker {n} disconnected" for n, b in brokers.items() if not b["connected"]]
    problems += [f"charger {c} unavailable" for c, s in chargers.items() if not s["available"]]
    return not problems, {
        "healthy": not problems,
        "problems": problems,
        "version": __version__,
        "uptime_s": round(time.time() - bridge.started, 1),
        "brokers": brokers,
        "chargers": chargers,
    }


async def healthz(request: web.Request) -> web.Response:
    ok, body = health(request.app[BRIDGE_KEY])
    return web.json_response(body, status=200 if ok else 503)


async def api_state(request: web.Request) -> web.Response:
    bridge = request.app[BRIDGE_KEY]
    _, body = health(bridge)
    body["chargers"] = charger_state(bridge)
    return web.json_response(body)


# ------------------------------------------------------------------------ metrics


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._declared: set[str] = set()

    def add(self, name: str, kind: str, help_text: str, value: float | None, **labels: str) -> None:
        if value is None:
            return
        if name not in self._declared:
            self._declared.add(name)
            self.lines.append(f"# HELP {name} {help_text}")
            self.lines.append(f"# TYPE {name} {kind}")
        label = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        self.lines.append(f"{name}{{{label}}} {float(value):g}" if label else f"{name} {value:g}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


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


def metrics_text(bridge: Bridge) -> str:
    m = Metrics()
    m.add("goe_bridge_info", "gauge", "goe-bridge version", 1, version=__version__)
    m.add("process_resident_memory_bytes", "gauge", "Resident memory size in bytes", rss_bytes())
    m.add("process_cpu_seconds_total", "counter", "CPU time used", time.process_time())
    m.add("process_open_fds", "gauge", "Open file descriptors", _open_fds())
    m.add("goe_bridge_asyncio_tasks", "gauge", "asyncio tasks alive", len(asyncio.all_tasks()))
    for name, link in bridge.links.items():
        m.add("goe_bridge_broker_connected", "gauge", "1 while connected to the broker",
              1 if link.connected.is_set() else 0, broker=name)  # fmt: skip
        m.add("goe_bridge_broker_reconnects_total", "counter", "Reconnects after the first",
              max(0, link.connects - 1), broker=name)  # fmt: skip
        m.add("goe_bridge_broker_messages_published_total", "counter", "Messages published",
              link.published, broker=name)  # fmt: skip
    for cid, rt in bridge.chargers.items():
        s = rt.status
        m.add("goe_bridge_charger_available", "gauge", "1 while the charger is reachable",
              1 if rt.available else 0, charger=cid)  # fmt: skip
        if s is not None:
            m.add("goe_bridge_charger_power_watts", "gauge", "Charging power", s.power_w,
                  charger=cid)  # fmt: skip
            m.add("goe_bridge_charger_energy_wh_total", "counter", "Lifetime energy in Wh",
                  s.energy_total_wh, charger=cid)  # fmt: skip
            m.add("goe_bridge_charger_current_limit_amperes", "gauge", "Requested current (amp)",
                  s.current_limit_a, charger=cid)  # fmt: skip
            for n in (1, 2, 3):
                m.add("goe_bridge_charger_current_amperes", "gauge", "Current per phase",
                      getattr(s, f"current_l{n}_a"), charger=cid, phase=f"L{n}")  # fmt: skip
            m.add("goe_bridge_charger_charging", "gauge", "1 while charging",
                  1 if s.charging else 0, charger=cid)  # fmt: skip
        r = rt.reconciler
        for result, count in (("sent", r.writes_sent), ("failed", r.writes_failed),
                              ("verified", r.writes_verified)):  # fmt: skip
            m.add("goe_bridge_charger_writes_total", "counter", "Writes to the charger",
                  count, charger=cid, result=result)  # fmt: skip
        m.add("goe_bridge_charger_in_sync", "gauge", "1 when the charger shows the Target",
              1 if r.in_sync else 0, charger=cid)  # fmt: skip
        p = rt.poller
        m.add("goe_bridge_charger_polls_total", "counter", "Status polls", p.ok_polls,
              charger=cid, result="ok")  # fmt: skip
        m.add("goe_bridge_charger_polls_total", "counter", "Status polls", p.failed_polls,
              charger=cid, result="failed")  # fmt: skip
        m.add("goe_bridge_charger_poll_latency_seconds", "gauge", "Duration of the last poll",
              p.last_latency_s, charger=cid)  # fmt: skip
    return m.text()


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        text=metrics_text(request.app[BRIDGE_KEY]),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


# ------------------------------------------------------------------------ status page

PAGE = (resources.files("bridge") / "status.html").read_text("utf-8")


async def page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html", charset="utf-8")


def make_app(bridge: Bridge) -> web.Application:
    app = web.Application()
    app[BRIDGE_KEY] = bridge
    app.router.add_get("/", page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/state", api_state)
    return app


class WebServer:
    def __init__(self, bridge: Bridge, host: str, port: int) -> None:
        self.bridge, self.host, self.port = bridge, host, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(
            make_app(self.bridge), handle_signals=False, access_log=None, shutdown_timeout=1
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        log.info("http.listening", url=f"http://{self.host}:{self.port}/")

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
