"""The go-e cloud: API v1 (`api.go-e.co`, HW V1/V2) and API v2 (`<serial>.api.v3.go-e.io`,
V3 and later, firmware ≥ 052). docs/protocol/go-e.md#cloud-v1, #cloud-v2.

Tokens go in the query (v1: the only way) or the `Authorization: Bearer` header (v2) and
never into a log line or an error message: errors name the path, not the URL.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from ... import logs
from ..codec_v1 import encode_command
from ..codec_v2 import POLL_KEYS, check_set_answer, encode_set
from ..model import (
    ApiVersion,
    ChargerStatus,
    ChargerUnavailable,
    CodecError,
    WireValue,
    WriteRejected,
)
from .base import StatusDecoder, Transport, decode
from .httpclient import HttpClient

log = logs.get("goe_bridge.cloud")

CLOUD_V1_URL = "https://api.go-e.co"
CLOUD_V2_URL = "https://{serial}.api.v3.go-e.io"

# go-e API v1 EN doc, "Rate Limiting": /api_status about 25,000 requests a month, one call
# every ~107 s. The default poll interval stays above it.
CLOUD_V1_MIN_INTERVAL_S = 120.0
# After "rate limiting", wait this long before the next status request, doubling up to an hour.
RATE_LIMIT_BACKOFF_S = 300.0
RATE_LIMIT_BACKOFF_CAP_S = 3600.0

V1_ERRORS = {
    "no token": "the go-e cloud says: no token (set token_file or the token env variable)",
    "wrong token": "the go-e cloud says: wrong token (check the token from the app/reset card)",
    "rate limiting": "the go-e cloud says: rate limiting (fair use: one status call per 2 min)",
    "no payload": "the go-e cloud says: no payload",
    "other": "the go-e cloud reported an error ('other'); the charger may be offline",
}


class RateLimited(ChargerUnavailable):
    pass


class _CloudBase(Transport):
    kind = "cloud"

    def __init__(
        self,
        *,
        token: str,
        base_url: str,
        timeout_s: float,
        session: aiohttp.ClientSession | None,
    ) -> None:
        self._token = token
        self.base_url = base_url.rstrip("/")
        self._http = HttpClient(
            self.base_url, timeout_s, session, label="cloud GET", hide_error_text=True
        )
        self.data_age_s: float | None = None

    async def _request(
        self,
        path: str,
        params: Mapping[str, str],
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, str, Mapping[str, str]]:
        return await self._http.get(path, params, headers)

    @staticmethod
    def _json(path: str, text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            raise CodecError(f"cloud GET {path}: answer is not valid JSON: {text[:80]!r}") from None

    def _with_age(self, status: ChargerStatus) -> ChargerStatus:
        if self.data_age_s is None:
            return status
        return dataclasses.replace(status, data_age_s=round(self.data_age_s, 3))

    async def close(self) -> None:
        await self._http.close()


class CloudV1Transport(_CloudBase):
    """`/api_status?token=T&wait=0` → `{"success":true,"age":ms,"data":{…v1…}}`;
    `/api?token=T&payload=amx=16` → `{"success":true,"payload":"amx=16"}`."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str | None = None,
        timeout_s: float = 10.0,
        session: aiohttp.ClientSession | None = None,
        rate_limit_backoff_s: float = RATE_LIMIT_BACKOFF_S,
        clock: Any = time.monotonic,
    ) -> None:
        super().__init__(
            token=token, base_url=base_url or CLOUD_V1_URL, timeout_s=timeout_s, session=session
        )
        self.api = ApiVersion.V1
        self.rate_limit_backoff_s = rate_limit_backoff_s
        self._next_backoff = rate_limit_backoff_s
        self._not_before = 0.0
        self._clock = clock

    def _check(self, path: str, answer: Any) -> Mapping[str, Any]:
        if not isinstance(answer, Mapping):
            raise CodecError(f"cloud GET {path}: expected a JSON object")
        if answer.get("success") is True:
            return answer
        error = str(answer.get("error", "no error text"))
        if error == "rate limiting":
            wait = self._next_backoff
            self._not_before = self._clock() + wait
            self._next_backoff = min(self._next_backoff * 2, RATE_LIMIT_BACKOFF_CAP_S)
            raise RateLimited(f"{V1_ERRORS[error]}; next try in {wait:g} s")
        raise ChargerUnavailable(V1_ERRORS.get(error, f"the go-e cloud says: {error}"))

    def _respect_rate_limit(self) -> None:
        remaining = self._not_before - self._clock()
        if remaining > 0:
            # Not sent at all: the cloud asked us to slow down.
            raise RateLimited(f"cloud v1 rate limited; next try in {remaining:.0f} s")

    async def read_status(self) -> ChargerStatus:
        self._respect_rate_limit()
        status_code, text, _ = await self._request(
            "/api_status", {"token": self._token, "wait": "0"}
        )
        if status_code != 200:
            raise ChargerUnavailable(f"cloud GET /api_status: HTTP {status_code}")
        answer = self._check("/api_status", self._json("/api_status", text))
        data = answer.get("data")
        if not isinstance(data, Mapping):
            raise CodecError("cloud GET /api_status: no status object in 'data'")
        age = answer.get("age")
        self.data_age_s = age / 1000 if isinstance(age, int | float) else None
        self._next_backoff = self.rate_limit_backoff_s
        self.firmware = str(data.get("fwv") or "") or None
        return self._with_age(decode(ApiVersion.V1, data))

    async def write(self, changes: Mapping[str, WireValue]) -> None:
        for key, value in changes.items():
            payload = encode_command(key, value)
            # `payload=amx=16` with a raw `=`, as go-e's own example (API v1 EN doc,
            # `https://api.go-e.co/api?payload=amp=16&token=…`) and evcc's cloud code
            # (charger/go-e/api.go: `url += "&payload=" + payload`) send it, and as the local
            # v1 write does; URL-encoded (`amx%3D16`) it relies on the cloud decoding it.
            status_code, text, _ = await self._http.get(
                "/api", raw_query=f"token={quote(self._token, safe='')}&payload={payload}"
            )
            if status_code != 200:
                raise ChargerUnavailable(f"cloud GET /api: HTTP {status_code}")
            answer = self._json("/api", text)
            try:
                self._check("/api", answer)
            except RateLimited:
                raise
            except ChargerUnavailable as exc:
                raise WriteRejected(key, str(exc)) from None
            # The cloud only forwards; the next status read verifies the value.


