"""One bridge serves a base topic: when two run (a rolling update, an old container still
up, a systemd unit beside a container), the newer one serves and the older one stands by.

What decides is a live exchange between running instances, never a retained message or a
wall clock: a retained `bridge/info` outlives its bridge, anyone can forge one, and a Pi
without a real-time clock or an NTP step makes timestamps lie.

- Every (re)connect, a bridge publishes a `ping` on `<base>/bridge/ping` (not retained) with
  its instance id and its uptime on the monotonic clock. A running bridge answers every
  ping on `<base>/bridge/pong/<asker>`; if the asker started later, the answering one
  stands by.
- A bridge whose own ping is answered by an instance that started later stands by.
- Two bridges with the same client id (the default: derived from the base topic) cannot
  be connected at once: the broker closes the older connection. MQTT 5 may say "session
  taken over"; MQTT 3.1.1 says nothing (and mosquitto 2.0 may close the connection before
  its 0x8E is out), so after any disconnect a bridge asks, over a connection of its own,
  whether a newer instance answers before it connects again.
- Standing by: the charger is neither read nor written, nothing is published (the serving
  bridge owns every topic), the broker link is closed without a Last Will. Every
  WATCH_INTERVAL_S the standing-by bridge pings over a connection of its own; when no
  instance answers twice in a row, it serves again.

No message can stop a bridge for good: a forged ping makes it stand by until its watch finds
nobody answering, about a minute; a forged pong is ignored unless it answers our own ping.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiomqtt

from . import logs
from .aio import raise_if_cancelling
from .mqtt.client import side_client
from .mqtt.link import BrokerLink

__all__ = ["Arbiter"]

log = logs.get("goe_bridge.arbitration")

PONG_WAIT_S = 1.0
WATCH_INTERVAL_S = 30.0
# A standing-by bridge serves again after this many watches in a row without an answer
MISSES_TO_SERVE = 2


class Arbiter:
    def __init__(
        self,
        link: BrokerLink,
        base: str,
        instance: str,
        *,
        on_standby: Callable[[bool, dict[str, Any] | None], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.link = link
        self.base = base
        self.instance = instance
        self.on_standby = on_standby
        self.clock = clock
        self.started = clock()
        self.standing_by = False
        self.other: dict[str, Any] | None = None  # the instance we stand by for
        self.ping_topic = f"{base}/bridge/ping"
        self._wake = asyncio.Event()

    def start(self) -> None:
        self.link.subscribe(self.ping_topic, self._on_ping)
        self.link.subscribe(f"{self.base}/bridge/pong/{self.instance}", self._on_pong)
        self.link.on_connect.append(self._ping)
        self.link.on_taken_over.append(self._taken_over)
        self.link.may_reconnect = self._may_reconnect

    def uptime(self) -> float:
        return self.clock() - self.started

    def _message(self, **extra: Any) -> str:
        return json.dumps({"from": self.instance, "uptime_s": round(self.uptime(), 3), **extra})

    def _newer(self, other: dict[str, Any]) -> bool:
        """The other instance started after this one (it serves)."""
        return (float(other["uptime_s"]), str(other["from"])) < (self.uptime(), self.instance)

    @staticmethod
    def _parse(payload: bytes) -> dict[str, Any] | None:
        try:
            value = json.loads(payload)
            if not isinstance(value, dict) or not isinstance(value.get("from"), str):
                return None
            uptime = float(value["uptime_s"])
        except (ValueError, KeyError, TypeError, RecursionError):
            return None
        if not 0 <= uptime < 1e12:
            return None
        value["uptime_s"] = uptime
        return value

    # ------------------------------------------------------------------ serving

    def _ping(self) -> None:
        self.link.publish(self.ping_topic, self._message(), qos=1)

    def _on_ping(self, topic: str, payload: bytes, retain: bool) -> None:
        other = self._parse(payload)
        if retain or other is None or other["from"] == self.instance or self.standing_by:
            return  # a retained ping is nobody alive
        self.link.publish(f"{self.base}/bridge/pong/{other['from']}", self._message(), qos=1)
        if not other.get("watch") and self._newer(other):
            self._stand_by(other, "a newer goe-bridge started on the same base topic")

    def _on_pong(self, topic: str, payload: bytes, retain: bool) -> None:
        other = self._parse(payload)
        if retain or other is None or other["from"] == self.instance:
            return
        if self._newer(other) and not self.standing_by:
            self._stand_by(other, "a newer goe-bridge serves the same base topic")

    def _taken_over(self) -> None:
        self._stand_by(None, "the broker gave this bridge's session to another client with "
                       "the same client id")  # fmt: skip

    async def _may_reconnect(self) -> bool:
        """After a disconnect nobody explained: is a newer instance serving? MQTT 3.1.1 has
        no word for "session taken over", and mosquitto 2.0 may close the connection before
        its MQTT 5 DISCONNECT 0x8E is out."""
        answers = await self.ask()
        newer = [a for a in answers if self._newer(a)]
        if newer:
            self._stand_by(newer[0], "a newer goe-bridge serves the same base topic")
            return False
        return True

    def _stand_by(self, other: dict[str, Any] | None, reason: str) -> None:
        if self.standing_by:
            return
        self.standing_by = True
        self.other = other
        log.error(
            "bridge.standby",
            reason=reason,
            other=other,
            this={"id": self.instance, "uptime_s": round(self.uptime(), 1)},
            message="another goe-bridge serves these chargers; this one writes nothing, "
            "publishes nothing and takes over when the other is gone. Run one bridge per "
            "base topic.",
        )
        self.link.pause()
        self.on_standby(True, other)
        self._wake.set()

    # ------------------------------------------------------------------ standing by

    async def run(self) -> None:
        misses = 0
        while True:
            if not self.standing_by:
                self._wake.clear()
                await self._wake.wait()
                misses = 0
                continue
            await asyncio.sleep(WATCH_INTERVAL_S)
            answers = await self.ask()
            misses = 0 if answers else misses + 1
            if misses >= MISSES_TO_SERVE:
                log.warning("bridge.serving_again", after_s=round(misses * WATCH_INTERVAL_S),
                            message="no other goe-bridge answers on this base topic")  # fmt: skip
                self.standing_by = False
                self.other = None
                self.on_standby(False, None)
                self.link.resume()

    async def ask(self) -> list[dict[str, Any]]:
        """Ping over a connection of our own; the instances that answer within
        PONG_WAIT_S. An unreachable broker answers nothing."""
        asker = f"{self.instance}-w{uuid.uuid4().hex[:6]}"
        answers: list[dict[str, Any]] = []
        client_id = f"{self.link.client_id}-{asker}"
        try:
            async with side_client(self.link.cfg, client_id, timeout_s=PONG_WAIT_S) as client:
                await client.subscribe(f"{self.base}/bridge/pong/{asker}", qos=1)
                await client.publish(
                    self.ping_topic,
                    json.dumps({"from": asker, "uptime_s": round(self.uptime(), 3),
                                "watch": True}),
                    qos=1,
                )  # fmt: skip
                async with asyncio.timeout(PONG_WAIT_S):
                    async for message in client.messages:
                        payload = message.payload
                        if isinstance(payload, bytes | bytearray):
                            answer = self._parse(bytes(payload))
                            if answer is not None and answer["from"] != self.instance:
                                answers.append(answer)
        except (aiomqtt.MqttError, OSError, TimeoutError):
            pass
        # aiomqtt's wait_for can swallow a cancellation on Python 3.11 (aio.raise_if_cancelling);
        # the watch loop would then ping on after the bridge was told to stop
        raise_if_cancelling()
        return answers
