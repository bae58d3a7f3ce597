"""Subscription filters indexed level by level: matching a topic costs its depth, not the
number of filters. A fleet of 500 chargers subscribes to about 2,000 of them, and every
incoming message was matched against each (bench/floor.py start-up profile)."""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["Filters"]


class _Node:
    __slots__ = ("children", "pattern")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.pattern: str | None = None


class Filters:
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

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def match(self, topic: str) -> list[str]:
        """The filters matching `topic` (MQTT's rule: `+` one level, `#` the rest, including
        the parent level), in the order they were added."""
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