class CloudV2Transport(_CloudBase):
    """`https://<serial>.api.v3.go-e.io/api/status` and `/api/set` with a Bearer token.
    200 data · 403 charger offline or cloud API off · 404 no data newer than `age` ·
    set: 202 forwarded (verified by a later read) · 422 all keys rejected."""

    def __init__(
        self,
        serial: str,
        token: str,
        *,
        base_url: str | None = None,
        timeout_s: float = 10.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(
            token=token,
            base_url=base_url or CLOUD_V2_URL.format(serial=serial),
            timeout_s=timeout_s,
            session=session,
        )
        self.api = ApiVersion.V2
        self.serial = serial
        self._base: dict[str, Any] = {}
        self._decode = StatusDecoder()

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def _fail(self, path: str, status_code: int, text: str) -> ChargerUnavailable:
        if status_code == 403:
            return ChargerUnavailable(
                f"cloud {path}: HTTP 403: the charger is offline, or the cloud API is not "
                "enabled (go-e app: Internet > Advanced settings > cloud API) or the token is wrong"
            )
        if status_code == 404:
            return ChargerUnavailable(
                f"cloud {path}: HTTP 404: the cloud has no recent data from the charger "
                f"(data outdated): {text[:100]}"
            )
        return ChargerUnavailable(f"cloud {path}: HTTP {status_code} {text[:100]!r}")

    async def read_status(self) -> ChargerStatus:
        params = {} if not self._base else {"filter": ",".join(POLL_KEYS)}
        status_code, text, headers = await self._request("/api/status", params, self._headers)
        if status_code != 200:
            raise self._fail("/api/status", status_code, text)
        payload = self._json("/api/status", text)
        if not isinstance(payload, dict):
            raise CodecError("cloud /api/status: expected a JSON object")
        if not self._base:
            self._base = payload
            self.firmware = str(payload.get("fwv") or "") or None
        self.data_age_s = _age_from(headers.get("last-modified"))
        return self._with_age(self._decode(ApiVersion.V2, {**self._base, **payload}))

    async def write(self, changes: Mapping[str, WireValue]) -> None:
        status_code, text, _ = await self._request("/api/set", encode_set(changes), self._headers)
        if status_code in (200, 202):
            # 202: forwarded to the charger, not yet applied; the next read verifies.
            if status_code == 200 and text.strip().startswith("{"):
                check_set_answer(changes, self._json("/api/set", text))
            return
        if status_code == 422:
            try:
                answer = json.loads(text)
            except ValueError:
                answer = None
            if isinstance(answer, Mapping):
                check_set_answer(changes, answer)
            raise WriteRejected(",".join(changes), f"HTTP 422 {text[:120]!r}")
        raise self._fail("/api/set", status_code, text)

    def describe(self) -> dict[str, Any]:
        return {"type": "cloud", "api": "v2"}


def _age_from(last_modified: str | None) -> float | None:
    if not last_modified:
        return None
    try:
        stamp = email.utils.parsedate_to_datetime(last_modified)
    except (TypeError, ValueError):
        return None
    return max(0.0, time.time() - stamp.timestamp())
