"""Read what a broker holds retained under some filters, once, over a connection of its own.

The bridge's retained messages are its memory (fields, availability, control state, Home
Assistant configs, its record for the next start): at start it reads them back before its
own session connects, so what it restores is settled before the first queued command is
handled. A separate, clean connection: the bridge's own command subscriptions must not get
retained messages again, and overlapping filters on one connection can deliver a message
twice.

The end of the retained burst is marked, not guessed: after subscribing, the reader publishes
an empty message on a topic under the same filters. A broker sends the retained messages of a
subscription before it handles the next packet of the same client, so the marker comes last.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Sequence

import aiomqtt

from ..aio import raise_if_cancelling
from ..config import BrokerConfig
from .client import side_client

__all__ = ["ReadBackFailed", "read_retained"]

# A broker that answers but does not deliver the marker (an ACL that forbids it): give up
# after this long and start without the read-back.
TIMEOUT_S = 10.0
# Anything larger is not the bridge's (a device config is ~20 kB)
MAX_PAYLOAD = 256 * 1024


class ReadBackFailed(Exception):
    def __init__(self, reason: str, *, connected: bool) -> None:
        super().__init__(reason)
        self.connected = connected  # the broker answered (else: it is unreachable)


async def read_retained(
    cfg: BrokerConfig,
    filters: Sequence[str],
    marker_prefix: str,
    *,
    client_id: str,
    timeout_s: float = TIMEOUT_S,
) -> dict[str, bytes]:
    """topic → payload of every retained message under `filters`. `marker_prefix` is a
    topic level under one of the filters where the end marker may be published."""
    marker = f"{marker_prefix}/{uuid.uuid4().hex[:12]}"
    found: dict[str, bytes] = {}
    connected = False
    try:
        async with side_client(cfg, client_id, timeout_s=timeout_s) as client:
            connected = True
            await client.subscribe([(f, 0) for f in filters])
            await client.publish(marker, b"", qos=0)
            async with asyncio.timeout(timeout_s):
                async for message in client.messages:
                    topic = message.topic.value
                    if topic == marker:
                        raise_if_cancelling()  # swallowed by aiomqtt on 3.11: a stop wins
                        return found
                    payload = message.payload
                    if (
                        message.retain
                        and isinstance(payload, bytes | bytearray)
                        and 0 < len(payload) <= MAX_PAYLOAD
                    ):
                        found[topic] = bytes(payload)
    except (aiomqtt.MqttError, OSError, ssl.SSLError, TimeoutError) as exc:
        raise_if_cancelling()  # a swallowed cancellation ends as a timeout on 3.11
        reason = str(exc) or type(exc).__name__
        raise ReadBackFailed(reason, connected=connected) from None
    raise ReadBackFailed("the connection ended before the marker came back", connected=True)
