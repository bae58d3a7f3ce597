"""Configuration: YAML file + environment overrides + `*_file` secrets → one frozen,
validated `Config` (docs/design.md#configuration).

Every problem is collected with the path of its key (`chargers[0].connection.port: …`), so
`goe-bridge check-config` can print them all at once. Unknown keys are errors.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import stat
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

ENV_PREFIX = "GOE_BRIDGE__"

# MQTT topic levels built from ids must not contain wildcards, separators or NUL (they would
# subscribe to or publish on other topics).
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TOPIC_FORBIDDEN = ("+", "#", "\x00")


class ConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Secret(str):
    """A string that never shows itself in repr() or logs."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('***')"

    def reveal(self) -> str:
        return str.__str__(self)


def meta(
    *,
    min: float | None = None,
    max: float | None = None,
    check: typing.Callable[[Any], str | None] | None = None,
    doc: str = "",
) -> dict[str, Any]:
    return {"min": min, "max": max, "check": check, "doc": doc}


def _check_id(value: Any) -> str | None:
    if not _ID_RE.match(str(value)):
        return "must be 1-64 letters, digits, '_', '-' or '.' (it becomes an MQTT topic level)"
    return None


def _check_topic_prefix(value: Any) -> str | None:
    text = str(value)
    if any(ch in text for ch in _TOPIC_FORBIDDEN):
        return "must not contain MQTT wildcards '+', '#' or NUL"
    levels = text.lstrip("/").split("/")
    if not text.strip("/") or any(level == "" for level in levels):
        return "must be non-empty topic levels separated by single '/'"
    return None


def _check_base_topic(value: Any) -> str | None:
    problem = _check_topic_prefix(value)
    if problem:
        return problem
    if str(value).startswith("/"):
        return "must not start with '/'"
    return None


# ---------------------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "console", "json"] = "auto"


@dataclass(frozen=True, slots=True)
class TlsConfig:
    enabled: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    # Only when asked: skips certificate and hostname verification.
    insecure: bool = False


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    host: str = "localhost"
    port: int = field(default=1883, metadata=meta(min=1, max=65535))
    username: str | None = None
    password: Secret | None = None
    # Default: derived from the config, the same on every start (the session belongs to it).
    client_id: str | None = None
    # MQTT version: auto = 5, falling back to 3.1.1 for brokers that refuse or ignore an MQTT 5
    # CONNECT (some answer nothing at all)
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    # How long the broker keeps the bridge's session, and the QoS 1 commands sent meanwhile,
    # while the bridge is away (0 = a clean session every time, nothing kept).
    session_expiry_s: int = field(default=3600, metadata=meta(min=0, max=2**32 - 1))
    keepalive_s: int = field(default=60, metadata=meta(min=5, max=3600))
    tls: TlsConfig = field(default_factory=TlsConfig)


@dataclass(frozen=True, slots=True)
class HomeAssistantConfig:
    enabled: bool = True
    prefix: str = field(default="homeassistant", metadata=meta(check=_check_base_topic))


@dataclass(frozen=True, slots=True)
class PublishConfig:
    broker: str | None = None  # default: the only broker configured
    base_topic: str = field(default="goe", metadata=meta(check=_check_base_topic))
    raw: bool = False
    refresh_s: float = field(default=300, metadata=meta(min=1))
    home_assistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)


@dataclass(frozen=True, slots=True)
class HttpConnection:
    type: Literal["http"]
    host: str
    port: int = field(default=80, metadata=meta(min=1, max=65535))
    api: Literal["auto", "v1", "v2"] = "auto"
    poll_interval_s: float = field(default=5, metadata=meta(min=0.05))
    timeout_s: float = field(default=5, metadata=meta(min=0.05))


@dataclass(frozen=True, slots=True)
class CloudConnection:
    type: Literal["cloud"]
    serial: str
    token: Secret
    api: Literal["v1", "v2"] = "v2"
    # None = the fair-use default: 120 s for the v1 cloud (≈25,000 status calls a month,
    # go-e API v1 EN doc "Rate Limiting"), 5 s for v2.
    poll_interval_s: float | None = field(default=None, metadata=meta(min=1))
    timeout_s: float = field(default=10, metadata=meta(min=0.05))
    base_url: str | None = None


@dataclass(frozen=True, slots=True)
class MqttConnection:
    type: Literal["mqtt"]
    serial: str
    broker: str | None = None
    prefix: str = field(default="go-eCharger", metadata=meta(check=_check_topic_prefix))
    # The charger's custom topic prefix (app: MQTT topic prefix, key mtp): it replaces
    # `<prefix>/<serial>` entirely, e.g. `home/garage/wallbox`.
    topic: str | None = field(default=None, metadata=meta(check=_check_topic_prefix))
    api: Literal["auto", "v1", "v2"] = "auto"
    # No status for this long → the charger counts as unavailable.
    timeout_s: float = field(default=30, metadata=meta(min=1))


