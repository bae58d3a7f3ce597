"""pydantic's validation errors in the words `check-config` prints: one line per problem, with
the key path users write (`chargers[0].connection.port: …`), and for text that YAML read as a
number, a boolean or a date, how to quote it."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from .base import UnknownKey
from .model import CONNECTION_TYPES, ID_PROBLEM

Loc = tuple[str | int, ...]
# The text YAML had at a key path, where it was a plain scalar (None where unknown).
ScalarText = Callable[[Loc], str | None]

_SECRET_KEYS = ("password", "token")
_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "string_type": "a string",
}


class ConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def describe(exc: ValidationError, scalar_text: ScalarText | None = None) -> list[str]:
    return [_problem(error, scalar_text) for error in exc.errors(include_url=False)]


def _path(loc: Loc) -> str:
    out = ""
    for i, part in enumerate(loc):
        # a broker name YAML read as a number (`brokers: {1: …}`) is a key, not an index
        if isinstance(part, int) and (i == 0 or loc[i - 1] != "brokers"):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "config"


def _choices(expected: str) -> str:
    """pydantic's "'a', 'b' or 'c'" as "'a' | 'b' | 'c'"."""
    return expected.replace(", ", " | ").replace(" or ", " | ")


def _yaml_kind(value: Any) -> str | None:
    """What YAML made of an unquoted scalar that was meant as text."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, datetime.datetime):
        return "a date and time"
    if isinstance(value, datetime.date):
        return "a date"
    return None


def _kind_word(value: Any) -> str:
    """The kind alone, nothing of the value (for secrets)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a date"


def _quote(text: str, kind: str, key: str) -> str:
    return f"YAML read {text} as {kind}; quote it: {key}: {json.dumps(text)}"


def _problem(error: Any, scalar_text: ScalarText | None) -> str:
    raw_loc: Loc = error["loc"]
    # a connection's place carries pydantic's tag of the union member: not a key users write
    loc = tuple(
        part
        for i, part in enumerate(raw_loc)
        if not (i and raw_loc[i - 1] == "connection" and part in CONNECTION_TYPES)
    )
    kind, value, ctx = error["type"], error["input"], error.get("ctx") or {}
    is_name = bool(loc) and loc[-1] == "[key]"  # a key of `brokers:`
    if is_name:
        loc = loc[:-1]
    key = str(loc[-1]) if loc else "config"
    path = _path(loc)

    def text_at() -> str | None:
        return scalar_text(loc) if scalar_text else None

    if kind == "problem":
        if ctx.get("key"):
            path = _path((*loc[:-1], ctx["key"]))
        return f"{path}: {ctx['problem']}"
    if kind == "missing":
        return f"{path}: required"
    if kind == "extra_forbidden":
        valid = ", ".join(value.valid) if isinstance(value, UnknownKey) else "?"
        return f"{path}: unknown key; valid keys here: {valid}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = value.get("type") if isinstance(value, dict) else None
        return f"{path}.type: {tag!r} is not valid; choose " + " | ".join(
            repr(t) for t in CONNECTION_TYPES
        )
    if kind in ("model_type", "model_attributes_type"):
        if loc[-3:-2] == ("chargers",) and key == "connection":
            return f"{path}: expected a mapping with type: " + " | ".join(CONNECTION_TYPES)
        return f"{path}: expected a mapping, got {value!r}"
    if kind in ("dict_type", "mapping_type"):
        return f"{path}: expected a mapping of names"
    if kind in ("tuple_type", "list_type", "iterable_type"):
        return f"{path}: expected a list"
    if kind == "literal_error":
        yaml_kind = _yaml_kind(value)
        text = text_at() or str(value)
        if yaml_kind and f"'{text}'" in ctx["expected"]:  # protocol: 5 meant "5"
            return f"{path}: {_quote(text, yaml_kind, key)}"
        return f"{path}: {value!r} is not valid; choose {_choices(ctx['expected'])}"
    if kind == "string_pattern_mismatch":
        return f"{path}: name {ID_PROBLEM}" if is_name else f"{path}: {value!r} {ID_PROBLEM}"
    if kind == "greater_than_equal":
        return f"{path}: {value} is below the minimum {ctx['ge']:g}"
    if kind == "less_than_equal":
        return f"{path}: {value} is above the maximum {ctx['le']:g}"
    if kind in _EXPECTED and value is None:
        return f"{path}: must not be empty"
    if kind == "string_type":
        return f"{path}: {_text_problem(value, key, is_name, text_at())}"
    if kind in _EXPECTED:
        return f"{path}: expected {_EXPECTED[kind]}, got {value!r}"
    return f"{path}: {error['msg']}"


def _text_problem(value: Any, key: str, is_name: bool, text: str | None) -> str:
    if key.endswith("_file") and not is_name:
        return "expected a file path"
    yaml_kind = _yaml_kind(value)
    if yaml_kind is None:
        return f"expected a string, got {value!r}"
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if text is not None and not is_name and key in _SECRET_KEYS:
        # password: 0123 is the octal number 83 to YAML 1.1. The secret itself is never
        # shown: a failed start prints this line to the journal or the container log.
        return f'YAML read it unquoted as {_kind_word(value)}; quote it: {key}: "…"'
    if text is not None and not is_name and not number:
        # yes/on are booleans to YAML 1.1, 2026-05-01 a date
        return _quote(text, yaml_kind, key)
    if number:
        return f"expected a string, got the number {value!r}; quote it"
    return f"expected a string, got {yaml_kind}; quote it"
