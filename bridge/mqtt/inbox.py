"""The incoming queue between the socket and the handlers.

Messages keep their order of arrival, except that a message on a *latest-only* topic (a set
point: the newest one is the only one that matters) replaces an unread older one on the same
topic, moving to the end. A flood is then coalesced as it is read, instead of queued: a real
command after 10,000 superseded ones waits for them to be read, not handled. Messages on
other topics (JSON objects with partial updates on `<base>/<id>/set`, anything stateful) are
all kept: coalescing must never lose a field.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterator

from .messages import Incoming

__all__ = ["Inbox"]


class Inbox:
    def __init__(self, latest_only: Callable[[str], bool]) -> None:
        self._latest_only = latest_only
        self._items: collections.OrderedDict[object, Incoming] = collections.OrderedDict()
        self._seq = itertools.count()
        self.superseded = 0

    def append(self, item: Incoming) -> None:
        # An empty payload deletes a retained message; it is not a newer set point and
        # must not supersede an unread one.
        latest = bool(item.payload) and self._latest_only(item.topic)
        key: object = item.topic if latest else next(self._seq)
        if self._items.pop(key, None) is not None:
            self.superseded += 1
        self._items[key] = item

    def popleft(self) -> Incoming:
        return self._items.popitem(last=False)[1]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Incoming]:
        return iter(self._items.values())
