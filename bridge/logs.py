"""structlog, configured once: readable lines by default, JSON lines when asked; stdlib
loggers (aiohttp, aiomqtt) go through the same processors; secrets are masked.

Event names are short identifiers with the data as keyword arguments
(`log.info("charger.write", key="amx", value=16)`).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, TextIO

import structlog

from .jsontext import EXCERPT_CHARS, excerpt

# Key names whose values are never shown, whatever the value is.
_SECRET_KEY_RE = re.compile(
    r"(password|passwd|token|secret|^wke$|^wak$|^cak$|^mck$|authorization)", re.I
)
_MASK = "***"

_secrets: set[str] = set()


def register_secrets(values: Iterable[str | None]) -> None:
    """Values (configured passwords, tokens) masked wherever they appear in a log line."""
    for value in values:
        if value and len(value) >= 3:
            _secrets.add(str(value))


def _scrub_text(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, dict):
        return {
            k: (_MASK if _SECRET_KEY_RE.search(str(k)) else _scrub(v)) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if _SECRET_KEY_RE.search(key):
            event_dict[key] = _MASK
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def setup(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    # auto: readable lines everywhere people read logs (a terminal, `journalctl -f`,
    # `docker logs -f`, the Home Assistant add-on log); JSON only when asked for (log shippers).
    if fmt == "auto":
        fmt = "console"
    # journald stamps every line itself (systemd sets JOURNAL_STREAM for the service's output)
    under_journald = bool(os.environ.get("JOURNAL_STREAM")) and fmt == "console"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        *([] if under_journald else [structlog.processors.TimeStamper(fmt="iso", utc=True)]),
        redact,
    ]
    renderer: Any
    if fmt == "json":
        # format_exc_info renders tracebacks as text; never frame locals (they hold secrets).
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log and aiomqtt's chatter are only useful when debugging.
    quiet = logging.WARNING if level != "debug" else logging.DEBUG
    for name in ("aiohttp.access", "aiomqtt", "amqtt", "transitions"):
        logging.getLogger(name).setLevel(quiet)


def get(name: str = "goe_bridge") -> Any:
    return structlog.stdlib.get_logger(name)


class Throttled:
    """One kind of event that can come in floods (commands, rejections): the first
    `burst` per `window_s` are logged, the rest counted and reported in the next line."""

    def __init__(
        self,
        logger: Any,
        level: str,
        event: str,
        *,
        burst: int = 5,
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = getattr(logger, level)
        self.event = event
        self.burst = burst
        self.window_s = window_s
        self.clock = clock
        self._window_start = -1e18
        self._count = 0
        self.suppressed = 0

    def note(self, **fields: Any) -> None:
        now = self.clock()
        if now - self._window_start >= self.window_s:
            self._window_start = now
            self._count = 0
        self._count += 1
        if self._count > self.burst:
            self.suppressed += 1
            return
        shown = {k: _short(v) for k, v in fields.items()}
        if self.suppressed:
            shown["suppressed_before"] = self.suppressed
            self.suppressed = 0
        self._log(self.event, **shown)


def _short(value: Any) -> Any:
    """Log fields from outside (payloads, field names) are cut to a short excerpt."""
    if isinstance(value, str | bytes) and len(value) > EXCERPT_CHARS:
        return excerpt(value)
    if isinstance(value, dict | list) and len(repr(value)) > EXCERPT_CHARS:
        return excerpt(value)
    return value
