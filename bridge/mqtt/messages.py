"""The messages the link moves, in and out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Incoming", "Outgoing"]


class Incoming(NamedTuple):
    topic: str
    payload: bytes
    # Command subscriptions (MQTT 5, retain-as-published): the publisher set the retain flag.
    # Other subscriptions, and MQTT 3.1.1: delivered from the broker's retained store.
    retain: bool
    dup: bool  # a QoS 1 message the broker sends again (after a reconnect or its restart)
    mid: int = 0  # the packet identifier of a QoS 1 delivery (0 for QoS 0)


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    # MQTT 5 message expiry: the broker drops the (retained) message after this long unless
    # it is published again; None = never (and always under MQTT 3.1.1)
    expiry_s: int | None = None
