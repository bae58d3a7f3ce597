"""The config model: every key with its type, default, range, check and one line of help,
declared once. pydantic validates it strictly (no text read as a number, no number read as
text; base.py), the JSON Schema comes from it (`goe-bridge schema`), and `problems.py` words
pydantic's errors the way `check-config` prints them.

Checks that need more than one key sit on the model that holds those keys; the references to
broker names look at the names the config declares (the validation context), so a wrong name is
reported together with every other problem.
"""

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    WrapSerializer,
    field_validator,
    model_validator,
)

from .base import Secret, StrictModel, problem, problems

# MQTT topic levels built from ids must not contain wildcards, separators or NUL (they would
# subscribe to or publish on other topics).
ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
ID_PROBLEM = "must be 1-64 letters, digits, '_', '-' or '.' (it becomes an MQTT topic level)"
_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TOPIC_FORBIDDEN = ("+", "#", "\x00")
CONNECTION_TYPES = ("http", "cloud", "mqtt")


def _topic_levels(value: str) -> str:
    if any(ch in value for ch in _TOPIC_FORBIDDEN):
        raise problem(f"{value!r} must not contain MQTT wildcards '+', '#' or NUL")
    levels = value.lstrip("/").split("/")
    if not value.strip("/") or any(level == "" for level in levels):
        raise problem(f"{value!r} must be non-empty topic levels separated by single '/'")
    return value


def _base_topic(value: str) -> str:
    _topic_levels(value)
    if value.startswith("/"):
        raise problem(f"{value!r} must not start with '/'")
    return value


def _not_a_url(host: str) -> str:
    if "://" in host or "/" in host:
        # `probe` takes a URL; the config wants the bare address (and port: apart)
        bare = host.split("://", 1)[-1].split("/", 1)[0]
        address, _, port = bare.rpartition(":") if ":" in bare else (bare, "", "")
        raise problem(
            f"{host!r} is a URL; give the address only: host: {address!r}"
            + (f", port: {port}" if port else "")
        )
    return host


def _not_blank(value: str, info: ValidationInfo) -> str:
    # a config's rule (the serial becomes the charger's id); `probe --cloud v1` has none
    if info.context is not None and not value.strip():
        raise problem("must not be empty")
    return value


Id = Annotated[str, Field(pattern=ID_PATTERN)]
TopicPrefix = Annotated[str, AfterValidator(_topic_levels)]
BaseTopic = Annotated[str, AfterValidator(_base_topic)]
Serial = Annotated[str, AfterValidator(_not_blank)]
Port = Annotated[int, Field(ge=1, le=65535)]
Current = Annotated[int, Field(ge=6, le=32)]


def _broker_ref(info: ValidationInfo, name: str | None, needed: bool) -> str | None:
    """The problem with a reference to a broker, given the names the config declares."""
    names = (info.context or {}).get("brokers")
    if names is None:  # a model built directly, not from a config
        return None
    if name is not None and name not in names:
        known = ", ".join(sorted(names)) or "none configured"
        return f"no broker named {name!r} (brokers: {known})"
    if name is None and needed and not names:
        return "needs a broker, but brokers: is empty"
    return None


# ---------------------------------------------------------------------------- the model
# A `description` is what an editor shows for the key (the JSON Schema); comments say why.


class LogConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "console", "json"] = Field(
        "auto", description="auto = console (readable lines) | json: one object a line"
    )


class TlsConfig(StrictModel):
    enabled: bool = False
    ca_file: str | None = Field(None, description="CA bundle; null = the system's CAs")
    cert_file: str | None = Field(None, description="client certificate (mutual TLS)")
    key_file: str | None = None
    insecure: bool = Field(False, description="skips certificate and hostname checks: testing only")


class BrokerConfig(StrictModel):
    host: str = "localhost"
    port: Port = Field(1883, description="8883 is usual with TLS")
    username: str | None = None
    password: Secret | None = None
    password_file: str | None = Field(None, exclude=True, description="a file holding the password")
    # The session and the commands queued in it belong to the client id.
    client_id: str | None = Field(
        None, description="default: derived from the config, the same on every start"
    )
    # auto: MQTT 5, falling back to 3.1.1 for brokers that refuse or ignore an MQTT 5 CONNECT
    # (some answer nothing at all)
    protocol: Literal["auto", "5", "3.1.1"] = Field("auto", description="auto: MQTT 5, else 3.1.1")
    # 0 = a clean session every time, nothing kept
    session_expiry_s: int = Field(
        3600, ge=0, le=2**32 - 1, description="the broker keeps commands this long for the bridge"
    )
    keepalive_s: int = Field(60, ge=5, le=3600)
    tls: TlsConfig = Field(default_factory=TlsConfig)


