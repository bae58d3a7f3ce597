"""One MQTT broker link: aiomqtt behind a small adapter.

- Last Will `offline` (retained) on the bridge state topic, `online` after every connect.
- Reconnect with capped exponential backoff and jitter, reset by a successful connect.
- A persistent session (MQTT 5 session expiry, or MQTT 3.1.1 `clean_session=false` where the
  broker refuses MQTT 5) with QoS 1 subscriptions and a client id that stays the same across
  restarts: a command the broker accepted while the bridge was away (a reconnect, its own
  restart, a broker restart with persistence) is delivered when it is back, in order.
- Command subscriptions never replay the past: with MQTT 5 the broker sends their retained
  messages only when the subscription is new (retain handling 1); a retained or re-delivered
  (DUP) command equal to one already handled on that topic is dropped.
- Command topics keep only their newest unread message: a flood is coalesced on arrival
  instead of queued (a newer value on the same topic supersedes an unread older one).
- A session taken over by another client with the same client id (MQTT 5 reason 0x8E) is
  reported as exactly that and not retried, so two bridges never fight over one session.
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
import contextlib
import itertools
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

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

# Retained messages handed to paho at once (bounded: the socket drains between batches)
SEND_BATCH = 100
# Filters per SUBSCRIBE packet when (re)connecting (mosquitto takes any number; 100 keeps a
# packet a few kB)
SUBSCRIBE_BATCH = 100

# MQTT 5 DISCONNECT reason 0x8E: another client connected with this client id.
SESSION_TAKEN_OVER = 142
# CONNACK "unsupported protocol version": 1 in MQTT 3.1.1, 0x84 in MQTT 5.
PROTOCOL_REFUSED = (1, 132)
# Once the broker was reachable, it is tried again at least this often (a restarted broker
# is back within seconds); before that the backoff grows to RETRY_CAP_S.
RETRY_CAP_CONNECTED_S = 5.0
RETRY_CAP_S = 30.0
# Command payloads already handled that a re-delivery is compared with, per topic.
REPLAY_MEMORY = 8
# More messages than this in a window is a flood (see _consumer).
FLOOD_WINDOW_S = 0.1
FLOOD_MESSAGES = 200
FLOOD_PAUSE_S = 0.02


class Incoming(NamedTuple):
    topic: str
    payload: bytes
    retain: bool  # delivered from the broker's retained store
    dup: bool  # a QoS 1 re-delivery (after a reconnect or broker restart)


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


class _Node:
    __slots__ = ("children", "pattern")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.pattern: str | None = None


class Filters:
    """Subscription filters indexed level by level: matching a topic costs its depth, not
    the number of filters. A fleet of 500 chargers subscribes to about 2,000 of them, and
    every incoming message was matched against each (bench/floor.py start-up profile)."""

    def __init__(self) -> None:
        self._root = _Node()
        self._order: dict[str, int] = {}

    def add(self, pattern: str) -> None:
        if pattern in self._order:
            return
        self._order[pattern] = len(self._order)
        node = self._root
        for level in pattern.split("/"):
            node = node.children.setdefault(level, _Node())
        node.pattern = pattern

    def remove(self, pattern: str) -> None:
        if self._order.pop(pattern, None) is None:
            return
        node: _Node | None = self._root
        for level in pattern.split("/"):
            node = node.children.get(level) if node is not None else None
        if node is not None:
            node.pattern = None

    def __contains__(self, pattern: object) -> bool:
        return pattern in self._order

    def match(self, topic: str) -> list[str]:
        """The filters matching `topic`, in the order they were added (as topic_matches)."""
        levels = topic.split("/")
        found: list[str] = []
        stack = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            rest = node.children.get("#")
            if rest is not None and rest.pattern is not None:
                found.append(rest.pattern)  # `a/#` matches `a` and everything below
            if i == len(levels):
                if node.pattern is not None:
                    found.append(node.pattern)
                continue
            for key in (levels[i], "+"):
                child = node.children.get(key)
                if child is not None:
                    stack.append((child, i + 1))
        if len(found) > 1:
            found.sort(key=self._order.__getitem__)
        return found


class _Inbox:
    """The incoming queue's storage: arrival order, but a message on a latest-only topic
    replaces an older unread one on the same topic (moving to the end, so the order of
    what remains is still the order of arrival)."""

    def __init__(self, latest_only: Callable[[str], bool]) -> None:
        self._latest_only = latest_only
        self._items: collections.OrderedDict[object, Incoming] = collections.OrderedDict()
        self._seq = itertools.count()
        self.superseded = 0

    def append(self, item: Incoming) -> None:
        latest_only = self._latest_only(item.topic)
        if latest_only and not item.payload:
            # A cleared set topic (the bridge's own clear coming back): nothing to do, and
            # it must not supersede an unread command on the same topic.
            return
        key: object = item.topic if latest_only else next(self._seq)
        if self._items.pop(key, None) is not None:
            self.superseded += 1
        self._items[key] = item

    def popleft(self) -> Incoming:
        return self._items.popitem(last=False)[1]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Incoming]:
        return iter(self._items.values())


class _Client(aiomqtt.Client):
    """aiomqtt, plus what it does not pass on: CONNACK's session-present flag, the
    DISCONNECT reason, and a message's DUP flag."""

    session_present = False
    disconnect_reason: int | None = None
    deliver: Callable[[Incoming], None] = staticmethod(lambda incoming: None)

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Properties | None = None) -> None:  # fmt: skip
        self.session_present = bool(getattr(flags, "session_present", False))
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Properties | None = None) -> None:  # fmt: skip
        self.disconnect_reason = int(getattr(reason_code, "value", reason_code))
        super()._on_disconnect(client, userdata, flags, reason_code, properties)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        # Straight into the link's inbox: aiomqtt's own queue costs a task per message.
        self.deliver(
            Incoming(message.topic, bytes(message.payload), bool(message.retain), bool(message.dup))
        )

    async def publish_batch(self, messages: Sequence[Outgoing]) -> None:
        """QoS 0 messages handed to paho in one go; returns once the last one is written.
        aiomqtt's publish() waits for each message on its own (an Event, a wait_for task,
        a writer registration and a loop wake-up each), which made sending most of the
        start-up of a fleet: 30,000 first messages for 500 chargers (bench/floor.py)."""
        last: paho.MQTTMessageInfo | None = None
        for message in messages:
            info = self._client.publish(message.topic, message.payload, 0, message.retain)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
            last = info
        if last is None or last.is_published():
            return
        confirmation = asyncio.Event()
        with self._pending_call(last.mid, confirmation, self._pending_publishes):
            await self._wait_for(confirmation.wait(), timeout=None)


