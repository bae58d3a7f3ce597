"""Configuration: YAML file + environment overrides + `*_file` secrets → one frozen,
validated `Config` (docs/design.md#configuration).

`model.py` declares every key (type, default, range, check); pydantic validates it strictly
and gives the JSON Schema (`goe-bridge schema`, goe-bridge.schema.json). Every problem is
collected with the path of its key (`chargers[0].connection.port: …`), so `goe-bridge
check-config` can print them all at once (`problems.py` words them). Unknown keys are errors.

The names below are imported on first use: pydantic and the model cost about 0.1 s at start
(README, design notes), which commands that read no config (`health`, run by Docker every 30 s,
`decode`, `simulate`) do not pay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Secret
    from .loading import (
        ENV_ONLY_BASE,
        ENV_PREFIX,
        from_data,
        from_environment,
        has_env_config,
        load,
        loads,
        normalized,
        schema,
    )
    from .model import (
        BrokerConfig,
        ChargerConfig,
        CloudConnection,
        Config,
        Connection,
        ControlConfig,
        FailsafeConfig,
        HomeAssistantConfig,
        HttpConnection,
        HttpServerConfig,
        LimitsConfig,
        LogConfig,
        MqttConnection,
        PublishConfig,
        TlsConfig,
    )
    from .problems import ConfigError

__all__ = [
    "ENV_ONLY_BASE",
    "ENV_PREFIX",
    "BrokerConfig",
    "ChargerConfig",
    "CloudConnection",
    "Config",
    "ConfigError",
    "Connection",
    "ControlConfig",
    "FailsafeConfig",
    "HomeAssistantConfig",
    "HttpConnection",
    "HttpServerConfig",
    "LimitsConfig",
    "LogConfig",
    "MqttConnection",
    "PublishConfig",
    "Secret",
    "TlsConfig",
    "from_data",
    "from_environment",
    "has_env_config",
    "load",
    "loads",
    "normalized",
    "schema",
]


def __getattr__(name: str) -> Any:
    if name not in __all__ and name != "_FAST_LOADER":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import base, loading, model, problems  # noqa: PLC0415 - on first use, see above

    for module in (loading, model, base, problems):
        if hasattr(module, name):
            globals()[name] = value = getattr(module, name)
            return value
    raise AttributeError(name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
