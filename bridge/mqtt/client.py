"""aiomqtt, plus what it does not pass on or offer.

aiomqtt 2.x keeps CONNACK's session-present flag, the DISCONNECT reason code, a message's
DUP flag and packet identifier to itself, and waits for every publish on its own. The link
needs all of them, so this subclass overrides three of aiomqtt's private paho callbacks and
uses its pending-call bookkeeping. `check_internals()` verifies, at import and in the test
suite, that those private names still exist with the signatures used here: a new aiomqtt
release that changes them fails loudly instead of silently losing the flags
(tests/unit/test_mqtt_client.py).
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
from collections.abc import Callable, Sequence
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..config import BrokerConfig
from .messages import Incoming, Outgoing

__all__ = ["Client", "check_internals", "side_client", "tls_context"]

# aiomqtt's private names this module relies on, and the parameters each must take.
_PRIVATE = {
    "_on_connect": ("client", "userdata", "flags", "reason_code", "properties"),
    "_on_disconnect": ("client", "userdata", "flags", "reason_code", "properties"),
    "_on_message": ("client", "userdata", "message"),
    "_pending_call": ("mid", "value", "pending_dict"),
    "_wait_for": ("fut", "timeout"),
    "_on_socket_register_write": ("client", "userdata", "sock"),
}


def check_internals() -> list[str]:
    """What no longer matches in the installed aiomqtt and paho (empty: all is as
    expected)."""
    problems = []
    for name, params in _PRIVATE.items():
        member = getattr(aiomqtt.Client, name, None)
        if member is None:
            problems.append(f"aiomqtt.Client.{name} is gone")
            continue
        found = tuple(inspect.signature(member).parameters)[1:]
        if found[: len(params)] != params:
            problems.append(f"aiomqtt.Client.{name}{found} is not {params}")
    # names the constructors set, from their code (reading their source cost ~5 ms at start)
    init = set(aiomqtt.Client.__init__.__code__.co_names)
    for attribute in ("_client", "_pending_publishes", "_loop"):
        if attribute not in init:
            problems.append(f"aiomqtt.Client no longer sets self.{attribute}")
    if not {"on_socket_register_write", "_on_socket_register_write"} <= init:
        problems.append("aiomqtt.Client no longer watches the socket through paho's callback")
    paho_init = set(paho.Client.__init__.__code__.co_names)
    for attribute in ("_registered_write", "_on_publish"):
        if attribute not in paho_init:
            problems.append(f"paho.mqtt.client.Client no longer sets self.{attribute}")
    return problems


def tls_context(cfg: BrokerConfig) -> ssl.SSLContext | None:
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


def side_client(cfg: BrokerConfig, client_id: str, *, timeout_s: float) -> aiomqtt.Client:
    """A short connection of the bridge's own beside its session (the read-back at start,
    the twin check): clean, MQTT 3.1.1 (any broker speaks it), the broker's credentials."""
    return aiomqtt.Client(
        cfg.host,
        cfg.port,
        username=cfg.username,
        password=cfg.password.reveal() if cfg.password else None,
        identifier=client_id[:64],
        protocol=aiomqtt.ProtocolVersion.V311,
        clean_session=True,
        tls_context=tls_context(cfg),
        timeout=timeout_s,
    )


