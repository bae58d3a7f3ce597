"""Reading a config: YAML file + environment overrides + `*_file` secrets → one frozen,
validated `Config`, or a ConfigError with every problem and its key path; and the warnings
about secrets other users can read."""

from __future__ import annotations

import copy
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .base import EnvText
from .model import Config
from .problems import ConfigError, Loc, ScalarText, describe

ENV_PREFIX = "GOE_BRIDGE__"


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, override, resolve secrets, validate. Raises ConfigError with every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    data = _parse(text, str(path))
    config = _validate(data, os.environ if env is None else env, text)
    warnings = (
        _permission_warnings(p, data) + _secret_file_warnings(data) + _broker_warnings(config)
    )
    return _stamped(config, str(path), warnings)


# The simple case from the environment alone (`docker run -e …`): one broker `home`, one
# charger at index 0 over local HTTP; GOE_BRIDGE__… variables fill in the rest, e.g.
# GOE_BRIDGE__BROKERS__HOME__HOST and GOE_BRIDGE__CHARGERS__0__CONNECTION__HOST.
ENV_ONLY_BASE: Mapping[str, Any] = {
    "brokers": {"home": {}},
    "chargers": [{"id": "goe", "connection": {"type": "http"}}],
}


def has_env_config(env: Mapping[str, str]) -> bool:
    """Variables that describe a broker or a charger (the image's own HTTP settings do not
    count: a forgotten config mount must still say so)."""
    return any(
        name.startswith((f"{ENV_PREFIX}BROKERS__", f"{ENV_PREFIX}CHARGERS__")) for name in env
    )


def from_environment(env: Mapping[str, str]) -> Config:
    """A config from GOE_BRIDGE__… variables alone, on top of ENV_ONLY_BASE."""
    config = from_data(copy.deepcopy(dict(ENV_ONLY_BASE)), env)
    return _stamped(config, "environment", _broker_warnings(config))


def loads(text: str, env: Mapping[str, str] | None = None) -> Config:
    """Load from a YAML string (tests, tools)."""
    return _validate(_parse(text, "config"), env or {}, text)


def from_data(data: dict[str, Any], env: Mapping[str, str]) -> Config:
    """Validate a config given as data (the add-on's, the demo's)."""
    return _validate(data, env, None)


def normalized(config: Config) -> dict[str, Any]:
    """The effective config as plain data, secrets masked (`check-config` prints it)."""
    return config.model_dump(mode="json")


def schema() -> dict[str, Any]:
    """The JSON Schema of config.yaml (for editors and the add-on)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **Config.model_json_schema()}


def _stamped(config: Config, source: str, warnings: list[str]) -> Config:
    config._source = source
    config._warnings = tuple(warnings)
    return config


# libyaml's parser (PyYAML's C extension, where the build has it: the PyPI wheels and
# Debian's python3-yaml do) with the same safe constructor: a 500-charger config parses in
# 0.03 s instead of 0.26 s of the start (bench/floor.py start-up profile). Its error texts
# lack the line excerpt and caret of the pure-Python parser, which therefore reports a file
# that does not parse.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse(text: str, name: str) -> Any:
    try:
        data = yaml.load(text, Loader=_FAST_LOADER)  # a safe loader: SafeConstructor
    except yaml.YAMLError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError([f"{name}: not valid YAML: {exc}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(["config: the top level must be a mapping"])
    return data


def _validate(data: dict[str, Any], env: Mapping[str, str], text: str | None) -> Config:
    problems: list[str] = []
    data = dict(data)
    _apply_env(data, env, problems)
    brokers, chargers = data.get("brokers"), data.get("chargers")
    # the names a broker reference may use, known before the brokers themselves are valid
    context = {
        "brokers": [str(name) for name in brokers] if isinstance(brokers, dict) else [],
        "chargers": isinstance(chargers, list) and bool(chargers),
    }
    try:
        config = Config.model_validate(data, context=context)
    except ValidationError as exc:
        problems += describe(exc, _scalar_text(text) if text is not None else None)
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config


def _scalar_text(text: str) -> ScalarText:
    """The text of an unquoted scalar at a key path, as the user wrote it (`0123`, not the 83
    YAML made of it), looked up in the YAML's node tree once a problem needs it."""
    root: list[yaml.Node | None] = []

    def at(loc: Loc) -> str | None:
        if not root:
            try:
                root.append(yaml.compose(text, Loader=_FAST_LOADER))
            except yaml.YAMLError:
                root.append(None)
        node = root[0]
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if k.value == str(part)), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                node = node.value[part] if part < len(node.value) else None
            else:
                return None
        # plain: no quotes (libyaml says "", the pure-Python parser None)
        plain = isinstance(node, yaml.ScalarNode) and not node.style
        return str(node.value) if plain and node is not None else None

    return at


