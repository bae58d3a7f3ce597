"""One MQTT broker link: the connection, its subscriptions, and the tasks that move messages.

- Last Will `offline` (retained) on the bridge state topic, `online` after every connect;
  under MQTT 5 the Will waits a few seconds (Will Delay), so a restarted bridge that takes
  its session back in time leaves no `offline` behind.
- Reconnect with capped exponential backoff and jitter, reset by a successful connect.
- A persistent session (MQTT 5 session expiry, or MQTT 3.1.1 `clean_session=false` where the
  broker refuses MQTT 5) with QoS 1 subscriptions and a client id that stays the same across
  restarts and config edits: a command the broker accepted while the bridge was away (a
  reconnect, its own restart, a broker restart with persistence) is delivered when it is
  back, in order.
- Command subscriptions (MQTT 5): retained messages only for a subscription the session does
  not have yet (retain handling 1), the retain flag as published (so only commands that
  really were retained get cleared), none of the bridge's own messages back (no local).
  Whether a message was already handled is decided from MQTT facts, never from its value:
  a QoS 1 message the broker sends again (DUP) with the packet identifier of one this
  process handled is dropped; every other message is handled, a repeated value included.
- Set-point topics keep only their newest unread message (inbox.py); nothing else is
  coalesced.
- The broker is told the largest packet the bridge accepts (MQTT 5 Maximum Packet Size), so
  a huge message is never sent to it; under MQTT 3.1.1 one is dropped unread.
- A session taken over by another client with the same client id (MQTT 5 reason 0x8E) is
  reported as exactly that and not retried; the bridge decides what to do (arbitration).
- `publish()` never blocks and never fails (outbox.py); after every connect the retained
  state of every registered owner is sent again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from .. import logs
from ..aio import raise_if_cancelling
from ..backoff import Backoff
from ..config import BrokerConfig
from ..jsontext import MAX_PAYLOAD_BYTES
from .client import Client, tls_context
from .inbox import Inbox
from .messages import Incoming, Outgoing
from .outbox import Outbox, ReplaySource
from .subscriptions import Handler, Subscriptions

__all__ = ["BrokerLink", "Handler", "SessionTakenOver"]

log = logs.get("goe_bridge.mqtt")

# Status updates go out as bursts of small messages; with Nagle's algorithm the second and
# later ones wait for the broker's delayed ACK (~40 ms). Measured by bench/status_latency.py.
NO_DELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)

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
# is back within seconds); before that the backoff grows to RETRY_CAP_S from RETRY_BASE_S.
RETRY_BASE_S = 1.0
RETRY_CAP_CONNECTED_S = 5.0
RETRY_CAP_S = 30.0
# The largest message the bridge reads: commands are at most MAX_PAYLOAD_BYTES; a Home
# Assistant device config or a go-e v1 status is a few tens of kB. MQTT 5 Maximum Packet Size
# (§3.1.2.11.4): the broker does not send a larger packet to this client at all.
MAX_PACKET_BYTES = 4 * MAX_PAYLOAD_BYTES
# MQTT 5 Will Delay Interval (§3.1.3.2.2): a connection that takes the session back within
# this time (a restart, a reload) cancels the Will.
WILL_DELAY_S = 5
# QoS 1 deliveries whose packet identifiers are remembered for telling a re-sent message
# (DUP) from a new one. The broker numbers its deliveries in sequence (65,535 before an
# identifier comes back), and a redelivery follows the reconnect: this covers both by far.
MID_MEMORY = 1000
# More messages than this in a window is a flood (see _consumer).
FLOOD_WINDOW_S = 0.1
FLOOD_MESSAGES = 200
FLOOD_PAUSE_S = 0.02


class SessionTakenOver(Exception):
    """Another client connected with this link's client id."""


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
        self._subscriptions = Subscriptions()
        self._inbox = Inbox(self._subscriptions.latest_only)
        self._inbox_ready = asyncio.Event()
        # packet identifiers of the command deliveries handled, oldest first (see MID_MEMORY)
        self._handled_mids: collections.OrderedDict[int, str] = collections.OrderedDict()
        self.protocol = (
            aiomqtt.ProtocolVersion.V311 if cfg.protocol == "3.1.1" else aiomqtt.ProtocolVersion.V5
        )
        self._v5_failed = False
        self.session_present = False
        self.taken_over = False
        self.redeliveries_dropped = 0
        self.on_taken_over: list[Callable[[], None]] = []
        self._closing = False
        self._ever_connected = False
        self.outbox = Outbox()
        self._wakeup = asyncio.Event()
        self._client: Client | None = None
        self.connected = asyncio.Event()
        self.backoff = Backoff(base_s=RETRY_BASE_S, cap_s=RETRY_CAP_S)
        # counters for /metrics and tests
        self.connects = 0
        self.published = 0
        self.last_error: str | None = None
        self.on_connect: list[Callable[[], None]] = []
        # run before the first session until it returns True (see run())
        self.prepare: Callable[[], Awaitable[bool]] | None = None
        self._prepared = False
        # a command delivery was handled (its packet identifier remembered: handled_mids)
        self.on_handled: Callable[[], None] = lambda: None
        # asked before reconnecting after a disconnect nobody explained; False: pause
        self.may_reconnect: Callable[[], Awaitable[bool]] | None = None
        self._serving = asyncio.Event()
        self._serving.set()
        if state_topic:
            self.subscribe(state_topic, self._on_own_state)

    # ------------------------------------------------------------------ API

    def subscribe(
        self,
        pattern: str,
        handler: Handler,
        *,
        command: bool = False,
        latest_only: bool | Callable[[str], bool] = False,
    ) -> None:
        """`command=True` for topics that carry commands: their retained messages come only
        with a new subscription, with the retain flag as published, never the bridge's own;
        a re-sent delivery of one already handled is dropped. `latest_only`: only the newest
        unread message per topic is kept (a set point), for every topic of the pattern or
        those the given rule picks (a `<base>/<id>/+` filter carries set points and JSON
        commands with partial updates, which must all be read)."""
        new = self._subscriptions.add(pattern, handler, command=command, latest_only=latest_only)
        if new and self._client is not None and self.connected.is_set():
            self._spawn(self._subscribe_now(pattern), "subscribe")

    def unsubscribe(self, pattern: str, handler: Handler) -> None:
        """Take back one `subscribe`; the broker's subscription goes with the last handler."""
        if not self._subscriptions.remove(pattern, handler):
            return
        client = self._client
        if client is not None and self.connected.is_set():
            self._spawn(self._unsubscribe_now(client, pattern), "unsubscribe")

    def publish(
        self,
        topic: str,
        payload: str | bytes,
        *,
        retain: bool = False,
        qos: int = 0,
        expiry_s: int | None = None,
        ordered: bool = False,
    ) -> None:
        """Queue a message (never blocks). Retained messages that must survive a broker that
        lost its store are re-sent by their owner's replay source (`add_replay`); a newer
        retained value replaces an unsent older one on the same topic unless that one is
        `ordered` (outbox.py)."""
        data = payload.encode() if isinstance(payload, str) else payload
        self.outbox.put(Outgoing(topic, data, retain, qos, expiry_s), ordered=ordered)
        self._wakeup.set()

    def publish_retained(self, messages: Iterable[tuple[str, str]]) -> None:
        """Retained QoS 0 messages (a poll's changed fields), written at once from the
        caller's task while the link is connected and nothing else waits to be sent: no hop
        through the sender task, which cost two loop iterations per poll (bench/RESULTS.md,
        "Against the corrected floor"). Otherwise, or if the connection fails on the way,
        queued as by publish(). A message paho could not write at once it writes when the
        socket takes it, before anything sent later; one lost with the connection is sent
        again by its owner's replay after the reconnect, as every retained message."""
        batch = [Outgoing(topic, payload.encode(), True, 0) for topic, payload in messages]
        client = self._client
        if client is not None and not self.outbox and self.connected.is_set():
            try:
                client.hand_over(batch)
            except aiomqtt.MqttError:
                pass  # queued below; the sender finds the link broken
            else:
                self.published += len(batch)
                return
        for message in batch:
            self.outbox.put(message)
        self._wakeup.set()

    def add_replay(self, source: ReplaySource) -> None:
        """`source()` returns the retained messages its owner keeps on the broker; they are
        sent again after every reconnect."""
        self.outbox.add_source(source)

    def remove_replay(self, source: ReplaySource) -> None:
        self.outbox.remove_source(source)

    def handled_mids(self) -> list[tuple[int, str]]:
        """The command deliveries handled recently (packet identifier, topic), oldest first:
        kept by the bridge across its own restart (statefile.py)."""
        return list(self._handled_mids.items())

    def restore_mids(self, mids: object) -> None:
        """Those of a previous run of this bridge (same client id, same session)."""
        if not isinstance(mids, list):
            return
        for entry in mids[-MID_MEMORY:]:
            if (
                isinstance(entry, list)
                and len(entry) == 2
                and isinstance(entry[0], int)
                and not isinstance(entry[0], bool)
                and 0 < entry[0] < 65536
                and isinstance(entry[1], str)
            ):
                self._handled_mids[entry[0]] = entry[1]

    @property
    def queue_sizes(self) -> tuple[int, int]:
        return len(self.outbox.pending), len(self.outbox.transient)

    @property
    def superseded(self) -> int:
        """Set points dropped unread because a newer one arrived on the same topic."""
        return self._inbox.superseded

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        """Connect, serve and reconnect for ever (cancel to stop)."""
        self._tasks: set[asyncio.Task[None]] = set()
        while True:
            await self._serving.wait()
            if self.prepare is not None and not self._prepared:
                # before the first session: what must be settled before a queued command
                # is handled (the read-back of the bridge's retained state)
                self._prepared = await self.prepare()
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
                    "goe-bridge on the same base topic?); not reconnecting",
                )
                self._serving.clear()  # never fight over the session; resume() to serve
                for callback in list(self.on_taken_over):
                    callback()
                continue
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
            was_connected = self.connected.is_set()
            self.connected.clear()
            self._client = None
            if not self._serving.is_set():
                log.info("mqtt.paused", broker=self.name)
                continue
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
            if was_connected and self.may_reconnect is not None and not await self.may_reconnect():
                self._serving.clear()

    def pause(self) -> None:
        """Stop serving: disconnect (a normal DISCONNECT: no Last Will, no `offline`) and do
        not reconnect until resume(). Another bridge serves (arbitration.py)."""
        self._serving.clear()
        client = self._client
        if client is not None:
            client.disconnect_now()

    def resume(self) -> None:
        self.taken_over = False
        self._serving.set()

    @property
    def serving(self) -> bool:
        return self._serving.is_set()

    def _spawn(self, coro: Any, what: str) -> None:
        # kept until done: a task nobody references can be collected mid-flight
        tasks = getattr(self, "_tasks", None)
        if tasks is None:
            tasks = self._tasks = set()
        task = asyncio.get_running_loop().create_task(coro, name=f"mqtt-{self.name}-{what}")
        tasks.add(task)
        task.add_done_callback(tasks.discard)

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

    @property
    def mqtt5(self) -> bool:
        return self.protocol is aiomqtt.ProtocolVersion.V5

    def _client_args(self) -> dict[str, Any]:
        cfg = self.cfg
        will = None
        if self.state_topic:
            properties = None
            if self.mqtt5:
                properties = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
                properties.WillDelayInterval = WILL_DELAY_S
            will = aiomqtt.Will(self.state_topic, b"offline", qos=1, retain=True,
                                properties=properties)  # fmt: skip
        return {
            "hostname": cfg.host,
            "port": cfg.port,
            "username": cfg.username,
            "password": cfg.password.reveal() if cfg.password else None,
            "identifier": self.client_id,
            "keepalive": cfg.keepalive_s,
            "protocol": self.protocol,
            "will": will,
            "tls_context": tls_context(cfg),
            "timeout": 10,
            "socket_options": NO_DELAY,
            **self._session_args(),
        }

    def _session_args(self) -> dict[str, Any]:
        expiry = self.cfg.session_expiry_s
        if not self.mqtt5:
            return {"clean_session": expiry == 0}
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = int(expiry)
        properties.MaximumPacketSize = MAX_PACKET_BYTES
        # Never a clean start: a restarted bridge takes over the session the previous one
        # left, with the commands the broker queued in it.
        return {"clean_start": expiry == 0, "properties": properties}

    def _receive(self, incoming: Incoming) -> None:
        self._inbox.append(incoming)
        self._inbox_ready.set()

    async def _consumer(self) -> None:
        """Hands the inbox to the handlers. Under a flood (more than FLOOD_MESSAGES in
        FLOOD_WINDOW_S) it pauses FLOOD_PAUSE_S between rounds, so the socket is read ahead
        of the handlers and superseded set points are dropped in the inbox, unhandled: a
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
        client = Client(**self._client_args())
        client.deliver = self._receive
        client.max_payload = MAX_PACKET_BYTES
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
            if self._v5_failed and not self.mqtt5:
                self._v5_failed = False
                log.warning(
                    "mqtt.v5_refused",
                    broker=self.name,
                    message="the broker did not accept MQTT 5; using MQTT 3.1.1 with a "
                    "persistent session (a command published retained while the bridge "
                    "runs cannot be told from a live one and is not cleared); set "
                    "protocol: '3.1.1' to skip the MQTT 5 attempt",
                )
            log.info(
                "mqtt.connected",
                broker=self.name,
                host=self.cfg.host,
                port=self.cfg.port,
                protocol="5" if self.mqtt5 else "3.1.1",
                session_present=client.session_present,
            )
            await self._subscribe_all(client)
            if self.state_topic:
                await client.publish(self.state_topic, b"online", qos=1, retain=True)
                raise_if_cancelling()
            # Everything retained goes out again: a restarted broker may have lost it.
            self.outbox.replay()
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
                # Messages go to the inbox (Client.deliver); this only waits for the end.
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

    def _subscription(
        self, pattern: str, client: Client
    ) -> tuple[str, int] | tuple[str, SubscribeOptions] | None:
        return self._subscriptions.entry(
            pattern, mqtt5=self.mqtt5, session_present=client.session_present
        )

    async def _subscribe_now(self, pattern: str) -> None:
        client = self._client
        if client is None:
            return
        entry = self._subscription(pattern, client)
        if entry is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.subscribe([entry])  # type: ignore[arg-type]

    async def _unsubscribe_now(self, client: Client, pattern: str) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            await client.unsubscribe(pattern)

    async def _subscribe_all(self, client: Client) -> None:
        """Every subscription after a connect, up to SUBSCRIBE_BATCH filters per SUBSCRIBE
        packet: a fleet has a few per charger, and one round trip each made a 500-charger
        start wait for 1,500 SUBACKs (bench/floor.py start-up profile)."""
        entries = [e for p in self._subscriptions if (e := self._subscription(p, client))]
        for i in range(0, len(entries), SUBSCRIBE_BATCH):
            await client.subscribe(entries[i : i + SUBSCRIBE_BATCH])  # type: ignore[arg-type]
            raise_if_cancelling()

    async def _sender(self, client: Client) -> None:
        outbox = self.outbox
        while True:
            await self._wakeup.wait()
            # The tasks woken by the same message go first: a set point's handler queues its
            # echo and state messages before it wakes the reconciler, and the charger's write
            # should not wait behind their socket writes (bench/command_latency.py).
            await asyncio.sleep(0)
            self._wakeup.clear()
            while outbox:
                batch = outbox.next_batch(SEND_BATCH)
                if batch[0].qos:
                    await client.send(batch[0])
                else:
                    # QoS 0 in order, one wait for the last: a flood's command results went
                    # out one awaited publish each (bench/control_integrity.py --part flood)
                    await client.send_batch(batch)
                raise_if_cancelling()
                outbox.sent(batch)
                self.published += len(batch)

    def _dispatch(self, message: Incoming) -> None:
        topic = message.topic
        patterns = self._subscriptions.match(topic)
        if message.mid and self._subscriptions.is_command(patterns):
            if message.dup and self._handled_mids.get(message.mid) == topic:
                # A QoS 1 delivery this process handled, sent again: its PUBACK was lost in
                # a disconnect, or the broker restarted from a database saved while it was
                # on its way. Newer commands since then stand.
                self.redeliveries_dropped += 1
                log.info("mqtt.redelivery_dropped", broker=self.name, topic=topic,
                         mid=message.mid)  # fmt: skip
                return
            self._handled_mids.pop(message.mid, None)
            self._handled_mids[message.mid] = topic
            if len(self._handled_mids) > MID_MEMORY:
                self._handled_mids.popitem(last=False)
            self.on_handled()
        elif message.mid and not message.dup:
            # the broker uses this identifier for another message now: what it numbered
            # before was acknowledged
            self._handled_mids.pop(message.mid, None)
        for pattern in patterns:
            for handler in self._subscriptions.handlers(pattern):
                try:
                    handler(topic, message.payload, message.retain)
                except Exception:
                    # A handler bug must not take the link down; inputs are validated in
                    # the handlers, so this is logged as a bug.
                    log.exception("mqtt.handler_failed", broker=self.name, topic=topic)

    def _on_own_state(self, topic: str, payload: bytes, retain: bool) -> None:
        # Another process's Last Will (a killed twin, a crashed predecessor whose will the
        # broker sent late) must not leave a live bridge looking dead.
        if payload == b"offline" and self.connected.is_set() and not self._closing:
            log.info("mqtt.state_restored", broker=self.name, topic=topic)
            self.publish(topic, b"online", retain=True, qos=1)

    async def close(self, *, offline: bool = True, last: list[Outgoing] | None = None) -> None:
        """Orderly shutdown: send what is queued, then `last` (e.g. every charger's
        `offline`) and the bridge's `offline`; the caller then ends run(), which
        disconnects."""
        self._closing = True
        client = self._client
        if client is not None and self.connected.is_set():
            try:
                async with asyncio.timeout(5):
                    while self.outbox and self.connected.is_set():  # noqa: ASYNC110 - at shutdown, for at most 5 s
                        await asyncio.sleep(0.01)  # what is queued goes first
                    for message in last or ():
                        await client.send(message)
                    if self.state_topic and offline:
                        await client.publish(self.state_topic, b"offline", qos=1, retain=True)
            except (aiomqtt.MqttError, TimeoutError) as exc:
                log.warning("mqtt.offline_not_sent", broker=self.name, error=str(exc))
