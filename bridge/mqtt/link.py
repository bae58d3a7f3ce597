"""One MQTT broker link: aiomqtt behind a small adapter.

- Last Will `offline` (retained) on the bridge state topic, `online` after every connect.
- Reconnect with capped exponential backoff and jitter, reset by a successful connect.
- Subscriptions are remembered and renewed after every reconnect.
- `publish()` never blocks and never fails: it records the message in an outbox that keeps
  the *latest value per topic* (bounded by the number of topics) plus a bounded queue of
  non-retained messages; a sender task drains it while connected. After a reconnect all
  retained state is sent again, so nothing meant to be published while the link was down
  is lost, and a slow broker never delays polling or commands.
"""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from .. import logs
from ..aio import raise_if_cancelling
from ..backoff import Backoff
from ..config import BrokerConfig

log = logs.get("goe_bridge.mqtt")

Handler = Callable[[str, bytes, bool], None]

# Status updates go out as bursts of small messages; with Nagle's algorithm the second and
# later ones wait for the broker's delayed ACK (~40 ms). Measured by bench/status_latency.py.
NO_DELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)

# Non-retained messages (command results) waiting while the link is down; older ones are
# dropped first. Retained state has no such limit: it is one entry per topic.
MAX_TRANSIENT = 1000


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    payload: bytes
    retain: bool
    qos: int


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT filter matching (`+` one level, `#` the rest)."""
    p_levels = pattern.split("/")
    t_levels = topic.split("/")
    for i, level in enumerate(p_levels):
        if level == "#":
            return True
        if i >= len(t_levels):
            return False
        if level != "+" and level != t_levels[i]:
            return False
    return len(p_levels) == len(t_levels)


def _tls_context(cfg: BrokerConfig) -> ssl.SSLContext | None:
    tls = cfg.tls
    if not tls.enabled:
        return None
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class BrokerLink:
    def __init__(
        self,
        name: str,
        cfg: BrokerConfig,
        *,
        state_topic: str | None = None,
        client_id: str | None = None,
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.state_topic = state_topic
        self.client_id = (
            cfg.client_id
            or client_id
            or (f"goe-bridge-{socket.gethostname()}-{os.getpid()}-{name}")
        )
        self._subscriptions: dict[str, list[Handler]] = {}
        self._retained: dict[str, Outgoing] = {}
        self._pending: dict[str, Outgoing] = {}  # latest per topic, not yet sent
        self._transient: collections.deque[Outgoing] = collections.deque(maxlen=MAX_TRANSIENT)
        self._wakeup = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.backoff = Backoff(base_s=1.0, cap_s=60.0)
        # counters for /metrics and tests
        self.connects = 0
        self.published = 0
        self.last_error: str | None = None
        self.on_connect: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ API

    def subscribe(self, pattern: str, handler: Handler) -> None:
        new = pattern not in self._subscriptions
        self._subscriptions.setdefault(pattern, []).append(handler)
        if new and self._client is not None and self.connected.is_set():
            asyncio.get_running_loop().create_task(
                self._subscribe_now(pattern), name=f"mqtt-{self.name}-subscribe"
            )

    def publish(
        self, topic: str, payload: str | bytes, *, retain: bool = False, qos: int = 0,
        remember: bool = True,
    ) -> None:  # fmt: skip
        """Queue a message. Retained messages are also remembered and sent again after a
        reconnect (`remember=False` for one-off retained clears)."""
        data = payload.encode() if isinstance(payload, str) else payload
        message = Outgoing(topic, data, retain, qos)
        if retain:
            if remember:
                self._retained[topic] = message
            self._pending[topic] = message
        else:
            self._transient.append(message)
        self._wakeup.set()

    def forget(self, topic: str) -> None:
        self._retained.pop(topic, None)

    @property
    def queue_sizes(self) -> tuple[int, int, int]:
        return len(self._pending), len(self._transient), len(self._retained)

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        """Connect, serve and reconnect for ever (cancel to stop)."""
        while True:
            try:
                await self._session()
            except (aiomqtt.MqttError, OSError, ssl.SSLError) as exc:
                # aiomqtt can turn a cancellation into "Disconnected during message
                # iteration"; a shutdown must not become a reconnect.
                raise_if_cancelling()
                self.last_error = str(exc) or type(exc).__name__
            self.connected.clear()
            self._client = None
            delay = self.backoff.failure()
            log.warning(
                "mqtt.disconnected",
                broker=self.name,
                host=self.cfg.host,
                port=self.cfg.port,
                error=self.last_error,
                retry_in_s=round(delay, 1),
            )
            await asyncio.sleep(delay)

    def _client_args(self) -> dict[str, Any]:
        cfg = self.cfg
        will = None
        if self.state_topic:
            will = aiomqtt.Will(self.state_topic, b"offline", qos=1, retain=True)
        return {
            "hostname": cfg.host,
            "port": cfg.port,
            "username": cfg.username,
            "password": cfg.password.reveal() if cfg.password else None,
            "identifier": self.client_id,
            "keepalive": cfg.keepalive_s,
            "will": will,
            "tls_context": _tls_context(cfg),
            "timeout": 10,
            "socket_options": NO_DELAY,
        }

    async def _session(self) -> None:
        client = aiomqtt.Client(**self._client_args())
        async with client:
            self._client = client
            self.connects += 1
            self.last_error = None
            # A connection that worked resets the backoff: after a broker restart the bridge
            # is back within a second. Connects that fail (broker down, wrong password) keep
            # growing it up to the cap, so there is never a tight loop.
            self.backoff.success()
            log.info("mqtt.connected", broker=self.name, host=self.cfg.host, port=self.cfg.port)
            for pattern in list(self._subscriptions):
                await self._subscribe_now(pattern)
                raise_if_cancelling()
            if self.state_topic:
                await client.publish(self.state_topic, b"online", qos=1, retain=True)
                raise_if_cancelling()
            # Everything retained goes out again: a restarted broker may have lost it.
            for topic, message in self._retained.items():
                self._pending.setdefault(topic, message)
            self._wakeup.set()
            self.connected.set()
            for callback in list(self.on_connect):
                callback()
            # Plain tasks, not a TaskGroup: a disconnect must surface as MqttError (which
            # run() retries), not wrapped in an ExceptionGroup.
            helpers = [
                asyncio.create_task(self._sender(client), name=f"mqtt-{self.name}-sender"),
            ]
            try:
                async for incoming in client.messages:
                    self._dispatch(incoming)
            finally:
                for task in helpers:
                    task.cancel()
                results = await asyncio.gather(*helpers, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception) and not isinstance(result, aiomqtt.MqttError):
                    raise result
            raise aiomqtt.MqttError("message stream ended")

    async def _subscribe_now(self, pattern: str) -> None:
        if self._client is not None:
            await self._client.subscribe(pattern, qos=1)

    async def _sender(self, client: aiomqtt.Client) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._transient or self._pending:
                if self._transient:
                    message = self._transient[0]
                    await client.publish(message.topic, message.payload, message.qos, False)
                    raise_if_cancelling()
                    self._transient.popleft()
                else:
                    topic = next(iter(self._pending))
                    message = self._pending[topic]
                    await client.publish(
                        message.topic, message.payload, message.qos, message.retain
                    )
                    raise_if_cancelling()
                    # Only drop it if no newer value arrived while we were sending.
                    if self._pending.get(topic) is message:
                        del self._pending[topic]
                self.published += 1

    def _dispatch(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload
        if isinstance(payload, str):
            data = payload.encode()
        elif isinstance(payload, bytes | bytearray):
            data = bytes(payload)
        elif payload is None:
            data = b""
        else:
            data = str(payload).encode()
        for pattern, handlers in list(self._subscriptions.items()):
            if topic_matches(pattern, topic):
                for handler in handlers:
                    try:
                        handler(topic, data, bool(message.retain))
                    except Exception:
                        # A handler bug must not take the link down; inputs are validated
                        # in the handlers, so this is logged as a bug.
                        log.exception("mqtt.handler_failed", broker=self.name, topic=topic)

    async def close(self) -> None:
        """Publish `offline` and disconnect (orderly shutdown)."""
        client = self._client
        if client is not None and self.connected.is_set() and self.state_topic:
            try:
                async with asyncio.timeout(5):
                    await client.publish(self.state_topic, b"offline", qos=1, retain=True)
            except (aiomqtt.MqttError, TimeoutError) as exc:
                log.warning("mqtt.offline_not_sent", broker=self.name, error=str(exc))
