"""The simulator's local HTTP front-end: API v1 (`/status`, `/mqtt?payload=`) and API v2
(`/api/status`, `/api/set`), plus `/_sim/*` control endpoints for tests and the demo.

A v1 charger answers 404 on the v2 paths and a v2 charger answers 404 on the v1 paths
unless its legacy API is on, as real chargers do (go-e API v1 #64).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from .charger import API_LOCK_TEXT, Car, SimCharger
from .firmware import Api
from .server import AppServer

NOT_FOUND = "This URI does not exist"

CHARGER_KEY = web.AppKey("charger", SimCharger)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, separators=(",", ":")),
        status=status,
        content_type="application/json",
    )


async def _faulty(request: web.Request, data: Any, status: int = 200) -> web.StreamResponse:
    """Answer `data`, unless a fault was injected for this request."""
    charger = request.app[CHARGER_KEY]
    fault = charger.take_fault()
    if fault is None:
        return _json(data, status)
    if fault.kind in ("api_lock", "hang"):
        return await _locked(fault.kind)
    if fault.kind == "timeout":
        await asyncio.sleep(fault.delay_s or 3600)
        return _json(data, status)
    if fault.kind == "slow":
        await asyncio.sleep(fault.delay_s)
        return _json(data, status)
    if fault.kind == "http500":
        return web.Response(status=500, text="internal error")
    if fault.kind == "not_found":
        return web.Response(status=404, text=NOT_FOUND)
    if fault.kind == "truncated":
        text = json.dumps(data)
        return web.Response(text=text[: len(text) // 2], content_type="application/json")
    if isinstance(data, dict) and fault.kind == "zero_nrg" and "nrg" in data:
        return _json({**data, "nrg": [0] * 16}, status)
    if isinstance(data, dict) and fault.kind == "missing_key":
        return _json({k: v for k, v in data.items() if k != "acu"}, status)
    if isinstance(data, dict) and fault.kind == "odd_values":
        # odd values in non-core keys, as users' chargers sent them: a short `pha`, a null
        # inside `tma` (syssi/homeassistant-goecharger-mqtt issue reports)
        return _json({**data, "pha": [True], "tma": [None, 27.5]}, status)
    if isinstance(data, dict) and fault.kind == "wrong_type":
        return _json({**data, "car": {"unexpected": True}, "nrg": "not-a-list"}, status)
    return _json(data, status)


async def _locked(kind: str) -> web.StreamResponse:
    """The API lock: HTTP 500 with go-e's text (go-eCharger-API-v1 #64: "Server-Fehler
    500"); a hung REST API: no answer at all (go-eCharger-API-v2 #299). Both until reboot."""
    if kind == "hang":
        await asyncio.sleep(3600)
    return web.Response(status=500, text=API_LOCK_TEXT)


# go-e http-en.md: `filter` as a comma-separated list "since firmware 051.4"; before that a
# JSON array, typically of at most about ten entries
OLD_FILTER_MAX = 10


async def api_status(request: web.Request) -> web.StreamResponse:
    charger = request.app[CHARGER_KEY]
    if charger.api != Api.V2:
        return web.Response(status=404, text=NOT_FOUND)
    keys = None
    if "filter" in request.query:
        text = request.query["filter"]
        old = not charger.has("comma_filter")
        if text.startswith("["):
            # the JSON-array form of firmware up to 051.3 (go-e http-en.md), about ten keys
            try:
                keys = [str(k) for k in json.loads(text)]
            except ValueError:
                return web.Response(status=400, text="filter: invalid JSON array")
            if old and len(keys) > OLD_FILTER_MAX:
                return web.Response(status=400, text="filter: too many keys")
        elif old:
            # the comma form exists only since firmware 051.4 (go-e http-en.md)
            return web.Response(status=400, text="filter: expected a JSON array")
        else:
            keys = [k for k in text.split(",") if k]
    status = 200
    if charger.spec.http_400_on_unknown_key:
        # PRO on 60.3: the full status, and a filter naming a key it does not have, come
        # with HTTP 400 and the data anyway (go-eCharger-API-v2 #312, one report)
        known = charger.status_v2()
        if keys is None or any(k not in known for k in keys):
            status = 400
    return await _faulty(request, charger.status_v2(keys), status)


async def api_set(request: web.Request) -> web.StreamResponse:
    charger = request.app[CHARGER_KEY]
    if charger.api != Api.V2:
        return web.Response(status=404, text=NOT_FOUND)
    failed = await _write_fault(charger)
    if failed is not None:
        return failed
    status, answer = charger.set_v2(dict(request.query))
    return _json(answer, status)