def _permission_warnings(path: Path, data: Any) -> list[str]:
    """A config file holding secrets must not be readable by others."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return []
    if not mode & stat.S_IROTH or not _holds_secret(data):
        return []
    return [
        f"{path} holds a password or token and is readable by other users; "
        f"run: chmod 600 {path} (or use password_file / token_file)"
    ]


def _holds_secret(data: Any) -> bool:
    """A password or token written in the file (one from the environment is not)."""
    if isinstance(data, dict):
        return any(
            (key in ("password", "token") and value is not None and not isinstance(value, EnvText))
            or _holds_secret(value)
            for key, value in data.items()
        )
    return isinstance(data, list) and any(_holds_secret(item) for item in data)


def _secret_file_warnings(data: Any, path: str = "") -> list[str]:
    """A `*_file` secret that every user on the machine can read."""
    out: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            sub = f"{path}.{key}" if path else str(key)
            if str(key) in ("password_file", "token_file") and isinstance(value, str):
                try:
                    mode = Path(value).stat().st_mode
                except OSError:
                    continue
                if mode & stat.S_IROTH:
                    out.append(
                        f"{sub}: {value} is readable by every user; run: chmod 600 {value} "
                        "(or 640 with the bridge's group)"
                    )
            else:
                out.extend(_secret_file_warnings(value, sub))
    elif isinstance(data, list):
        for i, item in enumerate(data):
            out.extend(_secret_file_warnings(item, f"{path}[{i}]"))
    return out


def _broker_warnings(config: Config) -> list[str]:
    return [
        f"brokers.{name}.password: set without brokers.{name}.username; a password is sent "
        "only together with a user name (MQTT 3.1.1 §3.1.2.9), so the broker sees an "
        "anonymous client (mosquitto: "
        "'not authorised')"
        for name, broker in config.brokers.items()
        if broker.password is not None and not broker.username
    ]


def _apply_env(data: dict[str, Any], env: Mapping[str, str], problems: list[str]) -> None:
    """GOE_BRIDGE__BROKERS__HOME__PASSWORD=… sets brokers.home.password. List items are
    addressed by index or by charger id: GOE_BRIDGE__CHARGERS__GARAGE__LIMITS__MAX_CURRENT_A."""
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        # Kept as text until the key's type is known: a password "0123" stays "0123" (YAML
        # would read it as the octal number 83); numbers and booleans are parsed then.
        value = EnvText(env[name]) if env[name] != "" else None
        node: Any = data
        path = ""
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                index = _list_index(node, part)
                if index is None:
                    problems.append(f"{name}: no list item {part!r} at {path or 'top level'}")
                    break
                if last:
                    node[index] = value
                else:
                    node = node[index]
                path += f"[{index}]"
                continue
            if not isinstance(node, dict):
                problems.append(f"{name}: {path} is not a mapping")
                break
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
            path = f"{path}.{part}" if path else part


def _list_index(items: list[Any], part: str) -> int | None:
    if part.isdigit() and int(part) < len(items):
        return int(part)
    for i, item in enumerate(items):
        if isinstance(item, dict) and str(item.get("id", "")).lower() == part:
            return i
    return None