class HomeAssistantConfig(StrictModel):
    enabled: bool = Field(True, description="MQTT discovery: one device per charger")
    prefix: BaseTopic = "homeassistant"


class PublishConfig(StrictModel):
    broker: str | None = Field(None, description="default: the only broker configured")
    base_topic: BaseTopic = Field("goe", description="topics are <base_topic>/<charger id>/<field>")
    raw: bool = Field(False, description="also mirror every go-e key to <base>/<id>/raw/<key>")
    refresh_s: float = Field(300.0, ge=1, description="re-publish every field at least this often")
    home_assistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)

    @model_validator(mode="after")
    def _broker_known(self, info: ValidationInfo) -> Self:
        context = info.context or {}
        if self.broker is None and len(context.get("brokers", ())) > 1:
            raise problems([(("broker",), "several brokers are configured; name the one to use")])
        found = _broker_ref(info, self.broker, needed=bool(context.get("chargers")))
        if found:
            raise problems([(("broker",), found)])
        return self


class HttpConnection(StrictModel):
    """The charger's local HTTP API (the app's "HTTP API v2", or legacy v1)."""

    type: Literal["http"]
    host: Annotated[str, AfterValidator(_not_a_url)] = Field(description="an address, not a URL")
    port: Port = 80
    api: Literal["auto", "v1", "v2"] = Field("auto", description="auto: v2, then v1")
    poll_interval_s: float = Field(5.0, ge=0.05)
    timeout_s: float = Field(5.0, ge=0.05)


class CloudConnection(StrictModel):
    """The go-e cloud."""

    type: Literal["cloud"]
    serial: Serial = Field(description='quote it: serial: "012345"')
    token: Secret
    token_file: str | None = Field(None, exclude=True, description="a file holding the token")
    api: Literal["v1", "v2"] = Field(
        "v2", description="v1: api.go-e.co (HW V1/V2) | v2: <serial>.api.v3.go-e.io"
    )
    # null = the fair-use default: 120 s for the v1 cloud (≈25,000 status calls a month,
    # go-e API v1 EN doc "Rate Limiting"), 5 s for v2.
    poll_interval_s: float | None = Field(None, ge=1, description="null: 120 s on v1, 5 s on v2")
    timeout_s: float = Field(10.0, ge=0.05)
    base_url: str | None = Field(None, description="default: the real service")


class MqttConnection(StrictModel):
    """The charger's own MQTT output, on one of the brokers."""

    type: Literal["mqtt"]
    serial: Serial = Field(description='quote it: serial: "012345"')
    broker: str | None = Field(None, description="default: publish.broker")
    prefix: TopicPrefix = Field("go-eCharger", description="/go-eCharger works too")
    # The charger's custom topic prefix (app: MQTT topic prefix, key mtp), e.g.
    # `home/garage/wallbox`.
    topic: TopicPrefix | None = Field(
        None, description="the charger's custom topic prefix (mtp): replaces <prefix>/<serial>"
    )
    api: Literal["auto", "v1", "v2"] = "auto"
    timeout_s: float = Field(30.0, ge=1, description="unavailable after this long without a status")

    @model_validator(mode="after")
    def _broker_known(self, info: ValidationInfo) -> Self:
        found = _broker_ref(info, self.broker, needed=True)
        if found:
            raise problems([(("broker",), found)])
        return self


Connection = HttpConnection | CloudConnection | MqttConnection


class LimitsConfig(StrictModel):
    max_current_a: Current = Field(32, description="never command more than this")


class FailsafeConfig(StrictModel):
    # null = the source's default: 80 s for the openWB modes (openWB's own heartbeat rule),
    # none for the generic mqtt controller (its commands are sporadic by nature).
    timeout_s: float | None = Field(
        None, ge=1, description="controller quiet this long → action; null: 80 s for openWB"
    )
    action: Literal["stop", "current"] = "stop"
    current_a: Current = Field(6, description="with action: current")


