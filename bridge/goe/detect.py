"""Tell which API a saved payload speaks, and decode it (`goe-bridge decode`). Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from . import codec_v1, codec_v2
from .model import ApiVersion, ChargerStatus, CodecError, firmware_major


class DecodeFailed(Exception):
    pass


def api_of(payload: Mapping[str, Any]) -> ApiVersion | None:
    """v1 sends scalars as strings ("car":"1"), v2 as JSON types ("car":1, "alw":true)."""
    for key in ("car", "alw", "amp", "err"):
        if key in payload:
            value = payload[key]
            if isinstance(value, str):
                return ApiVersion.V1
            if value is None or isinstance(value, bool | int | float):
                return ApiVersion.V2
    major = firmware_major(str(payload.get("fwv") or ""))
    if major is not None:
        return ApiVersion.V2 if major >= 50 else ApiVersion.V1
    return None


def unwrap(payload: Any) -> tuple[Any, dict[str, Any]]:
    """Cloud v1 wraps the status: {"success":true,"age":ms,"data":{…}} (API v1 EN doc)."""
    if isinstance(payload, Mapping) and "success" in payload and "data" in payload:
        if payload.get("success") is not True:
            raise DecodeFailed(
                f"cloud answer without data: {payload.get('error', 'no error text')}"
            )
        meta: dict[str, Any] = {"source": "cloud-v1"}
        if isinstance(payload.get("age"), int | float):
            meta["data_age_s"] = payload["age"] / 1000
        return payload["data"], meta
    return payload, {}


def decode_text(text: str, api: str = "auto") -> tuple[ChargerStatus, dict[str, Any]]:
    stripped = text.strip()
    if not stripped:
        raise DecodeFailed("empty input")
    try:
        payload = json.loads(stripped)
        meta: dict[str, Any] = {}
    except ValueError as exc:
        # Not JSON: maybe a go-e MQTT v2 capture, one "<topic> <json>" per line.
        try:
            payload = codec_v2.assemble_lines(stripped.splitlines())
        except CodecError:
            raise DecodeFailed(f"not JSON ({exc}) and not a go-e MQTT capture") from None
        meta = {"source": "mqtt-v2-capture"}
        if api == "auto":
            api = "v2"
    payload, wrapper_meta = unwrap(payload)
    meta.update(wrapper_meta)
    if not isinstance(payload, Mapping):
        raise DecodeFailed(f"expected a JSON object, got {type(payload).__name__}")
    version = ApiVersion(api) if api != "auto" else api_of(payload)
    if version is None:
        raise DecodeFailed("cannot tell the API version from this payload; pass --api v1|v2")
    try:
        status = codec_v1.decode(payload) if version is ApiVersion.V1 else codec_v2.decode(payload)
    except CodecError as exc:
        raise DecodeFailed(str(exc)) from None
    return status, meta
