"""The charger's own MQTT output (docs/protocol/go-e.md#mqtt-v1, #mqtt-v2). Push, not poll.

- API v1 (HW V1/V2, firmware ≥ 030): the full status JSON on `<prefix>/<serial>/status` about
  every 5 s; commands as `key=value` text on `<prefix>/<serial>/cmd/req`; verified by the next
  status.
- API v2 (V3+): one retained topic per key (`<prefix>/<serial>/<key>`, JSON), assembled into a
  status as keys arrive; writes on `<key>/set`, answered on `<key>/result` with `success` or
  the charger's error text (firmware ≥ 051.5). No answer in time = failed write, usually
  because the charger's MQTT write access is off (`mcr`).
- The prefix is configurable and both forms are accepted: firmware from 053.1 to 60.5 publishes
  with a leading slash (`/go-eCharger/…`, syssi captures), the documented default has none.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from ... import logs
from ...aio import wait_event
from ...mqtt.link import BrokerLink
from .. import codec_v1, codec_v2
from ..model import (
    MQTT_RESULT_SINCE,
    ApiVersion,
    ChargerStatus,
    ChargerUnavailable,
    CodecError,
    WireValue,
    WriteRejected,
    firmware_at_least,
)
from .base import StatusDecoder, Transport

log = logs.get("goe_bridge.goe_mqtt")

RESULT_TIMEOUT_S = 5.0  # docs/protocol/go-e.md#verification: wait ≈ 5 s for <key>/result
V1_VERIFY_TIMEOUT_S = 12.0  # v1 publishes its status every 5 s

WRITE_ACCESS_HINT = (
    "no answer on {topic} within {seconds:g} s: the charger's MQTT write access is probably "
    "off (go-e app: MQTT 'read only', key mcr=true) or its firmware is older than 051.5"
)


class GoeMqttTransport(Transport):
    kind = "mqtt"
    push = True

    def __init__(
        self,
        link: BrokerLink,
        serial: str,
        *,
        prefix: str = "go-eCharger",
        topic: str | None = None,
        api: Literal["auto", "v1", "v2"] = "auto",
        timeout_s: float = 30.0,
        result_timeout_s: float = RESULT_TIMEOUT_S,
        v1_verify_timeout_s: float = V1_VERIFY_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.link = link
        self.serial = serial
        base = prefix.strip("/")
        # The configured form first: it is where writes go until traffic shows the other.
        first = prefix if prefix.startswith("/") else base
        self.prefixes = [first, "/" + base if first == base else base]
        # The topic roots: `<prefix>/<serial>` in both forms, or the charger's custom topic
        # prefix (app: MQTT "topic prefix", key mtp), which replaces `<prefix>/<serial>/`
        # entirely (syssi/homeassistant-goecharger-mqtt #80, PR #128).
        self.roots = [topic.rstrip("/")] if topic else [f"{p}/{serial}" for p in self.prefixes]
        self.write_root = self.roots[0]
        self.api = None if api == "auto" else ApiVersion(api)
        self.timeout_s = timeout_s
        self.result_timeout_s = result_timeout_s
        self.v1_verify_timeout_s = v1_verify_timeout_s
        self.clock = clock
        self._keys: dict[str, Any] = {}
        self._status: ChargerStatus | None = None
        self._last_message: float | None = None
        self._emit_scheduled = False
        self._results: dict[str, asyncio.Future[str]] = {}
        self._status_event = asyncio.Event()
        self._on_status: Callable[[ChargerStatus], None] = lambda status: None
        self._on_unavailable: Callable[[str], None] = lambda reason: None
        self._offline_reported = False
        self.messages = 0
        self.decode_errors = 0
        self._decode = StatusDecoder()
        for root in self.roots:
            link.subscribe(f"{root}/+", self._handle)
            link.subscribe(f"{root}/+/result", self._handle_result)

    # ------------------------------------------------------------------ inbound

    def _handle(self, topic: str, payload: bytes, retain: bool) -> None:
        key = topic.rsplit("/", 1)[1]
        if key in ("set", "result", "req"):
            return
        # Retained is not live: at subscribe time the broker hands out what a charger sent
        # last, even one switched off hours ago (go-e's topics are retained, and a go-e
        # without a will leaves them "charging"). Retained values fill in the status, but
        # the charger counts as online only from its first live message.
        if not retain:
            self._seen(topic)
        if key == "status" and self.api is not ApiVersion.V2:
            self._handle_v1(payload)
            return
        if self.api is ApiVersion.V1:
            return
        try:
            value = codec_v2.parse_value(key, payload)
        except CodecError as exc:
            self.decode_errors += 1
            log.warning("goe_mqtt.bad_value", serial=self.serial, error=str(exc))
            return
        if self.api is None:
            self.api = ApiVersion.V2
        self._keys[key] = value
        if key == "mcc" and value is False:
            # `mcc` false: the charger's MQTT connection is gone (the Last Will go-e
            # describes in go-eCharger-API-v2 PR #345): offline now, not after timeout_s
            self._gone("the charger's MQTT connection is gone (mcc=false)")
            return
        self._schedule_emit()

    def _handle_v1(self, payload: bytes) -> None:
        try:
            status = json.loads(payload.decode("utf-8", "replace"))
        except ValueError:
            self.decode_errors += 1
            log.warning("goe_mqtt.bad_status", serial=self.serial, error="status is not JSON")
            return
        if not isinstance(status, dict):
            self.decode_errors += 1
            return
        self.api = ApiVersion.V1
        self._keys = status
        self._schedule_emit()

    def _seen(self, topic: str) -> None:
        self.messages += 1
        self._last_message = self.clock()
        # Write where the charger actually publishes (with or without the leading slash).
        for root in self.roots:
            if topic.startswith(f"{root}/"):
                self.write_root = root
                break
        if self._offline_reported:
            self._offline_reported = False

    def _schedule_emit(self) -> None:
        # Coalesce the keys that arrive in one burst into one status, without adding delay.
        if not self._emit_scheduled:
            self._emit_scheduled = True
            asyncio.get_running_loop().call_soon(self._emit)

    def _gone(self, reason: str) -> None:
        self._last_message = None
        self._status = None
        if not self._offline_reported:
            self._offline_reported = True
            self._on_unavailable(reason)

    def _emit(self) -> None:
        self._emit_scheduled = False
        if self.api is None or "car" not in self._keys:
            return  # not enough yet for a status
        if self._last_message is None:
            return  # only retained so far: not live
        try:
            status = self._decode(self.api, self._keys)
        except CodecError as exc:
            self.decode_errors += 1
            log.warning("goe_mqtt.decode_failed", serial=self.serial, error=str(exc))
            return
        if status.serial is None:
            status = dataclasses.replace(status, serial=self.serial)
        self.firmware = status.firmware
        self._status = status
        self._status_event.set()
        self._on_status(status)

    def _handle_result(self, topic: str, payload: bytes, retain: bool) -> None:
        key = topic.rsplit("/", 2)[1]
        future = self._results.get(key)
        if future is not None and not future.done():
            future.set_result(payload.decode("utf-8", "replace").strip())

    # ------------------------------------------------------------------ Transport

    async def read_status(self) -> ChargerStatus:
        if self._status is None:
            raise ChargerUnavailable(f"no status from the charger on {self.roots[0]}/# yet")
        return self._status

    async def run(
        self,
        on_status: Callable[[ChargerStatus], None],
        on_unavailable: Callable[[str], None],
    ) -> None:
        """Deliver statuses as they arrive; report silence longer than `timeout_s`."""
        self._on_status = on_status
        self._on_unavailable = on_unavailable
        started = self.clock()
        on_unavailable("waiting for the charger's first MQTT status")
        while True:
            await asyncio.sleep(min(1.0, self.timeout_s / 4))
            if self._last_message is None and self._offline_reported:
                continue  # already offline (mcc will), waiting for a live message
            last = self._last_message if self._last_message is not None else started
            quiet = self.clock() - last
            if quiet > self.timeout_s and not self._offline_reported:
                self._gone(f"no MQTT message from the charger for {quiet:.0f} s")

    async def write(self, changes: Mapping[str, WireValue]) -> None:
        if self.api is ApiVersion.V1:
            for key, value in changes.items():
                await self._write_v1(key, value)
            return
        for key, value in changes.items():
            await self._write_v2(key, value)

    async def _write_v2(self, key: str, value: WireValue) -> None:
        text = codec_v2.encode_set({key: value})[key]
        topic = f"{self.write_root}/{key}/set"
        if firmware_at_least(self.firmware, MQTT_RESULT_SINCE) is False:
            # before 051.5 the charger answers no `result` (go-eCharger-API-v2 mqtt-de.md):
            # the write shows in the key's own topic, or it did not take
            self.link.publish(topic, text, qos=1)
            await self._verify_v2_state(key, value, text)
            return
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._results[key] = future
        try:
            self.link.publish(topic, text, qos=1)
            try:
                async with asyncio.timeout(self.result_timeout_s):
                    answer = await future
            except TimeoutError:
                raise WriteRejected(
                    key,
                    WRITE_ACCESS_HINT.format(
                        topic=f"{self.write_root}/{key}/result",
                        seconds=self.result_timeout_s,
                    ),
                ) from None
        finally:
            if self._results.get(key) is future:
                del self._results[key]
        if answer != "success":
            raise WriteRejected(key, answer)

    async def _verify_v2_state(self, key: str, value: WireValue, text: str) -> None:
        deadline = self.clock() + self.v1_verify_timeout_s
        while True:
            if key in self._keys and self._keys[key] == value:
                return
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise WriteRejected(
                    key,
                    f"not applied: {self.write_root}/{key} shows "
                    f"{json.dumps(self._keys.get(key))[:40]} after {text} (this firmware "
                    f"answers no result topic before 051.5)",
                )
            self._status_event.clear()
            await wait_event(self._status_event, remaining)

    async def _write_v1(self, key: str, value: WireValue) -> None:
        command = codec_v1.encode_command(key, value)
        self.link.publish(f"{self.write_root}/cmd/req", command, qos=1)
        deadline = self.clock() + self.v1_verify_timeout_s
        while self.clock() < deadline:
            self._status_event.clear()
            await wait_event(self._status_event, deadline - self.clock())
            if codec_v1.verify(key, value, self._keys):
                return
        shown = ("amx" if "amx" in self._keys else "amp") if key == "amx" else key
        raise WriteRejected(
            key, f"not applied: status shows {shown}={self._keys.get(shown)!r} after {command}"
        )

    def describe(self) -> dict[str, Any]:
        return {"type": "mqtt", "api": self.api.value if self.api else None}
