"""Status → MQTT messages for the generic namespace (docs/design.md#contract). Pure: no I/O.

Every topic string of the generic namespace is built here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import jsontext
from ..goe.model import ChargerStatus

# Settable fields, and on which API versions.
SETTABLE = ("allow_charging", "current_limit_a", "phases")
CONTROL_KEYS = ("source", "target_allow", "target_current_a", "target_phases",
                "failsafe_active", "in_sync")  # fmt: skip

# A change smaller than this is not worth a message; the periodic refresh still sends the
# exact value. Chosen below what a user or a PV controller can act on.
DEADBANDS: tuple[tuple[str, float], ...] = (
    # every energy counter (lifetime, session, the charger's own session counter): 50 Wh is
    # under a minute at 11 kW; a counter without a band is a message on every poll
    ("_wh", 50.0),
    ("power_factor", 2.0),
    # A charging phase's power moves by ±50 W from poll to poll on measurement noise alone
    # (±1 V, ±0.1 A: a 56.9 capture, tests/fixtures/goe/v2-mqtt-capture-excerpt.txt) and a
    # controller acts in 1 A steps (230 W a phase): 25 W sent nearly every poll.
    ("_w", 100.0),
    ("_v", 2.0),
    ("_a", 0.2),
    ("_c", 0.5),
    # the charger's `fhz` jitters by ~0.1 Hz between readings (same capture: 49.959,
    # 49.847, 49.944 within 2 s); 0.05 Hz was a message on most polls
    ("_hz", 0.1),
    ("_dbm", 3.0),
)


_UNSENT = object()


@functools.cache
def deadband(name: str) -> float:
    for pattern, band in DEADBANDS:
        if name == pattern or name.endswith(pattern) or name.startswith(pattern):
            return band
    return 0.0


def scalar(value: Any) -> str:
    """Bare scalars: `true`/`false`, numbers without float noise, text as is; arrays and
    objects as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "null"
        if value.is_integer():
            return str(int(value))
        return f"{round(value, 3):.3f}".rstrip("0").rstrip(".")
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return jsontext.dumps(value, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Topics:
    base: str
    charger: str

    @property
    def root(self) -> str:
        return f"{self.base}/{self.charger}"

    def field(self, name: str) -> str:
        return f"{self.root}/{name}"

    def raw(self, key: str) -> str:
        return f"{self.root}/raw/{key}"

    @property
    def availability(self) -> str:
        return f"{self.root}/availability"

    def control(self, key: str) -> str:
        return f"{self.root}/control/{key}"

    def set(self, name: str | None = None) -> str:
        return f"{self.root}/{name}/set" if name else f"{self.root}/set"

    def set_field(self, topic: str) -> str | None:
        """The field a set topic addresses (`<root>/<field>/set`); None for `<root>/set`."""
        if topic == self.set():
            return None
        return topic[len(self.root) + 1 : -len("/set")]

    @property
    def result(self) -> str:
        return f"{self.root}/result"

    @property
    def memory(self) -> str:
        return f"{self.root}/memory"


def bridge_state_topic(base: str) -> str:
    return f"{base}/bridge/state"


def bridge_info_topic(base: str) -> str:
    return f"{base}/bridge/info"


def _changed(name: str, old: Any, value: Any) -> bool:
    """A value past its field's deadband from the one last sent."""
    if (
        isinstance(value, int | float)
        and isinstance(old, int | float)
        and not isinstance(value, bool)
        and not isinstance(old, bool)
    ):
        band = deadband(name)
        # Crossing zero is always news (charging started or stopped).
        if (old == 0) != (value == 0):
            return True
        return abs(value - old) >= band if band else value != old
    return bool(value != old)


@dataclass(slots=True)
class FieldPublisher:
    """Remembers what was published for one charger and decides what to send next."""

    topics: Topics
    refresh_s: float
    raw: bool = False
    _sent: dict[str, Any] = field(default_factory=dict)
    _raw_sent: dict[str, str] = field(default_factory=dict)
    _last_full: float | None = None
    # field → topic, built once: the same string objects every poll, and in the link's
    # replay store (a new f-string per field and poll showed in the profile)
    _topic: dict[str, str] = field(default_factory=dict)

    def topic(self, name: str) -> str:
        topic = self._topic.get(name)
        if topic is None:
            topic = self._topic[name] = self.topics.field(name)
        return topic

    def update(
        self, status: ChargerStatus, now: float, fields: Mapping[str, Any] | None = None
    ) -> list[tuple[str, str]]:
        """(topic, payload) pairs to publish retained for this status (`fields`: its
        `fields()`, when the caller has them already)."""
        full = self._last_full is None or now - self._last_full >= self.refresh_s
        if full:
            self._last_full = now
        out: list[tuple[str, str]] = []
        if fields is None:
            fields = status.fields()
        sent = self._sent
        for name, value in fields.items():
            if not full:
                old = sent.get(name, _UNSENT)
                # most fields are the same as last poll: equal and of the same type is no
                # change whatever the band (True == 1, so a bool and an int take _changed)
                if (old is value or old == value) and type(old) is type(value):
                    continue
                if old is not _UNSENT and not _changed(name, old, value):
                    continue
            sent[name] = value
            out.append((self.topic(name), scalar(value)))
        # A field that became unknown (no car: no cable current; idle: no effective current;
        # the card gone) is cleared: an empty retained message deletes the topic, so nobody
        # reads an old value as the current one.
        for name in [n for n in self._sent if n not in fields]:
            del self._sent[name]
            out.append((self.topic(name), ""))
        if self.raw:
            for key, value in status.raw.items():
                if "/" in key or "+" in key or "#" in key:
                    continue
                text = jsontext.dumps(value, separators=(",", ":"))
                if full or self._raw_sent.get(key) != text:
                    self._raw_sent[key] = text
                    out.append((self.topics.raw(key), text))
        return out

    def sent(self, name: str) -> Any:
        """The value last published for a field (None: not published, or cleared)."""
        return self._sent.get(name)

    def raw_sent(self, key: str) -> str | None:
        return self._raw_sent.get(key)

    def replay(self) -> list[tuple[str, str]]:
        """Every field as last published (a cleared one as a clear), for a broker that may
        have lost its retained messages: sent again after each reconnect. Kept here instead
        of in the link's replay store, which held a second copy of every message (5.6 MB
        for 500 chargers, bench/floor.py with tracemalloc)."""
        out = [
            (topic, scalar(self._sent[name]) if name in self._sent else "")
            for name, topic in self._topic.items()
        ]
        out.extend((self.topics.raw(key), text) for key, text in self._raw_sent.items())
        return out

    def reset(self) -> None:
        """Forget what was sent: the next update publishes everything."""
        self._sent.clear()
        self._raw_sent.clear()
        self._last_full = None


def control_messages(topics: Topics, state: Mapping[str, Any]) -> list[tuple[str, str]]:
    """`None` (= "leave as it is") is published as `none`: an empty retained payload would
    delete the topic instead."""
    return [
        (topics.control(k), "none" if state[k] is None else scalar(state[k]))
        for k in CONTROL_KEYS
        if k in state
    ]


def result_payload(ok: bool, field_name: str | None, value: Any, error: str | None) -> str:
    """One command's answer. A rejected value is echoed as a short excerpt only."""
    if not ok and value is not None and not isinstance(value, bool | int | float):
        value = jsontext.excerpt(value)
    return jsontext.dumps(
        {"ok": ok, "field": field_name, "value": value, "error": error},
        separators=(",", ":"),
    )
