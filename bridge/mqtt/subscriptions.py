"""The subscriptions of one link: which handlers a topic goes to, which topics carry
commands (and so the options they are subscribed with), and which keep only their newest
unread message. Pure bookkeeping; the link sends the SUBSCRIBE packets."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from paho.mqtt.subscribeoptions import SubscribeOptions

from .filters import Filters

__all__ = ["Handler", "Subscriptions"]

Handler = Callable[[str, bytes, bool], None]
LatestRule = Callable[[str], bool] | None


class Subscriptions:
    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._filters = Filters()  # the patterns, indexed level by level
        self._commands: set[str] = set()  # patterns subscribed as commands
        # patterns whose unread messages are coalesced: all topics (None), or those a rule picks
        self._latest: dict[str, LatestRule] = {}

    def add(
        self, pattern: str, handler: Handler, *, command: bool, latest_only: bool | LatestRule
    ) -> bool:
        """True when the pattern is new (the broker must be told)."""
        new = pattern not in self._handlers
        self._handlers.setdefault(pattern, []).append(handler)
        self._filters.add(pattern)
        if command:
            self._commands.add(pattern)
        if latest_only:
            self._latest[pattern] = None if latest_only is True else latest_only
        return new

    def remove(self, pattern: str, handler: Handler) -> bool:
        """True when the last handler of the pattern went (the broker must be told)."""
        handlers = self._handlers.get(pattern)
        if handlers is None or handler not in handlers:
            return False
        handlers.remove(handler)
        if handlers:
            return False
        del self._handlers[pattern]
        self._filters.remove(pattern)
        self._commands.discard(pattern)
        self._latest.pop(pattern, None)
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._handlers))

    def __contains__(self, pattern: object) -> bool:
        return pattern in self._handlers

    def match(self, topic: str) -> list[str]:
        return self._filters.match(topic)

    def handlers(self, pattern: str) -> list[Handler]:
        return list(self._handlers.get(pattern, ()))

    def is_command(self, patterns: list[str]) -> bool:
        return any(p in self._commands for p in patterns)

    def latest_only(self, topic: str) -> bool:
        for pattern in self._filters.match(topic):
            if pattern in self._latest:
                rule = self._latest[pattern]
                if rule is None or rule(topic):
                    return True
        return False

    def entry(
        self, pattern: str, *, mqtt5: bool, session_present: bool
    ) -> tuple[str, int] | tuple[str, SubscribeOptions] | None:
        """How `pattern` is subscribed; None: not at all (the broker kept it)."""
        command = pattern in self._commands
        if not mqtt5:
            if command and session_present:
                return None  # the broker kept it; subscribing again would replay retained ones
            return (pattern, 1)
        # Commands: retained messages only for a subscription the session does not have yet
        # (retain handling 1), the retain flag as the publisher set it (retain as published:
        # a command published retained is cleared once handled, a live one is not), and not
        # the bridge's own messages (no local). MQTT 5 §3.8.3.1. State topics always get
        # their retained messages, flagged as coming from the store.
        options = SubscribeOptions(
            qos=1,
            noLocal=command,
            retainAsPublished=command,
            retainHandling=1 if command else 0,
        )
        return (pattern, options)
