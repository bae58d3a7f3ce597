"""Everything one charger keeps retained on the broker, and the truth of it.

- the fields (`FieldPublisher`), availability, the control state and the bridge's own record
  for its next start (`<base>/<id>/memory`);
- all of it again after a reconnect (`replay`);
- after an orderly stop, `offline`; after a crash, an `online` that expires (MQTT 5 message
  expiry): it is repeated every AVAILABILITY_REFRESH_S while the charger answers, so a
  subscriber that reads the topic after a crash finds no `online` within a few minutes;
- a foreign message on one of these topics (another client writing on them: ioBroker
  publishes its own states back, a test, a mistake) is answered at once with the true value,
  so no subscriber reads something untrue for longer than a round trip;
- what a previous run left retained that this one no longer publishes is cleared once the
  first status is out (a field the charger no longer reports, a control topic of another
  control source, the raw mirror switched off).

Pure bookkeeping plus a `publish` callable: no I/O of its own.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .. import logs
from ..goe.model import FIELD_NAMES, ChargerStatus
from ..mqtt.messages import Outgoing
from .fields import CONTROL_KEYS, FieldPublisher, Topics, control_messages, scalar

__all__ = ["AVAILABILITY_REFRESH_S", "ChargerOutputs"]

log = logs.get("goe_bridge.publish")

# `online` is repeated this often while the charger answers (and at least every poll interval)
AVAILABILITY_REFRESH_S = 60.0
# ... and expires after this many refresh periods without one
AVAILABILITY_EXPIRY_PERIODS = 2.5
# Answers to foreign writes on one topic: at once, at most CORRECTION_BURST within
# CORRECTION_WINDOW_S (a client that transforms what it echoes would otherwise make a loop).
CORRECTION_BURST = 3
CORRECTION_WINDOW_S = 60.0

_FIELDS = frozenset(FIELD_NAMES)
_CONTROL = frozenset(CONTROL_KEYS)


class ChargerOutputs:
    def __init__(
        self,
        topics: Topics,
        *,
        refresh_s: float,
        raw: bool,
        poll_interval_s: float,
        publish: Callable[..., None],
        clock: Callable[[], float],
        publish_retained: Callable[[list[tuple[str, str]]], None] | None = None,
    ) -> None:
        self.topics = topics
        self.fields = FieldPublisher(topics, refresh_s, raw)
        self.publish = publish
        # a status's field messages at once (BrokerLink.publish_retained), else one by one
        self.publish_retained = publish_retained
        self.clock = clock
        self.raw = raw
        self.availability_refresh_s = max(AVAILABILITY_REFRESH_S, poll_interval_s)
        self.availability_expiry_s = math.ceil(
            self.availability_refresh_s * AVAILABILITY_EXPIRY_PERIODS
        )
        self.available: bool | None = None
        self._online_sent_at = -math.inf
        # control state and availability as last published (the fields are the publisher's)
        self.retained: dict[str, str] = {}
        self.memory: str | None = None
        self.started = False  # the first status is out: the topics are known from here on
        # topics a previous run left (from the read-back at start), cleared once the first
        # status is out unless this run publishes them too
        self.previous: set[str] = set()
        self._corrections: dict[str, tuple[int, float]] = {}
        self.corrected = 0

    # ------------------------------------------------------------------ status

    def status(self, status: ChargerStatus, now: float, fields: Mapping[str, Any]) -> None:
        messages = self.fields.update(status, now, fields)
        if messages and self.publish_retained is not None:
            self.publish_retained(messages)
        else:
            for topic, payload in messages:
                self.publish(topic, payload, retain=True)
        if self.available is not True or now - self._online_sent_at >= self.availability_refresh_s:
            self.set_available(True)
        if not self.started:
            self.started = True
            self._clear_previous()

    def set_available(self, available: bool) -> None:
        self.available = available
        self.retained[self.topics.availability] = "online" if available else "offline"
        message = self._availability_message()
        if available:
            self._online_sent_at = self.clock()
        self.publish(message.topic, message.payload, retain=True, expiry_s=message.expiry_s)

    def _availability_message(self) -> Outgoing:
        if self.available:
            # expires unless repeated: after a crash nobody is left to say `offline`
            return Outgoing(self.topics.availability, b"online", True, 0,
                            self.availability_expiry_s)  # fmt: skip
        return Outgoing(self.topics.availability, b"offline", True, 0)

    def control(self, state: Mapping[str, Any]) -> None:
        for topic, payload in control_messages(self.topics, state):
            self._retain(topic, payload)

    def clear_control(self, key: str) -> None:
        """Nothing is known of it (yet): the topic is deleted, never left with an old value."""
        self._retain(self.topics.control(key), "")

    def set_memory(self, record: Mapping[str, Any]) -> None:
        payload = json.dumps(record, separators=(",", ":"), sort_keys=True)
        if payload != self.memory:
            self.memory = payload
            self.publish(self.topics.memory, payload, retain=True)

    def _retain(self, topic: str, payload: str) -> None:
        self.retained[topic] = payload
        self.publish(topic, payload, retain=True)

    # ------------------------------------------------------------------ lifecycle

    def replay(self) -> Iterable[tuple[str, str] | Outgoing]:
        """Everything this charger keeps retained, for a broker that may have lost it."""
        yield from self.fields.replay()
        for topic, payload in self.retained.items():
            if topic != self.topics.availability:
                yield topic, payload
        if self.memory is not None:
            yield self.topics.memory, self.memory
        if self.available is not None:
            yield self._availability_message()

    def offline_message(self) -> tuple[str, str]:
        return self.topics.availability, "offline"

    def owned(self) -> set[str]:
        out = {topic for topic, _ in self.fields.replay()}
        out.update(self.retained)
        if self.memory is not None:
            out.add(self.topics.memory)
        return out

    def _clear_previous(self) -> None:
        if not self.previous:
            return
        stale = sorted(self.previous - self.owned())
        self.previous = set()
        for topic in stale:
            self.publish(topic, "", retain=True)
        if stale:
            log.info("publish.stale_cleared", charger=self.topics.charger, topics=len(stale))

    # ------------------------------------------------------------------ foreign writes

    def expected(self, topic: str) -> str | None:
        """What this bridge stands behind on `topic` ("" = nothing: the topic is to be
        empty); None for topics that are not its status (commands, results, unknown)."""
        root = self.topics.root
        if not topic.startswith(root + "/"):
            return None
        name = topic[len(root) + 1 :]
        if topic in self.retained:
            return self.retained[topic]
        if name == "memory":
            return self.memory or ""
        if name in _FIELDS:
            sent = self.fields.sent(name)
            return "" if sent is None else scalar(sent)
        if name.startswith("control/") and name[8:] in _CONTROL:
            return ""
        if name.startswith("raw/") and self.raw:
            return self.fields.raw_sent(name[4:]) or ""
        return None

    def foreign(self, topic: str, payload: bytes, now: float) -> bool:
        """A message on one of our topics that we did not send: answered with the truth.
        True when it was corrected."""
        if not self.started:
            return False  # nothing published yet: the first status says it all
        expected = self.expected(topic)
        if expected is None or payload == expected.encode():
            return False  # not a status topic, or our own message coming back (MQTT 3.1.1)
        count, since = self._corrections.get(topic, (0, now))
        if now - since > CORRECTION_WINDOW_S:
            count, since = 0, now
        count += 1
        self._corrections[topic] = (count, since)
        if count > CORRECTION_BURST:
            if count == CORRECTION_BURST + 1:
                log.warning("publish.foreign_writes", charger=self.topics.charger, topic=topic,
                            message="another client keeps writing this topic; it is set "
                            f"right at most {CORRECTION_BURST} times a minute")  # fmt: skip
            return False
        self.corrected += 1
        log.info("publish.foreign_write", charger=self.topics.charger, topic=topic,
                 payload=payload[:100].decode("utf-8", "replace"), truth=expected)  # fmt: skip
        if topic == self.topics.availability and self.available:
            self.set_available(True)
        else:
            self.publish(topic, expected, retain=True)
        return True