Connection = HttpConnection | CloudConnection | MqttConnection


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_current_a: int = field(default=32, metadata=meta(min=6, max=32))


@dataclass(frozen=True, slots=True)
class FailsafeConfig:
    # None = the source's default: 80 s for the openWB modes (openWB's own heartbeat rule),
    # no failsafe for the generic mqtt controller (its commands are sporadic by nature).
    timeout_s: float | None = field(default=None, metadata=meta(min=1))
    action: Literal["stop", "current"] = "stop"
    current_a: int = field(default=6, metadata=meta(min=6, max=32))


@dataclass(frozen=True, slots=True)
class ControlConfig:
    source: Literal["none", "mqtt", "openwb-secondary", "openwb-mqtt", "openwb-1.9"] = "none"
    broker: str | None = None
    duo_num: int = field(default=0, metadata=meta(min=0, max=1))
    chargepoint_id: int = field(default=1, metadata=meta(min=0, max=9999))
    lp: int = field(default=1, metadata=meta(min=1, max=8))
    legacy_topics: bool = False
    enable_mode: Literal["force", "neutral"] = "force"
    # With access control on (`acs=1`), authorise the waiting session (`trx=0`) when the
    # controller allows charging, as evcc does (charger/go-e.go). Off by default: it
    # bypasses the card the owner asked for.
    authorize: bool = False
    # <base>/<id>/pv/set (go-e's PV-surplus input `ids`): repeated every 4 s for this long
    # after the last value, then stopped (a quiet meter must not leave an old surplus)
    pv_input_timeout_s: float = field(default=30, metadata=meta(min=5, max=3600))
    min_command_interval_s: float = field(default=5, metadata=meta(min=0))
    # None = the source's default: 300 s for `mqtt`, none for openWB (it times its own)
    phase_switch_min_interval_s: float | None = field(default=None, metadata=meta(min=0))
    failsafe: FailsafeConfig = field(default_factory=FailsafeConfig)


@dataclass(frozen=True, slots=True)
class ChargerConfig:
    connection: Connection
    id: str | None = field(default=None, metadata=meta(check=_check_id))
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    control: ControlConfig = field(default_factory=ControlConfig)

    @property
    def key(self) -> str:
        """The charger's id: configured, else its serial, else its host."""
        if self.id:
            return self.id
        serial = getattr(self.connection, "serial", None)
        if serial:
            return str(serial)
        return re.sub(r"[^A-Za-z0-9_-]", "_", str(getattr(self.connection, "host", "charger")))


@dataclass(frozen=True, slots=True)
class HttpServerConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata=meta(min=1, max=65535))


@dataclass(frozen=True, slots=True)
class Config:
    log: LogConfig = field(default_factory=LogConfig)
    brokers: Mapping[str, BrokerConfig] = field(default_factory=dict)
    publish: PublishConfig = field(default_factory=PublishConfig)
    chargers: tuple[ChargerConfig, ...] = ()
    http: HttpServerConfig = field(default_factory=HttpServerConfig)
    source: str | None = field(default=None, metadata={"internal": True})
    warnings: tuple[str, ...] = field(default=(), metadata={"internal": True})

    @property
    def publish_broker(self) -> str | None:
        if self.publish.broker:
            return self.publish.broker
        return next(iter(self.brokers), None)

    def broker_for(self, name: str | None) -> str | None:
        return name or self.publish_broker


# ---------------------------------------------------------------------------- loading


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, override, resolve secrets, validate. Raises ConfigError with every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    data = _parse(text, str(path))
    config = from_data(data, os.environ if env is None else env)
    warnings = (
        _permission_warnings(p, data) + _secret_file_warnings(data) + _broker_warnings(config)
    )
    return dataclasses.replace(config, source=str(path), warnings=tuple(warnings))


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
    return dataclasses.replace(
        config, source="environment", warnings=tuple(_broker_warnings(config))
    )


def loads(text: str, env: Mapping[str, str] | None = None) -> Config:
    """Load from a YAML string (tests, tools)."""
    return from_data(_parse(text, "config"), env or {})


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


def from_data(data: dict[str, Any], env: Mapping[str, str]) -> Config:
    problems: list[str] = []
    data = dict(data)
    _apply_env(data, env, problems)
    result = _build(Config, data, "", problems)
    if isinstance(result, Config):
        _cross_check(result, problems)
    if problems:
        raise ConfigError(problems)
    assert isinstance(result, Config)
    return result


