"""JSON in and out at the edges, for payloads nobody vouches for.

In: a size limit, no NaN/Infinity (Python's json accepts them, JSON does not), deep nesting
is a rejection (not a RecursionError), and numbers in text are ASCII digits only (Python's
float() also takes "١٦" and "1_6"). Out: never NaN or Infinity (a non-finite float becomes
null), and what is echoed into logs and results is cut to a short excerpt.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_PAYLOAD_BYTES = 64 * 1024
EXCERPT_CHARS = 100

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


class BadPayload(ValueError):
    pass


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(text: str | bytes) -> Any:
    """json.loads without NaN/Infinity; too deep a nesting is a ValueError."""
    try:
        return json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def loads_object(text: str | bytes) -> dict[str, Any]:
    """loads() of what must be a JSON object (a retained record or config anyone could have
    published over): anything else is a ValueError."""
    value = loads(text)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")  # noqa: TRY004 - one error for "unreadable"
    return value


def decode_command(payload: bytes) -> Any:
    """A command payload: JSON when it parses, else the bare text (`on`, `16`)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise BadPayload(f"payload too large ({len(payload)} bytes, limit {MAX_PAYLOAD_BYTES})")
    try:
        text = payload.decode("utf-8", "strict").strip()
    except UnicodeDecodeError:
        raise BadPayload("payload is not UTF-8 text") from None
    try:
        return loads(text)
    except ValueError as exc:
        if str(exc) == "nested too deeply":
            raise BadPayload("payload is nested too deeply") from None
        return text


def parse_number(text: str) -> float:
    """A number written in ASCII digits ("16", "12.5", "-3e2"); anything else is a
    ValueError, including "١٦", "1_6", " inf" and "nan"."""
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"not a number: {excerpt(text)}")
    return float(text)


def finite(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (recursively)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """json.dumps that never writes NaN or Infinity."""
    try:
        return json.dumps(value, allow_nan=False, **kwargs)
    except ValueError:
        return json.dumps(finite(value), allow_nan=False, **kwargs)


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """At most `limit` characters of a value for a log line or a result."""
    if isinstance(value, bytes | bytearray):
        text = bytes(value[: limit * 4]).decode("utf-8", "replace")
    elif isinstance(value, str):
        text = value
    else:
        try:
            text = dumps(value)
        except (TypeError, ValueError, RecursionError):
            text = repr(value)[: limit + 1]
    return text if len(text) <= limit else text[: limit - 1] + "…"
