"""The simulator's go-e cloud front-end (docs/protocol/go-e.md#cloud-v1, #cloud-v2), on its own
port:

- API v1 (`api.go-e.co`): `/api_status?token=T` and `/api?token=T&payload=k=v`, wrapped as
  `{"success":…}`, with `no token` / `wrong token` / `rate limiting` answers;
- API v2 (`<serial>.api.v3.go-e.io`): `/api/status` and `/api/set` with a Bearer token (or
  `token=`), 403 when offline or the token is wrong, 404 "Data is outdated", 202 on set.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from aiohttp import web

from .charger import SimCharger
from .firmware import Api
from .server import AppServer


@dataclass
class CloudState:
    charger: SimCharger
    token: str
    # v1 fair use: status calls closer together than this answer "rate limiting"
    min_status_interval_s: float = 0.0
    offline: bool = False  # v2: 403
    outdated: bool = False  # v2: 404 "Data is outdated"
    requests: list[tuple[float, str]] = field(default_factory=list)
    _last_status: float = -1e9

    def record(self, path: str) -> None:
        self.requests.append((time.monotonic(), path))


CLOUD_KEY = web.AppKey("cloud", CloudState)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(data, separators=(",", ":")),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _v1_token_error(state: CloudState, request: web.Request) -> web.Response | None:
    token = request.query.get("token")
    if not token:
        return _json({"success": False, "error": "no token"})
    if token != state.token:
        return _json({"success": False, "error": "wrong token"})
    return None


async def v1_status(request: web.Request) -> web.Response:
    state = request.app[CLOUD_KEY]
    state.record("/api_status")
    if state.charger.api != Api.V1:
        return _json({"success": False, "error": "other"})
    if error := _v1_token_error(state, request):
        return error
    now = time.monotonic()
    if now - state._last_status < state.min_status_interval_s:
        return _json({"success": False, "error": "rate limiting"})
    state._last_status = now
    return _json({"success": True, "age": 347, "data": state.charger.status_v1()})


async def v1_set(request: web.Request) -> web.Response:
    state = request.app[CLOUD_KEY]
    state.record("/api")
    if error := _v1_token_error(state, request):
        return error
    # The raw query, as the charger's own HTTP server takes it: go-e's example and evcc send
    # `payload=amp=16` with a raw `=` (go-eCharger-API-v1 EN doc, evcc charger/go-e/api.go);
    # a URL-encoded `amx%3D16` is not decoded here.
    raw = request.rel_url.raw_query_string
    payload = raw.split("payload=", 1)[1].split("&", 1)[0] if "payload=" in raw else ""
    if not payload:
        return _json({"success": False, "error": "no payload"})
    state.charger.set_v1(payload, via="cloud-v1")
    return _json({"success": True, "payload": payload})


def _v2_refusal(state: CloudState, request: web.Request) -> web.Response | None:
    auth = request.headers.get("Authorization", "")
    token = auth.removeprefix("Bearer ").strip() if auth else request.query.get("token", "")
    if state.offline or token != state.token or state.charger.api != Api.V2:
        return web.Response(status=403, text="forbidden")
    if state.outdated:
        return _json({"success": False, "reason": "Data is outdated", "age": 31000}, 404)
    return None


async def v2_status(request: web.Request) -> web.Response:
    state = request.app[CLOUD_KEY]
    state.record("/api/status")
    if refusal := _v2_refusal(state, request):
        return refusal
    keys = request.query["filter"].split(",") if "filter" in request.query else None
    return _json(
        state.charger.status_v2(keys),
        headers={"Last-Modified": formatdate(time.time() - 1.5, usegmt=True)},
    )


async def v2_set(request: web.Request) -> web.Response:
    state = request.app[CLOUD_KEY]
    state.record("/api/set")
    if refusal := _v2_refusal(state, request):
        return refusal
    params = {k: v for k, v in request.query.items() if k != "token"}
    _, answer = state.charger.set_v2(params, via="cloud-v2")
    if all(v is not True for v in answer.values()):
        return _json(answer, 422)
    return _json(answer, 202)


def make_app(state: CloudState) -> web.Application:
    app = web.Application()
    app[CLOUD_KEY] = state
    app.router.add_get("/api_status", v1_status)
    app.router.add_get("/api", v1_set)
    app.router.add_get("/api/status", v2_status)
    app.router.add_get("/api/set", v2_set)
    return app


class CloudFrontend(AppServer):
    """Serves the go-e cloud API (v1 and v2 paths) for one SimCharger."""

    def __init__(self, state: CloudState, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.state = state

    def make_app(self) -> web.Application:
        return make_app(self.state)