class Client(aiomqtt.Client):
    session_present = False
    disconnect_reason: int | None = None
    deliver: Callable[[Incoming], None] = staticmethod(lambda incoming: None)
    # larger messages are dropped unread (MQTT 3.1.1 has no Maximum Packet Size to tell the
    # broker; under MQTT 5 the broker never sends them)
    max_payload = 0

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Properties | None = None) -> None:  # fmt: skip
        self.session_present = bool(getattr(flags, "session_present", False))
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Properties | None = None) -> None:  # fmt: skip
        self.disconnect_reason = int(getattr(reason_code, "value", reason_code))
        super()._on_disconnect(client, userdata, flags, reason_code, properties)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        # Straight to the link's inbox: aiomqtt's own queue costs a task per message.
        payload = message.payload
        if self.max_payload and len(payload) > self.max_payload:
            return  # nothing of it is kept (paho already read it; it goes with this frame)
        mid = message.mid if message.qos else 0
        self.deliver(Incoming(message.topic, bytes(payload), message.retain, message.dup, mid))

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        # aiomqtt schedules add_writer with call_soon_threadsafe (paho may ask from the
        # thread that connects): a write to the loop's self-pipe, a read of it and a loop
        # iteration before the socket is even watched, for every batch. On the loop's own
        # thread it is watched at once, which `send_batch` relies on (it writes at once and
        # paho unwatches the socket again when all went out).
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self._loop:
            super()._on_socket_register_write(client, userdata, sock)
            return

        self._loop.add_writer(sock.fileno(), self._write_now)

    def _write_now(self) -> bool:
        """What the socket takes now (paho watches it for the rest). An error is a broken
        link, as in aiomqtt's own writer: False."""
        try:
            self._client.loop_write()
        except Exception as exc:
            if not self._disconnected.done():
                self._disconnected.set_exception(exc)
            return False
        return True

    def disconnect_now(self) -> None:
        """A normal DISCONNECT (the broker drops the Will); the message loop then ends."""
        self._client.disconnect()

    @property
    def mqtt5(self) -> bool:
        return bool(self._client.protocol == paho.MQTTv5)

    def _expiry_properties(self, message: Outgoing) -> Properties | None:
        if message.expiry_s is None or not self.mqtt5:
            return None
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.MessageExpiryInterval = message.expiry_s
        return properties

    async def send(self, message: Outgoing) -> None:
        """One message, waiting for it to be written (QoS 0) or acknowledged (QoS 1)."""
        await self.publish(message.topic, message.payload, message.qos, message.retain,
                           self._expiry_properties(message))  # fmt: skip

    def hand_over(self, messages: Sequence[Outgoing]) -> paho.MQTTMessageInfo | None:
        """QoS 0 messages handed to paho in one go and written as far as the socket takes
        them now; paho writes the rest when it is writable. The last one's info (None: none
        given).

        Two things paho does per batch or message are skipped while nothing needs them
        (a poll's one or two messages cost ~240 µs of CPU in the bridge, bench/RESULTS.md,
        "Against the corrected floor"): asking for the socket to be watched before the
        batch is written at once (it is watched if paho cannot write it all), and, while no
        publish waits for its confirmation, the reason code and properties paho builds for
        the `on_publish` callback of every QoS 0 message written."""
        client = self._client
        watched = client._registered_write
        client._registered_write = True  # paho: "already watched", nothing to ask for
        last: paho.MQTTMessageInfo | None = None
        try:
            for message in messages:
                info = client.publish(message.topic, message.payload, 0, message.retain,
                                      self._expiry_properties(message))  # fmt: skip
                if info.rc != paho.MQTT_ERR_SUCCESS:
                    raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
                last = info
        finally:
            client._registered_write = watched
        if last is None:
            return None
        on_publish = client._on_publish
        if not self._pending_publishes:
            client._on_publish = None  # nobody waits (aiomqtt waits through it)
        try:
            written = self._write_now()
        finally:
            client._on_publish = on_publish
        if not written:
            raise aiomqtt.MqttError("the connection broke while sending")
        return last

    async def send_batch(self, messages: Sequence[Outgoing]) -> None:
        """QoS 0 messages handed to paho in one go and written at once; returns once the
        last one is written. aiomqtt's publish() waits for each message on its own (an
        Event, a wait_for task, a writer registration and a loop wake-up each), which made
        sending most of the start-up of a fleet: 30,000 first messages for 500 chargers
        (bench/floor.py); and waiting for the socket to be writable before writing what it
        takes at once cost about three loop iterations per batch: most batches are the one
        or two messages of one poll (bench/RESULTS.md, "Against the corrected floor")."""
        last = self.hand_over(messages)
        if last is None:
            return
        if last.is_published():
            return
        confirmation = asyncio.Event()
        with self._pending_call(last.mid, confirmation, self._pending_publishes):
            await self._wait_for(confirmation.wait(), timeout=None)


_PROBLEMS = check_internals()
if _PROBLEMS:  # pragma: no cover - only with an aiomqtt this code was not written for
    raise ImportError(
        "goe-bridge needs the aiomqtt internals it was written for: " + "; ".join(_PROBLEMS)
    )