async def _write_fault(charger: SimCharger) -> web.StreamResponse | None:
    """A fault injected for the next request, as a write meets it: an answer in its place,
    or None when the write goes on (after a delay, for a slow or timed-out one)."""
    fault = charger.take_fault()
    if fault is None:
        return None
    if fault.kind in ("api_lock", "hang"):
        return await _locked(fault.kind)
    if fault.kind == "timeout":
        await asyncio.sleep(fault.delay_s or 3600)
    elif fault.kind == "http500":
        return web.Response(status=500, text="internal error")
    elif fault.kind == "slow":
        await asyncio.sleep(fault.delay_s)
    return None


def _v1_enabled(charger: SimCharger) -> bool:
    # the legacy API needs `hla` on, which V5/PRO firmware does not have (60.3/60.4 exports)
    return charger.api == Api.V1 or (charger.legacy_v1 and "hla" not in charger.spec.lacks)


async def v1_status(request: web.Request) -> web.StreamResponse:
    charger = request.app[CHARGER_KEY]
    if not _v1_enabled(charger):
        return web.Response(status=404, text=NOT_FOUND)
    return await _faulty(request, charger.status_v1())


async def v1_mqtt(request: web.Request) -> web.StreamResponse:
    charger = request.app[CHARGER_KEY]
    if not _v1_enabled(charger):
        return web.Response(status=404, text=NOT_FOUND)
    failed = await _write_fault(charger)
    if failed is not None:
        return failed
    # The raw query, not decoded: the charger's own HTTP server is no friendlier than what
    # the proven clients (evcc, openWB 1.9) rely on, so `payload=amx%3D16` is not `amx=16`.
    raw = request.rel_url.raw_query_string
    payload = raw.split("payload=", 1)[1].split("&", 1)[0] if "payload=" in raw else ""
    return _json(charger.set_v1(payload))


# --------------------------------------------------------------------------- control


async def sim_state(request: web.Request) -> web.Response:
    return _json(request.app[CHARGER_KEY].snapshot())


async def sim_plug(request: web.Request) -> web.Response:
    q = request.query
    car = Car(
        max_current_a=float(q.get("max_current_a", 16)),
        phases=int(q.get("phases", 3)),
        energy_needed_wh=float(q.get("energy_wh", 20_000)),
    )
    request.app[CHARGER_KEY].plug(car)
    return _json({"ok": True})


async def sim_unplug(request: web.Request) -> web.Response:
    request.app[CHARGER_KEY].unplug()
    return _json({"ok": True})


async def sim_reboot(request: web.Request) -> web.Response:
    request.app[CHARGER_KEY].reboot()
    return _json({"ok": True})


async def sim_fault(request: web.Request) -> web.Response:
    q = request.query
    try:
        request.app[CHARGER_KEY].inject(
            q.get("kind", ""), int(q.get("count", 1)), float(q.get("delay_s", 0))
        )
    except ValueError as exc:
        return _json({"ok": False, "error": str(exc)}, 400)
    return _json({"ok": True})


async def sim_clear(request: web.Request) -> web.Response:
    request.app[CHARGER_KEY].clear_faults()
    return _json({"ok": True})


@web.middleware
async def count_in_flight(request: web.Request, handler: Any) -> web.StreamResponse:
    """Tracks concurrent requests, so tests can check "one request in flight"."""
    charger = request.app[CHARGER_KEY]
    if request.path.startswith("/_sim/"):
        return await handler(request)  # type: ignore[no-any-return]
    charger.requests += 1
    charger.in_flight += 1
    charger.max_in_flight = max(charger.max_in_flight, charger.in_flight)
    try:
        return await handler(request)  # type: ignore[no-any-return]
    finally:
        charger.in_flight -= 1


def make_app(charger: SimCharger) -> web.Application:
    app = web.Application(middlewares=[count_in_flight])
    app[CHARGER_KEY] = charger
    app.router.add_get("/api/status", api_status)
    app.router.add_get("/api/set", api_set)
    app.router.add_get("/status", v1_status)
    app.router.add_get("/mqtt", v1_mqtt)
    app.router.add_get("/_sim/state", sim_state)
    for name, handler in (
        ("plug", sim_plug),
        ("unplug", sim_unplug),
        ("reboot", sim_reboot),
        ("fault", sim_fault),
        ("clear", sim_clear),
    ):
        app.router.add_route("*", f"/_sim/{name}", handler)
    return app


class HttpFrontend(AppServer):
    """Serves one SimCharger's local HTTP API on host:port until closed."""

    def __init__(self, charger: SimCharger, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.charger = charger

    def make_app(self) -> web.Application:
        return make_app(self.charger)
