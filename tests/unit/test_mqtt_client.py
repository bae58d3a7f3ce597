"""The aiomqtt internals the link relies on (bridge/mqtt/client.py) are still there."""

from __future__ import annotations

import aiomqtt
import pytest

from bridge.mqtt import client


def test_the_aiomqtt_internals_the_link_uses_are_unchanged() -> None:
    assert client.check_internals() == []


def test_a_changed_internal_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(aiomqtt.Client, "_on_message")
    assert client.check_internals() == ["aiomqtt.Client._on_message is gone"]
