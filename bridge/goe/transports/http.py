"""Local HTTP: API v2 (`/api/status?filter=…`, `/api/set`) and API v1 (`/status`,
`/mqtt?payload=`), with `api: auto` detection (docs/protocol/go-e.md#http-v2, #http-v1)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import aiohttp
from yarl import URL

from ... import logs
from .. import codec_common, codec_v1, codec_v2
from ..model import (
    SECRET_KEYS,
    ApiVersion,
    ChargerStatus,
    ChargerUnavailable,
    CodecError,
    WireValue,
    WriteRejected,
    firmware_major,
    firmware_version,
)
from .base import StatusDecoder, Transport
from .httpclient import HttpClient

log = logs.get("goe_bridge.http")

# go-e http-en.md: the `filter` parameter as a comma-separated list exists "since firmware
# 051.4"; up to 051.3 it was a JSON array with a typical maximum of about ten entries.
COMMA_FILTER_SINCE = (51, 4)
OLD_FILTER_MAX = 10

# Detection is redone after this many failed polls in a row (the user may have switched
# the API in the app, or the charger got a firmware update).
REDETECT_AFTER = 3

NOT_ENABLED_HINT = (
    "neither the HTTP API v2 (/api/status) nor the legacy API v1 (/status) answers: "
    "enable 'HTTP API v2' (key hai) or the legacy API (key hla) in the go-e app under "
    "Internet > Advanced settings (go-e API v1 #64)"
)


_POLLED = frozenset(codec_v2.POLL_KEYS)

# go-eCharger-API-v1 #64, #70 (050.1, 051.x): every request answers this until the charger
# is power-cycled; the bridge never reboots a charger by itself.
API_LOCK_TEXT = "couldn't take api lock"
API_LOCK_HINT = (
    "the charger's API is locked (a firmware fault of 050/051 that lasts until a power cycle, "
    "go-eCharger-API-v1 #64); restart the charger (app, or its power)"
)


class HttpTransport(Transport):
    kind = "http"

    def __init__(
        self,
        host: str,
        port: int = 80,
        api: Literal["auto", "v1", "v2"] = "auto",
        timeout_s: float = 5.0,
        session: aiohttp.ClientSession | None = None,
        *,
        max_current_a: int = 32,
        keep_raw: bool = True,
    ) -> None:
        self.base_url = f"http://{host}:{port}" if port != 80 else f"http://{host}"
        self.configured_api = api
        self.api = None if api == "auto" else ApiVersion(api)
        self._http = HttpClient(self.base_url, timeout_s, session)
        # Of the full v2 status read at start-up, the part the polls do not ask for (identity,
        # configuration) that every poll is laid over; None until it is read.
        self._static: dict[str, Any] | None = None
        # False: of the start-up status only what decode reads (codec_v2.STATIC_KEYS) is
        # kept; the rest (~100 keys on a real charger) only feeds the raw mirror
        # (publish.raw), ~10 kB per charger (bench/floor.py, tracemalloc)
        self.keep_raw = keep_raw
        # the polls' URLs, built once per firmware (the filter form depends on it), and the
        # last answer to each, bytes and parsed: the same bytes again are not parsed again
        self._poll_urls: list[URL] = []
        self._answers: dict[URL, tuple[bytes, Any]] = {}
        self._decode = StatusDecoder()
        self.failures = 0
        # the configured limit: the stored `amp` a 042.0 charger is raised to, once
        self.max_current_a = max_current_a
        self.eeprom_raised = False
        self._warned_400 = False

    # ------------------------------------------------------------------ plumbing

    async def _request(self, path: str, params: Mapping[str, str] | None = None) -> tuple[int, str]:
        status, text, _ = await self._http.get(path, params)
        return status, text

    @staticmethod
    def _parse(path: str, text: str | bytes) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            shown = text[:80] + ("…" if len(text) > 80 else "")
            raise CodecError(f"GET {path}: answer is not valid JSON: {shown!r}") from None

    async def _get_json(self, path: str) -> Any:
        return await self._get_json_url(self._http.url(path, {}), path)

    async def _get_json_url(self, url: URL, path: str) -> Any:
        status, body = await self._http.get_bytes(url, path)
        if status == 200:
            last = self._answers.get(url)
            if last is not None and last[0] == body:
                return last[1]  # read only, never changed (read_raw copies what it merges)
            data = self._parse(path, body)
            if url in self._poll_urls:
                self._answers[url] = (body, data)
            return data
        if status == 400 and (data := self._data_despite_400(path, body)) is not None:
            return data
        text = body[:120].decode("utf-8", "replace")
        if API_LOCK_TEXT in text:
            raise ChargerUnavailable(f"GET {path}: HTTP {status} {text!r}: {API_LOCK_HINT}")
        raise ChargerUnavailable(f"GET {path}: HTTP {status} {text!r}")

    def _data_despite_400(self, path: str, body: str | bytes) -> dict[str, Any] | None:
        """A PRO on 60.3 answers the full status, and a filter naming a key it does not have
        (`cbl`), with HTTP 400 and the data anyway (go-eCharger-API-v2 #312, one report):
        a JSON object in a 400 is the status."""
        if not path.startswith("/api/status"):
            return None
        try:
            data = json.loads(body)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        if not self._warned_400:
            self._warned_400 = True
            log.info(
                "charger.status_with_http_400",
                url=self.base_url,
                note="the firmware answers HTTP 400 with the data (go-eCharger-API-v2 #312)",
            )
        return data

    # ------------------------------------------------------------------ detection

    def _filters(self, keys: tuple[str, ...]) -> list[str]:
        """The `filter` values for `keys` in the form this charger's firmware takes."""
        version = firmware_version(self.firmware)
        if version is None or version >= COMMA_FILTER_SINCE:
            return [",".join(keys)]
        return [
            json.dumps(list(keys[i : i + OLD_FILTER_MAX]), separators=(",", ":"))
            for i in range(0, len(keys), OLD_FILTER_MAX)
        ]

    async def detect(self) -> ApiVersion:
        """v2 first, then v1 (`/status`). The v2 probe is the full `/api/status` that a v2
        charger is read once for anyway (identity, configuration): one request, not a
        filtered probe and then the full read (bench/floor.py start-up profile). Without a
        filter, the filter form of older firmware (400 before 051.4) does not arise."""
        status, text = await self._request("/api/status")
        data = self._data_despite_400("/api/status", text) if status == 400 else None
        if status == 200 or data is not None:
            self._take_base(data if data is not None else self._parse("/api/status", text))
            self.api = ApiVersion.V2
            return self.api
        v2_status = status
        status, text = await self._request("/status")
        if status == 200:
            payload = self._parse("/status", text)
            self.api = ApiVersion.V1
            if isinstance(payload, dict):
                self.firmware = str(payload.get("fwv") or "") or None
            return self.api
        if v2_status == 404 and status == 404:
            raise ChargerUnavailable(NOT_ENABLED_HINT)
        raise ChargerUnavailable(
            f"API detection failed: /api/status answered HTTP {v2_status}, /status HTTP {status}"
        )

    async def _load_base(self) -> None:
        """The full v2 status, once: identity and configuration keys the polls omit."""
        self._take_base(await self._get_json("/api/status"))

    def _take_base(self, payload: Any) -> None:
        if not isinstance(payload, dict):
            raise CodecError("GET /api/status: expected a JSON object")
        # The start-up status supplies only what the polls do not ask for: a polled key the
        # charger stopped sending is gone, not frozen at its start-up value.
        # Secrets are left out here once, so a poll's payload has none to filter
        # (docs/design.md#secrets).
        self._static = {
            k: v
            for k, v in payload.items()
            if k not in _POLLED
            and k not in SECRET_KEYS
            and (self.keep_raw or codec_v2.reads_static(k))
        }
        fwv = payload.get("fwv")
        self.firmware = str(fwv) if fwv is not None else None
        self._poll_urls = []  # the filter form follows the firmware
        self._answers = {}

    # ------------------------------------------------------------------ reading

    async def read_raw(self) -> tuple[ApiVersion, dict[str, Any]]:
        try:
            if self.api is None:
                await self.detect()
            if self.api is ApiVersion.V2:
                if self._static is None:
                    await self._load_base()
                if not self._poll_urls:
                    self._poll_urls = [
                        self._http.url("/api/status", {"filter": value})
                        for value in self._filters(codec_v2.POLL_KEYS)
                    ]
                payload = {}
                for url in self._poll_urls:
                    part = await self._get_json_url(url, "/api/status")
                    if not isinstance(part, dict):
                        raise CodecError("GET /api/status: expected a JSON object")
                    payload.update(part)
                fwv = payload.get("fwv")
                if fwv is not None and str(fwv) != self.firmware:
                    # a firmware update (the charger rebooted into it): identity and
                    # configuration are read again, and the filter form may have changed
                    log.info("charger.firmware_changed", url=self.base_url,
                             old=self.firmware, new=str(fwv))  # fmt: skip
                    await self._load_base()
                merged = {**(self._static or {}), **payload}
            else:
                payload = await self._get_json("/status")
                if not isinstance(payload, dict):
                    raise CodecError("GET /status: expected a JSON object")
                merged = payload
                self.firmware = str(payload.get("fwv") or "") or self.firmware
        except ChargerUnavailable:
            self._failed()
            raise
        assert self.api is not None
        return self.api, merged

    async def read_status(self) -> ChargerStatus:
        api, payload = await self.read_raw()
        try:
            status = self._decode(api, payload)
        except CodecError:
            self._failed()
            raise
        self.failures = 0
        return status

    def _failed(self) -> None:
        self.failures += 1
        if self.configured_api == "auto" and self.failures >= REDETECT_AFTER and self.api:
            log.info("charger.redetect", url=self.base_url, failures=self.failures)
            self.api = None
            self._static = None

    # ------------------------------------------------------------------ writing

    async def write(self, changes: Mapping[str, WireValue]) -> None:
        if not changes:
            return
        if self.api is None:
            await self.detect()
        if self.api is ApiVersion.V2:
            await self._write_v2(changes)
        else:
            for key, value in changes.items():
                await self._write_v1(key, value)

    async def _write_v2(self, changes: Mapping[str, WireValue]) -> None:
        params = codec_v2.encode_set(changes)
        status, text = await self._request("/api/set", params)
        if status == 404:
            raise ChargerUnavailable(f"GET /api/set: HTTP 404: {NOT_ENABLED_HINT}")
        try:
            answer = json.loads(text)
        except ValueError:
            if status >= 500:
                raise WriteRejected(",".join(changes), f"HTTP {status} {text[:120]!r}") from None
            raise CodecError(f"GET /api/set: answer is not valid JSON: {text[:80]!r}") from None
        # http-en.md: {"amp":true}; a failing key gives its error text and HTTP 500.
        codec_v2.check_set_answer(changes, answer)
        if status >= 300:
            raise WriteRejected(",".join(changes), f"HTTP {status} {text[:120]!r}")

    async def _write_v1(self, key: str, value: WireValue) -> None:
        major = firmware_major(self.firmware)
        if key == "amp" and major is not None and major >= 40:
            # go-e API v1 EN doc: amp goes to EEPROM (~100k cycles); amx is the volatile
            # write for frequent changes. Never wear the flash.
            raise ValueError("amp must not be written on firmware >= 040; use amx")
        command = codec_v1.encode_command(key, value)
        # Exactly as evcc (charger/go-e/api.go) and openWB 1.9 (modules/goe) send it:
        # `payload=amx=16` with a raw `=`. URL-encoded (`amx%3D16`) it depends on the
        # charger's small HTTP server decoding the query, which the proven clients never
        # rely on (docs/protocol/go-e.md#http-v1).
        status, text, _ = await self._http.get("/mqtt", raw_query=f"payload={command}")
        if status != 200:
            raise WriteRejected(key, f"HTTP {status} {text[:120]!r}")
        answer = self._parse("/mqtt", text)
        if not isinstance(answer, dict):
            raise CodecError("GET /mqtt: expected the status object")
        # v1 doc: "an unsuccessful command can be recognized by the fact that the value in
        # the status object has not changed".
        if (
            key == "amx"
            and isinstance(value, int)
            and not codec_v1.verify(key, value, answer)
            and (stored := self._stored_below(value, answer)) is not None
        ):
            # HW V2 firmware 042.0 takes no `amx` above the stored `amp` (go-eCharger-API-v1
            # #114, snaptec/openWB #2778). Raise the stored value once, to the limit in effect
            # (limits.max_current_a, the charger's `ama` and the cable): never more, because
            # after a reboot (amx is volatile) or with the bridge stopped the charger runs at
            # the stored value. Then regulate with `amx` below it, as the community does.
            amps = self._limit_in_effect(value, answer)
            log.warning(
                "charger.eeprom_raised",
                url=self.base_url,
                old_amp=stored,
                new_amp=amps,
                firmware=self.firmware,
                reason="amx above the stored amp is ignored by this firmware; the charger "
                "runs at the new stored amp after a reboot until the bridge writes amx again",
            )
            self.eeprom_raised = True
            status, text, _ = await self._http.get("/mqtt", raw_query=f"payload=amp={amps}")
            if status != 200:
                raise WriteRejected("amp", f"HTTP {status} {text[:120]!r}")
            status, text, _ = await self._http.get("/mqtt", raw_query=f"payload={command}")
            answer = self._parse("/mqtt", text) if status == 200 else {}
            if not isinstance(answer, dict):
                raise CodecError("GET /mqtt: expected the status object")
        if not codec_v1.verify(key, value, answer):
            shown = ("amx" if "amx" in answer else "amp") if key == "amx" else key
            raise WriteRejected(
                key, f"not applied: status shows {shown}={answer.get(shown)!r} after {command}"
            )

    def _stored_below(self, value: int, answer: Mapping[str, Any]) -> int | None:
        """The stored `amp` when it is below the `amx` that did not take and it was not
        raised yet; else None."""
        if self.eeprom_raised:
            return None
        stored = _int_or_none(answer, "amp")
        return stored if stored is not None and stored < value else None

    def _limit_in_effect(self, value: int, answer: Mapping[str, Any]) -> int:
        """min(limits.max_current_a, ama, cable), at least the value being written."""
        limit = self.max_current_a
        for key in ("ama", "cbl"):
            other = _int_or_none(answer, key)
            if other is not None and other > 0:  # cbl "0": no cable limit
                limit = min(limit, other)
        return max(value, min(limit, 32))

    async def close(self) -> None:
        await self._http.close()


def _int_or_none(answer: Mapping[str, Any], key: str) -> int | None:
    """An integer of a write's answer, or None for anything else: the codecs' reader, so a
    `1e999` or `"--5"` is no OverflowError or ValueError out of a write."""
    try:
        return codec_common.as_int(answer, key)
    except CodecError:
        return None
