"""The simulator's MQTT front-end: publishes the charger's state to a broker the way go-e
firmware does (docs/protocol/go-e.md#mqtt-v1, #mqtt-v2) and takes commands.

- API v1: the full v1 status on `<prefix>/<serial>/status` every `v1_interval_s` and on
  change; commands as `key=value` on `<prefix>/<serial>/cmd/req`.
- API v2: one retained topic per key (JSON), on change, plus the volatile keys about once a
  second; `<key>/set` answered on `<key>/result` with `success` or the error text, unless
  `write_access` is off (then a write is ignored without an answer, as with `mcr=true`).
  Firmware before 051.5 applies a write and answers nothing: the `result` topic and the
  `mcr` switch came with 051.5 (go-eCharger-API-v2 mqtt-de.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiomqtt

from ..aio import raise_if_cancelling
from ..mqtt.link import NO_DELAY
from .charger import SimCharger
from .firmware import Api

VOLATILE_KEYS = ("nrg", "rbt", "tma", "fhz", "rssi")
# Not published over MQTT: a 56.9 capture of every key (syssi/homeassistant-goecharger-mqtt
# docs/mqtt-traffic-056.9.log) has no WiFi or cloud key.
NOT_PUBLISHED = frozenset({"wke", "wak", "cak", "mck", "mcu", "wifis"})


class MqttFrontend:
    def __init__(
        self,
        charger: SimCharger,
        host: str,
        port: int,
        *,
        prefix: str = "go-eCharger",
        topic: str | None = None,
        write_access: bool = True,
        v1_interval_s: float = 5.0,
        volatile_interval_s: float = 1.0,
    ) -> None:
        self.charger = charger
        self.host = host
        self.port = port
        self.prefix = prefix.rstrip("/")
        self.topic = topic.rstrip("/") if topic else None
        self.write_access = write_access
        self.v1_interval_s = v1_interval_s
        self.volatile_interval_s = volatile_interval_s
        self._published: dict[str, str] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.sent = 0

    @property
    def root(self) -> str:
        # a custom topic prefix replaces `<prefix>/<serial>` entirely (go-e app, key mtp)
        return self.topic or f"{self.prefix}/{self.charger.serial}"

    async def start(self) -> MqttFrontend:
        self.charger.listeners.append(self._changed.set)
        self._task = asyncio.create_task(self._run(), name=f"sim-mqtt-{self.charger.serial}")
        async with asyncio.timeout(10):
            await self.connected.wait()
        return self

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.charger.listeners.remove(self._changed.set)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task
            self._task = None

    async def __aenter__(self) -> MqttFrontend:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=f"go-e-sim-{self.charger.serial}",
                    socket_options=NO_DELAY,
                ) as client:
                    if self.charger.api == Api.V2:
                        await client.subscribe(f"{self.root}/+/set", qos=1)
                    else:
                        await client.subscribe(f"{self.root}/cmd/req", qos=1)
                    # after every aiomqtt call: its wait_for can swallow a cancellation on
                    # Python 3.11 (aio.raise_if_cancelling), and close() would wait for ever
                    raise_if_cancelling()
                    self._published.clear()
                    self.connected.set()
                    publisher = asyncio.create_task(self._publisher(client))
                    try:
                        async for message in client.messages:
                            await self._command(client, message)
                            raise_if_cancelling()
                    finally:
                        publisher.cancel()
                        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                            await publisher
            except aiomqtt.MqttError:
                raise_if_cancelling()
                self.connected.clear()
                await asyncio.sleep(0.5)

    async def _publisher(self, client: aiomqtt.Client) -> None:
        loop = asyncio.get_running_loop()
        next_volatile = loop.time()
        while True:
            if self.charger.api == Api.V2:
                volatile = loop.time() >= next_volatile
                if volatile:
                    next_volatile = loop.time() + self.volatile_interval_s
                await self._publish_v2(client, force=VOLATILE_KEYS if volatile else ())
                wait = max(0.0, next_volatile - loop.time())
            else:
                await self._publish(
                    client,
                    f"{self.root}/status",
                    json.dumps(self.charger.status_v1()),
                    retain=False,
                )
                wait = self.v1_interval_s
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._changed.wait()

    async def _publish_v2(self, client: aiomqtt.Client, force: tuple[str, ...]) -> None:
        for key, value in self.charger.status_v2().items():
            if key in NOT_PUBLISHED:
                continue
            text = json.dumps(value, separators=(",", ":"))
            if self._published.get(key) != text or key in force:
                self._published[key] = text
                await self._publish(client, f"{self.root}/{key}", text, retain=True)

    async def _publish(
        self, client: aiomqtt.Client, topic: str, payload: str, retain: bool
    ) -> None:
        await client.publish(topic, payload, qos=0, retain=retain)
        raise_if_cancelling()
        self.sent += 1

    async def _command(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload: Any = message.payload
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
        answers = self.charger.has("mqtt_result")
        if not self.write_access or (answers and self.charger.mcr):
            return  # mcr=true: the charger ignores writes and says nothing
        if self.charger.api == Api.V1:
            self.charger.set_v1(text, via="mqtt-v1")
            return
        key = topic.rsplit("/", 2)[1]
        _, answer = self.charger.set_v2({key: text}, via="mqtt-v2")
        if not answers:
            return  # before 051.5: applied, no `result` topic
        result = answer[key]
        await client.publish(
            f"{self.root}/{key}/result", "success" if result is True else str(result), qos=0
        )