class SessionTakenOver(Exception):
    """Another client connected with this link's client id."""


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
        # Stable across restarts (derived from the config by the caller): the persistent
        # session, and the commands queued in it, belong to this id.
        self.client_id = cfg.client_id or client_id or f"goe-bridge-{socket.gethostname()}-{name}"
        self._subscriptions: dict[str, list[Handler]] = {}
        self._filters = Filters()  # the keys of _subscriptions, indexed
        self._commands: set[str] = set()  # patterns subscribed with command=True
        self._latest: set[str] = set()  # patterns whose unread messages are coalesced
        self._handled: dict[str, collections.deque[bytes]] = {}
        self._inbox = _Inbox(self._is_latest_only)
        self._inbox_ready = asyncio.Event()
        self.protocol = (
            aiomqtt.ProtocolVersion.V311 if cfg.protocol == "3.1.1" else aiomqtt.ProtocolVersion.V5
        )
        self._v5_failed = False
        self.session_present = False
        self.taken_over = False
        self.replays_dropped = 0
        self.on_taken_over: list[Callable[[], None]] = []
        self._closing = False
        self._ever_connected = False
        self._retained: dict[str, Outgoing] = {}
        self._pending: dict[str, Outgoing] = {}  # latest per topic, not yet sent
        self._transient: collections.deque[Outgoing] = collections.deque(maxlen=MAX_TRANSIENT)
        self._wakeup = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.backoff = Backoff(base_s=1.0, cap_s=RETRY_CAP_S)
        # counters for /metrics and tests
        self.connects = 0
        self.published = 0
        self.last_error: str | None = None
        self.on_connect: list[Callable[[], None]] = []
        if state_topic:
            self.subscribe(state_topic, self._on_own_state)

    # ------------------------------------------------------------------ API

    def subscribe(
        self, pattern: str, handler: Handler, *, command: bool = False, latest_only: bool = False
    ) -> None:
        """`command=True` for topics that carry commands the bridge clears once handled:
        their retained messages come only with a new subscription, re-deliveries of what was
        already handled are dropped, and only the newest unread message per topic is kept.
        `latest_only=True` for set points published as state (openWB's own retained topics):
        only the newest unread message per topic is kept, retained ones come every time."""
        new = pattern not in self._subscriptions
        self._subscriptions.setdefault(pattern, []).append(handler)
        self._filters.add(pattern)
        if command:
            self._commands.add(pattern)
        if command or latest_only:
            self._latest.add(pattern)
        if new and self._client is not None and self.connected.is_set():
            asyncio.get_running_loop().create_task(
                self._subscribe_now(pattern), name=f"mqtt-{self.name}-subscribe"
            )

    def unsubscribe(self, pattern: str, handler: Handler) -> None:
        """Take back one `subscribe`; the broker's subscription goes with the last handler."""
        handlers = self._subscriptions.get(pattern)
        if handlers is None or handler not in handlers:
            return
        handlers.remove(handler)
        if handlers:
            return
        del self._subscriptions[pattern]
        self._filters.remove(pattern)
        self._commands.discard(pattern)
        self._latest.discard(pattern)
        client = self._client
        if client is not None and self.connected.is_set():
            asyncio.get_running_loop().create_task(
                self._unsubscribe_now(client, pattern), name=f"mqtt-{self.name}-unsubscribe"
            )

    async def _unsubscribe_now(self, client: aiomqtt.Client, pattern: str) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            await client.unsubscribe(pattern)

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
            except SessionTakenOver:
                self.connected.clear()
                self._client = None
                self.taken_over = True
                log.error(  # noqa: TRY400 - a fact to report, not a traceback
                    "mqtt.session_taken_over",
                    broker=self.name,
                    client_id=self.client_id,
                    message="another client connected with this client id (another "
                    "goe-bridge on the same config?); not reconnecting",
                )
                for callback in list(self.on_taken_over):
                    callback()
                await asyncio.Event().wait()  # never fight over the session
            except MqttConnectError as exc:
                raise_if_cancelling()
                self.last_error = str(exc)
                rc = exc.rc.value if isinstance(exc.rc, ReasonCode) else int(exc.rc or 0)
                if self._try_other_protocol(refused=rc in PROTOCOL_REFUSED):
                    continue
            except (aiomqtt.MqttError, OSError, ssl.SSLError) as exc:
                # aiomqtt can turn a cancellation into "Disconnected during message
                # iteration"; a shutdown must not become a reconnect.
                raise_if_cancelling()
                self.last_error = str(exc) or type(exc).__name__
                if not self.connected.is_set():
                    # no CONNACK at all: a 3.1.1-only broker may ignore an MQTT 5 CONNECT
                    # (amqtt does); the next attempt tries the other version
                    self._try_other_protocol(refused=False)
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

    def _try_other_protocol(self, *, refused: bool) -> bool:
        """With `protocol: auto`, until a connection worked: after an MQTT 5 attempt that got
        no CONNACK (or "unsupported protocol version"), try 3.1.1, and the other way round,
        so a broker that is merely down costs nothing extra. True: retry at once."""
        if self.cfg.protocol != "auto" or self._ever_connected:
            return False
        if self.protocol is aiomqtt.ProtocolVersion.V5:
            self._v5_failed = True
            self.protocol = aiomqtt.ProtocolVersion.V311
            return refused
        self.protocol = aiomqtt.ProtocolVersion.V5
        return False

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
            "protocol": self.protocol,
            "will": will,
            "tls_context": _tls_context(cfg),
            "timeout": 10,
            "socket_options": NO_DELAY,
            **self._session_args(),
        }

    def _session_args(self) -> dict[str, Any]:
        expiry = self.cfg.session_expiry_s
        if self.protocol is aiomqtt.ProtocolVersion.V311:
            return {"clean_session": expiry == 0}
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = int(expiry)
        # Never a clean start: a restarted bridge takes over the session the previous one
        # left, with the commands the broker queued in it.
        return {"clean_start": expiry == 0, "properties": properties}

    def _receive(self, incoming: Incoming) -> None:
        self._inbox.append(incoming)
        self._inbox_ready.set()

    async def _consumer(self) -> None:
        """Hands the inbox to the handlers. Under a flood (more than FLOOD_MESSAGES in
        FLOOD_WINDOW_S) it pauses FLOOD_PAUSE_S between rounds, so the socket is read ahead
        of the handlers and superseded commands are dropped in the inbox, unhandled: a
        command after a flood waits for the flood to be read, not to be handled."""
        loop = asyncio.get_running_loop()
        window_start, handled = loop.time(), 0
        while True:
            await self._inbox_ready.wait()
            self._inbox_ready.clear()
            now = loop.time()
            if now - window_start > FLOOD_WINDOW_S:
                window_start, handled = now, 0
            while self._inbox:
                self._dispatch(self._inbox.popleft())
                handled += 1
            if handled > FLOOD_MESSAGES:
                await asyncio.sleep(FLOOD_PAUSE_S)

    async def _session(self) -> None:
        client = _Client(**self._client_args())
        client.deliver = self._receive
        async with client:
            self._client = client
            self.connects += 1
            self.last_error = None
            self.session_present = client.session_present
            # A connection that worked resets the backoff, and from now on the broker is
            # tried at least every RETRY_CAP_CONNECTED_S: after a broker restart the bridge
            # is back within seconds. Connects that fail before the first success (wrong
            # host, wrong password) grow it to RETRY_CAP_S, so there is never a tight loop.
            self.backoff.success()
            self.backoff.cap_s = RETRY_CAP_CONNECTED_S
            self._ever_connected = True
            if self._v5_failed and self.protocol is aiomqtt.ProtocolVersion.V311:
                self._v5_failed = False
                log.warning(
                    "mqtt.v5_refused",
                    broker=self.name,
                    message="the broker did not accept MQTT 5; using MQTT 3.1.1 with a "
                    "persistent session (retained commands are then guarded by the bridge "
                    "alone); set protocol: '3.1.1' to skip the MQTT 5 attempt",
                )
            log.info(
                "mqtt.connected",
                broker=self.name,
                host=self.cfg.host,
                port=self.cfg.port,
                protocol="5" if self.protocol is aiomqtt.ProtocolVersion.V5 else "3.1.1",
                session_present=client.session_present,
            )
            await self._subscribe_all(client)
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
                asyncio.create_task(self._consumer(), name=f"mqtt-{self.name}-consumer"),
            ]
            try:
                # Messages go to the inbox (_Client.deliver); this only waits for the end.
                async for _ in client.messages:
                    pass
            except aiomqtt.MqttError as exc:
                if client.disconnect_reason == SESSION_TAKEN_OVER:
                    raise SessionTakenOver from None
                if client.disconnect_reason:
                    raise aiomqtt.MqttError(
                        f"{exc} (reason code {client.disconnect_reason})"
                    ) from None
                raise
            finally:
                for task in helpers:
                    task.cancel()
                results = await asyncio.gather(*helpers, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception) and not isinstance(result, aiomqtt.MqttError):
                    raise result
            raise aiomqtt.MqttError("message stream ended")

    def _is_latest_only(self, topic: str) -> bool:
        return any(p in self._latest for p in self._filters.match(topic))

    def _subscription(
        self, pattern: str, client: _Client
    ) -> tuple[str, int] | tuple[str, SubscribeOptions] | None:
        command = pattern in self._commands
        if self.protocol is aiomqtt.ProtocolVersion.V311:
            if command and client.session_present:
                return None  # the broker kept it; subscribing again would replay retained ones
            return (pattern, 1)
        # Retain handling 1: a command topic's retained message only for a subscription
        # the session does not have yet (MQTT 5 §3.8.3.1). State topics always get theirs.
        # No local: the bridge's own clears of a command topic need not come back.
        options = SubscribeOptions(qos=1, noLocal=command, retainHandling=1 if command else 0)
        return (pattern, options)

    async def _subscribe_now(self, pattern: str) -> None:
        client = cast(_Client | None, self._client)
        if client is None:
            return
        entry = self._subscription(pattern, client)
        if entry is not None:
            await client.subscribe([entry])  # type: ignore[arg-type]

    async def _subscribe_all(self, client: _Client) -> None:
        """Every subscription after a connect, up to SUBSCRIBE_BATCH filters per SUBSCRIBE
        packet: a fleet has a few per charger, and one round trip each made a 500-charger
        start wait for 1,500 SUBACKs (bench/floor.py start-up profile)."""
        entries = [e for p in list(self._subscriptions) if (e := self._subscription(p, client))]
        for i in range(0, len(entries), SUBSCRIBE_BATCH):
            await client.subscribe(entries[i : i + SUBSCRIBE_BATCH])  # type: ignore[arg-type]
            raise_if_cancelling()

    async def _sender(self, client: aiomqtt.Client) -> None:
        while True:
            await self._wakeup.wait()
            # The tasks woken by the same message go first: a set point's handler queues its
            # echo and state messages before it wakes the reconciler, and the charger's write
            # should not wait behind their socket writes (bench/command_latency.py).
            await asyncio.sleep(0)
            self._wakeup.clear()
            while self._transient or self._pending:
                if self._transient:
                    message = self._transient[0]
                    await client.publish(message.topic, message.payload, message.qos, False)
                    raise_if_cancelling()
                    self._transient.popleft()
                    self.published += 1
                    continue
                first = next(iter(self._pending.values()))
                if first.qos:
                    batch = [first]
                    await client.publish(first.topic, first.payload, first.qos, first.retain)
                else:
                    qos0 = itertools.takewhile(lambda m: not m.qos, self._pending.values())
                    batch = list(itertools.islice(qos0, SEND_BATCH))
                    await cast(_Client, client).publish_batch(batch)
                raise_if_cancelling()
                for message in batch:
                    # Only drop it if no newer value arrived while we were sending.
                    if self._pending.get(message.topic) is message:
                        del self._pending[message.topic]
                self.published += len(batch)

    def _dispatch(self, message: Incoming) -> None:
        topic, data = message.topic, message.payload
        patterns = self._filters.match(topic)
        command = any(p in self._commands for p in patterns)
        if command and data:
            handled = self._handled.get(topic)
            if (message.retain or message.dup) and handled is not None and data in handled:
                # Already handled: a retained copy a broker restored, or a QoS 1 message
                # it sent again after a restart. The newer commands since then stand.
                self.replays_dropped += 1
                log.info("mqtt.replay_dropped", broker=self.name, topic=topic,
                         retained=message.retain, dup=message.dup)  # fmt: skip
                if message.retain:
                    self.publish(topic, b"", retain=True, remember=False)
                return
            if handled is None:
                handled = self._handled[topic] = collections.deque(maxlen=REPLAY_MEMORY)
            if data not in handled:
                handled.append(data)
        for pattern in patterns:
            for handler in list(self._subscriptions[pattern]):
                try:
                    handler(topic, data, message.retain)
                except Exception:
                    # A handler bug must not take the link down; inputs are validated in
                    # the handlers, so this is logged as a bug.
                    log.exception("mqtt.handler_failed", broker=self.name, topic=topic)

    def _on_own_state(self, topic: str, payload: bytes, retain: bool) -> None:
        # Another process's Last Will (a killed twin, a crashed predecessor whose will the
        # broker sent late) must not leave a live bridge looking dead.
        if payload == b"offline" and self.connected.is_set() and not self._closing:
            log.info("mqtt.state_restored", broker=self.name, topic=topic)
            self.publish(topic, b"online", retain=True, qos=1, remember=False)

    @property
    def superseded(self) -> int:
        """Command messages dropped unread because a newer one arrived on the same topic."""
        return self._inbox.superseded

    async def close(self, *, offline: bool = True) -> None:
        """Publish `offline` and disconnect (orderly shutdown)."""
        self._closing = True
        client = self._client
        if client is not None and self.connected.is_set() and self.state_topic and offline:
            try:
                async with asyncio.timeout(5):
                    await client.publish(self.state_topic, b"offline", qos=1, retain=True)
            except (aiomqtt.MqttError, TimeoutError) as exc:
                log.warning("mqtt.offline_not_sent", broker=self.name, error=str(exc))
