"""Reading values that come from outside (a command, an openWB set point, a meter): one error
type and one parser per kind of value, so every handler refuses the same input with the same
words. Pure: nothing here does I/O.

A rejected value is quoted in the words of the JSON it came as (`null`, `true`, `[1, 2]`;
text in quotes), cut to a short excerpt (jsontext.excerpt)."""

from __future__ import annotations

import math
from typing import Any

from . import jsontext

__all__ = ["Invalid", "as_float", "as_int", "decode", "parse_bool", "parse_whole", "shown"]

_TRUE = {"true", "1", "on", "yes", "enable", "enabled"}
_FALSE = {"false", "0", "off", "no", "disable", "disabled"}


class Invalid(ValueError):
    """An input that is refused; the text says why and is shown to the sender."""


def shown(value: Any) -> str:
    if isinstance(value, str):
        return jsontext.excerpt(repr(value))
    try:
        return jsontext.excerpt(jsontext.dumps(value, ensure_ascii=False))
    except (TypeError, ValueError):
        return jsontext.excerpt(repr(value))


def decode(payload: bytes) -> Any:
    """JSON, falling back to the UTF-8 text (openWB's `decode_payload` does the same); a
    payload over the size limit, not UTF-8 or nested too deeply is Invalid."""
    try:
        return jsontext.decode_command(payload)
    except jsontext.BadPayload as exc:
        raise Invalid(str(exc)) from None


def parse_bool(value: Any) -> bool:
    """Lenient where people are used to it: true/false, 1/0, on/off, yes/no."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise Invalid(f"expected true/false (or 1/0, on/off), got {shown(value)}")


def parse_whole(value: Any) -> int:
    """Whole amps: `10`, `"10"`, `10.0` (numbers in ASCII digits only)."""
    if isinstance(value, bool):
        raise Invalid(f"expected a number, got {shown(value)}")
    if isinstance(value, str):
        try:
            value = jsontext.parse_number(value)
        except ValueError:
            raise Invalid(f"expected a number, got {shown(value)}") from None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise Invalid(f"expected a number, got {shown(value)}")
    if not float(value).is_integer():
        raise Invalid(f"expected whole amps, got {shown(value)}")
    return int(value)


def as_float(value: Any, low: float | None = None, high: float | None = None) -> float:
    """A JSON number (not a string, not a bool), finite, within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"expected a number, got {shown(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise Invalid(f"expected a finite number, got {shown(value)}")
    if (low is not None and number < low) or (high is not None and number > high):
        raise Invalid(f"{shown(value)} is out of range")
    return number


def as_int(value: Any, low: int, high: int | None = None) -> int:
    """A JSON integer (3.0 is not one: openWB's validator refuses it where it wants an int,
    docs/protocol/openwb.md#types), within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"expected an integer, got {shown(value)}")
    if value < low or (high is not None and value > high):
        raise Invalid(f"{value!r} is out of range {low}..{high if high is not None else ''}")
    return value
