"""The one place that builds a charger transport from its `connection` config: the running
bridge and `goe-bridge probe` alike."""

from __future__ import annotations

import aiohttp

from ...config import CloudConnection, Connection, HttpConnection, MqttConnection
from ...mqtt.link import BrokerLink
from .base import Transport
from .cloud import CloudV1Transport, CloudV2Transport
from .http import HttpTransport
from .mqtt import GoeMqttTransport

__all__ = ["make_transport"]


def make_transport(
    conn: Connection,
    *,
    session: aiohttp.ClientSession | None = None,
    link: BrokerLink | None = None,
    max_current_a: int = 32,
    keep_raw: bool = False,
) -> Transport:
    """`session`: the bridge's shared HTTP session (None: the transport makes its own);
    `link`: the broker link a go-e MQTT charger publishes to."""
    if isinstance(conn, HttpConnection):
        return HttpTransport(
            conn.host, conn.port, api=conn.api, timeout_s=conn.timeout_s, session=session,
            max_current_a=max_current_a, keep_raw=keep_raw,
        )  # fmt: skip
    if isinstance(conn, CloudConnection):
        token = conn.token.reveal()
        if conn.api == "v1":
            return CloudV1Transport(
                token, base_url=conn.base_url, timeout_s=conn.timeout_s, session=session
            )
        return CloudV2Transport(
            conn.serial, token, base_url=conn.base_url, timeout_s=conn.timeout_s, session=session
        )
    if isinstance(conn, MqttConnection):
        if link is None:
            raise ValueError("a go-e MQTT connection needs a broker link")
        return GoeMqttTransport(
            link, conn.serial, prefix=conn.prefix, topic=conn.topic, api=conn.api,
            timeout_s=conn.timeout_s,
        )  # fmt: skip
    raise TypeError(f"unknown connection type {conn!r}")
