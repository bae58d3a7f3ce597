"""A broker that speaks only MQTT 3.1.1 and does not even answer an MQTT 5 CONNECT (amqtt,
the demo's embedded broker without mosquitto): the link falls back to 3.1.1 with a persistent
session, says so in the log, drops a re-sent delivery it handled and reads a new command with
the same value."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator

import aiomqtt
import pytest

from bridge import logs
from bridge.config import BrokerConfig
from bridge.mqtt.link import BrokerLink
from tests.conftest import free_port
from tests.mqtt_helpers import until


@pytest.fixture
async def amqtt_broker() -> AsyncIterator[int]:
    from amqtt.broker import Broker

    port = free_port()
    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    })  # fmt: skip
    await broker.start()
    try:
        yield port
    finally:
        await broker.shutdown()


@pytest.mark.slow(11)
async def test_a_3_1_1_only_broker_gets_3_1_1_with_a_persistent_session(amqtt_broker: int) -> None:
    out = io.StringIO()
    logs.setup("info", "json", stream=out)
    link = BrokerLink("old", BrokerConfig(host="127.0.0.1", port=amqtt_broker),
                      state_topic="p/bridge/state", client_id="goe-bridge-fallback")  # fmt: skip
    seen: list[bytes] = []
    link.subscribe("p/c/+/set", lambda t, p, r: seen.append(p), command=True)
    delivered = []
    append = link._inbox.append
    link._inbox.append = lambda m: (delivered.append(m), append(m))[1]  # type: ignore[method-assign]
    task = asyncio.create_task(link.run())
    try:
        await until(lambda: link.connected.is_set(), timeout=30, what="connected over 3.1.1")
        assert link.protocol is aiomqtt.ProtocolVersion.V311
        assert '"event": "mqtt.v5_refused"' in out.getvalue()
        async with aiomqtt.Client("127.0.0.1", amqtt_broker) as controller:
            await controller.publish("p/c/current_limit_a/set", b"9", qos=1)
            await until(lambda: seen == [b"9"], what="command delivered")
            # the broker sends the same delivery again (DUP, same packet identifier): dropped
            link._dispatch(delivered[-1]._replace(dup=True))
            assert seen == [b"9"] and link.redeliveries_dropped == 1
            # a new command with the same value is a command
            await controller.publish("p/c/current_limit_a/set", b"9", qos=1)
            await until(lambda: seen == [b"9", b"9"], what="the new 9")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await task


def test_protocol_can_be_set() -> None:
    link = BrokerLink("x", BrokerConfig(protocol="3.1.1"))
    assert link.protocol is aiomqtt.ProtocolVersion.V311
    assert link._session_args() == {"clean_session": False}