class ControlConfig(StrictModel):
    source: Literal["none", "mqtt", "openwb-secondary", "openwb-mqtt", "openwb-1.9"] = "none"
    broker: str | None = Field(None, description="where the controller talks; default: publish")
    duo_num: int = Field(0, ge=0, le=1, description="openwb-secondary: chargepoint 0 or 1")
    chargepoint_id: int = Field(1, ge=0, le=9999, description="openwb-mqtt: the chargepoint id")
    lp: int = Field(1, ge=1, le=8, description="openwb-1.9: the charge point number")
    legacy_topics: bool = Field(False, description="openwb-mqtt: openWB before 2.1.8")
    enable_mode: Literal["force", "neutral"] = Field(
        "force", description="API v2: force (frc=2) | neutral (frc=0)"
    )
    # With access control on (`acs=1`), authorise the waiting session (`trx=0`) when the
    # controller allows charging (go-e's own advice, go-eCharger-API-v2 #117). Off by
    # default: it
    # bypasses the card the owner asked for.
    authorize: bool = Field(False, description="API v2, acs=1: authorise the waiting session")
    # <base>/<id>/pv/set (go-e's PV-surplus input `ids`): repeated every 4 s for this long
    # after the last value, then stopped (a quiet meter must not leave an old surplus). Below
    # the charger's own lapse of 10-15 s (syssi/homeassistant-goecharger-mqtt README), so the
    # bridge never keeps a surplus alive that the charger would have dropped.
    pv_input_timeout_s: float = Field(8.0, ge=5, le=3600)
    min_command_interval_s: float = Field(
        5.0, ge=0, description="current changes at most this often; the last value wins"
    )
    # null = the source's default: 300 s for `mqtt`, none for openWB (it times its own)
    phase_switch_min_interval_s: float | None = Field(
        None, ge=0, description="null: 300 s for mqtt, none for openWB"
    )
    failsafe: FailsafeConfig = Field(default_factory=FailsafeConfig)

    @model_validator(mode="after")
    def _broker_known(self, info: ValidationInfo) -> Self:
        found = _broker_ref(info, self.broker, needed=self.source != "none")
        if found:
            raise problems([(("broker",), found)])
        return self


class ChargerConfig(StrictModel):
    connection: Connection = Field(discriminator="type")
    id: Id | None = Field(None, description="topic level; default: the serial (or the host)")
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)

    @property
    def key(self) -> str:
        """The charger's id: configured, else its serial, else its host."""
        if self.id:
            return self.id
        serial = getattr(self.connection, "serial", None)
        if serial:
            return str(serial)
        return re.sub(r"[^A-Za-z0-9_-]", "_", str(getattr(self.connection, "host", "charger")))

    @model_validator(mode="after")
    def _usable_key(self) -> Self:
        if self.id is None and not _ID_RE.fullmatch(self.key):
            raise problems([(("id",), "required (the serial/host is not a usable topic level)")])
        return self


class HttpServerConfig(StrictModel):
    """The status page, /healthz and /metrics."""

    enabled: bool = False
    host: str = Field("127.0.0.1", description="0.0.0.0 to reach it from other machines")
    port: Port = 8080


def _mapping_as_dict(value: Mapping[str, Any], handler: SerializerFunctionWrapHandler) -> Any:
    return handler(dict(value))


class Config(StrictModel):
    """goe-bridge's configuration (config.yaml)."""

    model_config = ConfigDict(title="goe-bridge configuration")

    log: LogConfig = Field(default_factory=LogConfig)
    brokers: Annotated[
        Mapping[Annotated[str, Field(pattern=ID_PATTERN)], BrokerConfig],
        AfterValidator(MappingProxyType),
        WrapSerializer(_mapping_as_dict),
    ] = Field(
        default_factory=dict,
        description="any number of named MQTT brokers",
        json_schema_extra={"additionalProperties": False},
    )
    # Validated also when absent: its check of the broker names runs then too.
    publish: PublishConfig = Field(default_factory=dict, validate_default=True)
    # A YAML sequence is a list; strict validation would want a tuple.
    chargers: tuple[ChargerConfig, ...] = Field(default_factory=tuple, strict=False)
    http: HttpServerConfig = Field(default_factory=HttpServerConfig)
    state_file: str | None = Field(
        None,
        description="a file where the bridge keeps its record across a power cut that "
        "also rolls the broker back (default: state.json in systemd's STATE_DIRECTORY)",
    )
    _source: str | None = None
    _warnings: tuple[str, ...] = ()

    @property
    def source(self) -> str | None:
        """The file the config came from ("environment" for the env-only config)."""
        return self._source

    @property
    def warnings(self) -> tuple[str, ...]:
        return self._warnings

    @property
    def publish_broker(self) -> str | None:
        if self.publish.broker:
            return self.publish.broker
        return next(iter(self.brokers), None)

    def broker_for(self, name: str | None) -> str | None:
        return name or self.publish_broker

    @field_validator("chargers")
    @classmethod
    def _ids_unique(cls, chargers: tuple[ChargerConfig, ...]) -> tuple[ChargerConfig, ...]:
        seen: dict[str, int] = {}
        found: list[tuple[tuple[str | int, ...], str]] = []
        for i, charger in enumerate(chargers):
            if charger.key in seen:
                also = f"{charger.key!r} is also used by chargers[{seen[charger.key]}]"
                found.append(((i, "id"), also))
            seen[charger.key] = i
        if found:
            raise problems(found)
        return chargers
