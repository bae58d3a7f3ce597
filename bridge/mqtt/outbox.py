"""What goes to the broker, and what goes again after a reconnect.

`put()` never blocks and never fails: retained messages keep only the latest value per topic
until sent (bounded by the number of topics), non-retained ones (command results) wait in a
bounded queue, oldest dropped first. The link's sender drains both while connected.

After every connect the broker may have lost its retained messages (a restart without
persistence), so everything the bridge keeps retained is sent again. One place decides what
that is: the *replay sources* registered here. Each owner of retained state (the field
publisher of a charger, its availability and control state, the bridge's info and Home
Assistant configs, an openWB adapter's values) registers a function that returns its current
messages; nothing is remembered twice.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterable, Iterator

from .messages import Outgoing

__all__ = ["MAX_TRANSIENT", "Outbox", "ReplaySource"]

# Non-retained messages (command results) waiting while the link is down; older ones are
# dropped first. Retained state has no such limit: it is one entry per topic.
MAX_TRANSIENT = 1000

#: Returns (topic, payload) pairs to publish retained, or Outgoing messages.
ReplaySource = Callable[[], Iterable["tuple[str, str | bytes] | Outgoing"]]


class Outbox:
    def __init__(self) -> None:
        self.pending: dict[str, Outgoing] = {}  # latest per topic, not yet sent
        self.transient: collections.deque[Outgoing] = collections.deque(maxlen=MAX_TRANSIENT)
        self._sources: list[ReplaySource] = []

    def put(self, message: Outgoing, *, ordered: bool = False) -> None:
        """`ordered`: a retained message that must go out as it is, before what is queued
        after it for the same topic (a Home Assistant config announced once more just before
        its removal), not be replaced by it."""
        if message.retain and not ordered:
            self.pending[message.topic] = message
        else:
            self.transient.append(message)

    def add_source(self, source: ReplaySource) -> None:
        self._sources.append(source)

    def remove_source(self, source: ReplaySource) -> None:
        if source in self._sources:
            self._sources.remove(source)

    def replay(self) -> int:
        """Queue every owner's retained state again (a newer pending value stays)."""
        count = 0
        for source in list(self._sources):
            for item in source():
                message = item if isinstance(item, Outgoing) else _retained(*item)
                self.pending.setdefault(message.topic, message)
                count += 1
        return count

    def replay_size(self) -> int:
        """How many retained messages the owners keep (what a reconnect sends again)."""
        return sum(len(list(source())) for source in self._sources)

    def __bool__(self) -> bool:
        return bool(self.transient or self.pending)

    def next_batch(self, size: int) -> list[Outgoing]:
        """The next messages to send: up to `size` QoS 0 messages in a row (transient ones
        first, in their order), or one QoS 1 message."""
        if self.transient:
            if self.transient[0].qos:
                return [self.transient[0]]
            qos0 = itertools.takewhile(lambda m: not m.qos, self.transient)
            return list(itertools.islice(qos0, size))
        first = next(iter(self.pending.values()))
        if first.qos:
            return [first]
        qos0 = itertools.takewhile(lambda m: not m.qos, self.pending.values())
        return list(itertools.islice(qos0, size))

    def sent(self, batch: list[Outgoing]) -> None:
        for message in batch:
            if self.transient and self.transient[0] is message:
                self.transient.popleft()
            elif self.pending.get(message.topic) is message:
                # only if no newer value arrived while it was being sent
                del self.pending[message.topic]

    def __iter__(self) -> Iterator[Outgoing]:
        yield from self.transient
        yield from self.pending.values()


def _retained(topic: str, payload: str | bytes) -> Outgoing:
    data = payload.encode() if isinstance(payload, str) else payload
    return Outgoing(topic, data, True, 0)