def _permission_warnings(path: Path, data: Any) -> list[str]:
    """A config file holding secrets must not be readable by others."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return []
    if not mode & stat.S_IROTH:
        return []
    text = yaml.safe_dump(data) if data else ""
    if re.search(r"(password|token)\s*:\s*[^\s{}]", text) and not re.search(
        r"(password|token)\s*:\s*null", text
    ):
        return [
            f"{path} holds a password or token and is readable by other users; "
            f"run: chmod 600 {path} (or use password_file / token_file)"
        ]
    return []


def _secret_file_warnings(data: Any, path: str = "") -> list[str]:
    """A `*_file` secret that every user on the machine can read."""
    out: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            sub = _join(path, str(key))
            if (
                str(key).endswith("_file")
                and str(key)[:-5] in ("password", "token")
                and isinstance(value, str)
            ):
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
        value = _EnvText(env[name]) if env[name] != "" else None
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


class _EnvText(str):
    """A value from an environment variable, not parsed yet."""

    __slots__ = ()


def _is_text_type(tp: Any) -> bool:
    args = [a for a in get_args(tp) if a is not type(None)] if _optional(tp) else [tp]
    return all(
        a in (str, Secret)
        or (get_origin(a) is Literal and all(isinstance(x, str) for x in get_args(a)))
        for a in args
    )


def _env_value(tp: Any, text: _EnvText) -> Any:
    """An environment value for a key of type `tp`: verbatim for text, parsed otherwise."""
    if _is_text_type(tp):
        return str(text)
    value = yaml.safe_load(str(text))
    return str(text) if isinstance(value, dict | list) else value


def _list_index(items: list[Any], part: str) -> int | None:
    if part.isdigit() and int(part) < len(items):
        return int(part)
    for i, item in enumerate(items):
        if isinstance(item, dict) and str(item.get("id", "")).lower() == part:
            return i
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None))
    if tp is Secret:
        return "a string"
    if isinstance(tp, type):
        return {
            "str": "a string",
            "int": "an integer",
            "float": "a number",
            "bool": "true/false",
        }.get(tp.__name__, tp.__name__)
    return str(tp)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _build(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    if isinstance(value, _EnvText):
        value = _env_value(tp, value)
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _build_dataclass(tp, value, path, problems)
    if tp is Connection or (origin in (Union, types.UnionType) and HttpConnection in get_args(tp)):
        return _build_connection(value, path, problems)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _build(args[0], value, path, problems) if len(args) == 1 else value
    if origin is Literal:
        if value not in get_args(tp):
            problems.append(f"{path}: {value!r} is not valid; choose {_type_name(tp)}")
        return value
    if origin in (dict, Mapping) or tp is Mapping:
        _, item_tp = get_args(tp)
        if value is None:
            return {}
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping of names")
            return {}
        out = {}
        for key, item in value.items():
            problem = _check_id(key)
            if problem:
                problems.append(f"{_join(path, str(key))}: name {problem}")
            out[str(key)] = _build(item_tp, item, _join(path, str(key)), problems)
        return types.MappingProxyType(out)
    if origin is tuple:
        (item_tp, _) = get_args(tp)
        if value is None:
            return ()
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list")
            return ()
        return tuple(
            _build(item_tp, item, f"{path}[{i}]", problems) for i, item in enumerate(value)
        )
    if tp is Secret:
        if not isinstance(value, str | int):
            problems.append(f"{path}: expected a string")
            return None
        return Secret(str(value))
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{path}: expected a number, got {value!r}")
            return value
        return float(value)
    if tp is str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            # Serials like 012345 are often written without quotes; YAML then makes an int
            # and drops the leading zero, so keep what we can and say so.
            problems.append(f"{path}: expected a string, got the number {value!r}; quote it")
            return str(value)
        if not isinstance(value, str):
            problems.append(f"{path}: expected a string, got {value!r}")
        return value
    return value


def _build_connection(value: Any, path: str, problems: list[str]) -> Any:
    kinds = {"http": HttpConnection, "cloud": CloudConnection, "mqtt": MqttConnection}
    if not isinstance(value, dict):
        problems.append(f"{path}: expected a mapping with type: http | cloud | mqtt")
        return None
    kind = value.get("type")
    if not isinstance(kind, str) or kind not in kinds:
        problems.append(f"{path}.type: {kind!r} is not valid; choose 'http' | 'cloud' | 'mqtt'")
        return None
    return _build_dataclass(kinds[kind], value, path, problems)


def _read_secret_file(path_value: Any, path: str, problems: list[str]) -> str | None:
    if not isinstance(path_value, str):
        problems.append(f"{path}: expected a file path")
        return None
    try:
        return Path(path_value).read_text(encoding="utf-8").strip()
    except OSError as exc:
        problems.append(f"{path}: cannot read {path_value}: {exc.strerror or exc}")
        return None


def _build_dataclass(cls: type, value: Any, path: str, problems: list[str]) -> Any:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        problems.append(f"{path or 'config'}: expected a mapping, got {value!r}")
        return None
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    value = dict(value)
    # `<secret>_file` → the secret read from that file (Docker/systemd credentials).
    for name, tp in hints.items():
        if name in fields and _is_secret(tp) and f"{name}_file" in value:
            file_value = value.pop(f"{name}_file")
            if file_value is not None:
                if value.get(name) is not None:
                    problems.append(
                        f"{_join(path, name + '_file')}: give either {name} or {name}_file"
                    )
                secret = _read_secret_file(file_value, _join(path, name + "_file"), problems)
                if secret is not None:
                    value[name] = secret
    kwargs: dict[str, Any] = {}
    for key in value:
        if key not in fields:
            valid = ", ".join(sorted(fields))
            problems.append(f"{_join(path, str(key))}: unknown key; valid keys here: {valid}")
    for name, f in fields.items():
        sub = _join(path, name)
        if name in value:
            built = _build(hints[name], value[name], sub, problems)
            if built is None and value[name] is not None:
                continue
            if built is None and not _optional(hints[name]):
                problems.append(f"{sub}: must not be empty")
                continue
            _check_meta(f, built, sub, problems)
            kwargs[name] = built
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.append(f"{sub}: required")
    try:
        return cls(**kwargs)
    except TypeError:
        return None


def _is_secret(tp: Any) -> bool:
    return tp is Secret or Secret in get_args(tp)


def _optional(tp: Any) -> bool:
    return type(None) in get_args(tp)


def _check_meta(f: dataclasses.Field[Any], value: Any, path: str, problems: list[str]) -> None:
    if value is None or isinstance(value, bool):
        return
    lo, hi, check = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("check")
    if isinstance(value, int | float):
        if lo is not None and value < lo:
            problems.append(f"{path}: {value} is below the minimum {lo:g}")
        if hi is not None and value > hi:
            problems.append(f"{path}: {value} is above the maximum {hi:g}")
    if check is not None:
        problem = check(value)
        if problem:
            problems.append(f"{path}: {value!r} {problem}")


def _cross_check(config: Config, problems: list[str]) -> None:
    names = set(config.brokers)

    def broker_ref(value: str | None, path: str, needed: bool) -> None:
        if value is not None and value not in names:
            known = ", ".join(sorted(names)) or "none configured"
            problems.append(f"{path}: no broker named {value!r} (brokers: {known})")
        elif value is None and needed and not names:
            problems.append(f"{path}: needs a broker, but brokers: is empty")

    broker_ref(config.publish.broker, "publish.broker", bool(config.chargers))
    if config.publish.broker is None and len(names) > 1:
        problems.append("publish.broker: several brokers are configured; name the one to use")
    seen: dict[str, int] = {}
    for i, charger in enumerate(config.chargers):
        if charger is None:
            continue
        base = f"chargers[{i}]"
        host = getattr(charger.connection, "host", None)
        if isinstance(host, str) and ("://" in host or "/" in host):
            # `probe` takes a URL; the config wants the bare address (and port: apart)
            bare = host.split("://", 1)[-1].split("/", 1)[0]
            problems.append(
                f"{base}.connection.host: {host!r} is a URL; give the address only: "
                f"host: {bare.rsplit(':', 1)[0]!r}" + (f", port: {bare.rsplit(':', 1)[1]}"
                                                         if ":" in bare else "")
            )  # fmt: skip
        if charger.key in seen:
            problems.append(
                f"{base}.id: {charger.key!r} is also used by chargers[{seen[charger.key]}]"
            )
        seen[charger.key] = i
        if charger.id is None and _check_id(charger.key):
            problems.append(f"{base}.id: required (the serial/host is not a usable topic level)")
        conn = charger.connection
        if isinstance(conn, MqttConnection):
            broker_ref(conn.broker, f"{base}.connection.broker", True)
        if isinstance(conn, MqttConnection | CloudConnection) and not conn.serial.strip():
            problems.append(f"{base}.connection.serial: must not be empty")
        control = charger.control
        broker_ref(control.broker, f"{base}.control.broker", control.source != "none")


def _plain(value: Any) -> Any:
    if isinstance(value, Secret):
        return "***"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not f.metadata.get("internal")
        }
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def normalized(config: Config) -> dict[str, Any]:
    """The effective config as plain data, secrets masked (`check-config` prints it)."""
    out = _plain(config)
    assert isinstance(out, dict)
    return out
