"""Wiring: the only module that knows every part. One asyncio.TaskGroup, every task named;
SIGTERM/SIGINT publish `offline`, disconnect and exit 0; anything unexpected propagates, the
group cancels its siblings and the process exits non-zero so systemd/Docker restart it."""

from __future__ import annotations

import asyncio
import collections
import json
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from . import __version__, logs
from .config import ChargerConfig, CloudConnection, Config, HttpConnection, MqttConnection
from .control.base import Controller
from .control.mqtt_controller import MqttController, refuse
from .control.reconciler import Reconciler
from .goe.model import ChargerError, ChargerStatus, WireValue
from .goe.poller import Poller
from .goe.transports.base import Transport
from .goe.transports.cloud import CLOUD_V1_MIN_INTERVAL_S, CloudV1Transport, CloudV2Transport
from .goe.transports.http import HttpTransport
from .goe.transports.mqtt import GoeMqttTransport
from .mqtt.link import BrokerLink
from .openwb.common import OpenWBController
from .openwb.legacy19 import OpenWB19
from .openwb.mqtt_chargepoint import OpenWBMqttChargepoint
from .openwb.secondary import OpenWBSecondary
from .publish import discovery
from .publish.fields import (
    FieldPublisher,
    Topics,
    bridge_info_topic,
    bridge_state_topic,
    control_messages,
)
from .sdnotify import Notifier
from .web import WebServer

log = logs.get("goe_bridge")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2

OPENWB_ADAPTERS: dict[str, type[OpenWBController]] = {
    "openwb-secondary": OpenWBSecondary,
    "openwb-mqtt": OpenWBMqttChargepoint,
    "openwb-1.9": OpenWB19,
}


class GracefulExit(Exception):
    """Raised inside the TaskGroup to end it after an orderly shutdown."""


def make_transport(
    cfg: ChargerConfig,
    config: Config,
    session: aiohttp.ClientSession,
    links: Mapping[str, BrokerLink],
) -> Transport:
    conn = cfg.connection
    if isinstance(conn, HttpConnection):
        return HttpTransport(
            conn.host, conn.port, api=conn.api, timeout_s=conn.timeout_s, session=session
        )
    if isinstance(conn, CloudConnection):
        token = conn.token.reveal()
        if conn.api == "v1":
            return CloudV1Transport(
                token, base_url=conn.base_url, timeout_s=conn.timeout_s, session=session
            )
        return CloudV2Transport(
            conn.serial, token, base_url=conn.base_url, timeout_s=conn.timeout_s, session=session
        )
    assert isinstance(conn, MqttConnection)
    link = links[config.broker_for(conn.broker) or ""]
    return GoeMqttTransport(
        link, conn.serial, prefix=conn.prefix, api=conn.api, timeout_s=conn.timeout_s
    )


def poll_interval(cfg: ChargerConfig) -> float:
    conn = cfg.connection
    if isinstance(conn, CloudConnection) and conn.poll_interval_s is None:
        return CLOUD_V1_MIN_INTERVAL_S if conn.api == "v1" else 5.0
    return getattr(conn, "poll_interval_s", None) or 5.0


class ChargerRuntime:
    """Everything for one charger: transport, poller, publisher, controller, reconciler."""

    def __init__(
        self,
        cfg: ChargerConfig,
        config: Config,
        transport: Transport,
        link: BrokerLink,
        control_link: BrokerLink,
    ) -> None:
        self.cfg = cfg
        self.id = cfg.key
        self.config = config
        self.transport = transport
        self.link = link
        self.control_link = control_link
        self.topics = Topics(config.publish.base_topic, self.id)
        self.publisher = FieldPublisher(self.topics, config.publish.refresh_s, config.publish.raw)
        self.status: ChargerStatus | None = None
        self.available: bool | None = None
        self.control_state: dict[str, Any] = {"source": cfg.control.source}
        self.commands: collections.deque[dict[str, Any]] = collections.deque(maxlen=20)
        self.on_identity: Callable[[], None] = lambda: None
        self._actions: set[asyncio.Task[None]] = set()
        interval = poll_interval(cfg)
        conn = cfg.connection
        if isinstance(conn, CloudConnection) and conn.api == "v1" and interval < 107:
            log.warning(
                "cloud.fair_use",
                charger=self.id,
                poll_interval_s=interval,
                message="the go-e v1 cloud allows about 25,000 status calls a month "
                "(one every 107 s); faster polling will be answered with 'rate limiting'",
            )
        self.poller = Poller(
            transport,
            interval,
            on_status=self.on_status,
            on_unavailable=self.on_unavailable,
            name=self.id,
        )
        self.reconciler = Reconciler(
            transport,
            name=self.id,
            limit_a=cfg.limits.max_current_a,
            enable_mode=cfg.control.enable_mode,
            min_command_interval_s=cfg.control.min_command_interval_s,
            phase_switch_min_interval_s=cfg.control.phase_switch_min_interval_s,
            request_read=(lambda: None) if transport.push else self.poller.poke,
            on_state=self.on_control_state,
            on_write=self.on_write,
        )
        self.controller = self._make_controller()

    def _make_controller(self) -> Controller | None:
        source = self.cfg.control.source
        adapter = OPENWB_ADAPTERS.get(source)
        if adapter is not None:
            controller: Controller = adapter(
                self.cfg,
                on_target=self.reconciler.set_target,
                on_state=self.on_control_state,
                link=self.control_link,
                on_action=self.on_action,
            )
            self._refuse_generic(source)
            return controller
        if source == "mqtt":
            controller = MqttController(
                self.cfg,
                on_target=self.reconciler.set_target,
                on_state=self.on_control_state,
                topics=self.topics,
                publish=self.control_link.publish,
            )
            for pattern in (self.topics.set(), self.topics.set("+")):
                self.control_link.subscribe(pattern, controller.handle)
            return controller
        self._refuse_generic(source)
        return None

    def _refuse_generic(self, source: str) -> None:
        reason = (
            f"charger {self.id!r} is read-only (control.source: none)"
            if source == "none"
            else f"charger {self.id!r} is controlled by {source} (control.source); "
            "commands on the generic topics are refused"
        )
        handler = refuse(self.topics, self.link.publish, reason)
        for pattern in (self.topics.set(), self.topics.set("+")):
            self.link.subscribe(pattern, handler)

    def on_action(self, changes: Mapping[str, WireValue]) -> None:
        """A one-off write outside the Target (openWB's CP interruption → go-e `su`)."""
        task = asyncio.get_running_loop().create_task(
            self._action(dict(changes)), name=f"action-{self.id}"
        )
        self._actions.add(task)
        task.add_done_callback(self._actions.discard)

    async def _action(self, changes: dict[str, WireValue]) -> None:
        try:
            await self.transport.write(changes)
            log.info("charger.action", charger=self.id, **changes)
        except ChargerError as exc:
            log.warning("charger.action_failed", charger=self.id, error=str(exc), **changes)

    # ------------------------------------------------------------------ events

    def on_status(self, status: ChargerStatus) -> None:
        previous = self.status
        self.status = status
        for topic, payload in self.publisher.update(status, time.monotonic()):
            self.link.publish(topic, payload, retain=True)
        if self.available is not True:
            self.available = True
            self.link.publish(self.topics.availability, "online", retain=True)
            log.info("charger.online", charger=self.id, api=status.api_version.value)
        if self.controller is not None:
            self.controller.on_status(status)
        self.reconciler.on_status(status)
        if previous is None or (previous.firmware, previous.serial) != (
            status.firmware,
            status.serial,
        ):
            self.on_identity()

    def on_unavailable(self, reason: str) -> None:
        if self.available is not False:
            self.available = False
            self.link.publish(self.topics.availability, "offline", retain=True)
            log.warning("charger.offline", charger=self.id, reason=reason)
        self.reconciler.on_unavailable()
        if self.controller is not None:
            self.controller.on_unavailable(reason)

    def on_control_state(self, state: Mapping[str, Any]) -> None:
        self.control_state.update(state)
        for topic, payload in control_messages(self.topics, state):
            self.link.publish(topic, payload, retain=True)

    def on_write(self, key: str, value: WireValue, error: str | None) -> None:
        self.commands.append(
            {"at": time.time(), "key": key, "value": value, "ok": error is None, "error": error}
        )

    def start_messages(self) -> None:
        self.link.publish(self.topics.availability, "offline", retain=True)
        self.on_control_state({"source": self.cfg.control.source, "failsafe_active": False})

    def tasks(self) -> list[tuple[str, Any]]:
        if self.transport.push:
            source: Any = self.transport.run(self.on_status, self.on_unavailable)
        else:
            source = self.poller.run()
        out: list[tuple[str, Any]] = [
            (f"poll-{self.id}", source),
            (f"reconcile-{self.id}", self.reconciler.run()),
        ]
        if self.controller is not None:
            out.append((f"control-{self.id}", self.controller.run()))
        return out

    def info(self) -> dict[str, Any]:
        return {
            **self.transport.describe(),
            "control": self.cfg.control.source,
            "firmware": self.status.firmware if self.status else None,
        }

    def discovery_message(self) -> tuple[str, str]:
        return discovery.charger_config(
            self.config.publish.home_assistant.prefix,
            self.topics,
            self.status,
            controllable=self.cfg.control.source == "mqtt",
            max_current_a=self.cfg.limits.max_current_a,
        )


class Bridge:
    def __init__(
        self, config: Config, notifier: Notifier | None = None, *, install_signals: bool = True
    ) -> None:
        self.config = config
        self.install_signals = install_signals
        self.notifier = notifier or Notifier()
        self.stop_event = asyncio.Event()
        self.links: dict[str, BrokerLink] = {}
        self.chargers: dict[str, ChargerRuntime] = {}
        self.started = time.time()
        self.ready = asyncio.Event()
        base = config.publish.base_topic
        publish_broker = config.publish_broker
        for name, broker in config.brokers.items():
            self.links[name] = BrokerLink(
                name,
                broker,
                state_topic=bridge_state_topic(base) if name == publish_broker else None,
            )
        logs.register_secrets(
            [b.password.reveal() for b in config.brokers.values() if b.password]
            + [str(getattr(c.connection, "token", "") or "") for c in config.chargers]
        )

    @property
    def publish_link(self) -> BrokerLink:
        name = self.config.publish_broker
        assert name is not None
        return self.links[name]

    def request_stop(self) -> None:
        self.stop_event.set()

    # ------------------------------------------------------------------ discovery

    def publish_info(self) -> None:
        info = {
            "version": __version__,
            "chargers": {cid: rt.info() for cid, rt in self.chargers.items()},
        }
        self.publish_link.publish(
            bridge_info_topic(self.config.publish.base_topic),
            json.dumps(info, separators=(",", ":")),
            retain=True,
        )

    def publish_discovery(self) -> None:
        ha = self.config.publish.home_assistant
        if not ha.enabled:
            return
        topic, payload = discovery.bridge_config(ha.prefix, self.config.publish.base_topic)
        self.publish_link.publish(topic, payload, retain=True)
        for runtime in self.chargers.values():
            topic, payload = runtime.discovery_message()
            self.publish_link.publish(topic, payload, retain=True)

    def _on_ha_status(self, topic: str, payload: bytes, retain: bool) -> None:
        if payload.strip() == b"online":
            log.info("homeassistant.online")
            self.publish_discovery()

    def _on_identity(self) -> None:
        self.publish_info()
        self.publish_discovery()

    # ------------------------------------------------------------------ run

    async def run(self) -> int:
        cfg = self.config
        log.info(
            "bridge.start",
            version=__version__,
            config=cfg.source,
            brokers={n: f"{b.host}:{b.port}" for n, b in cfg.brokers.items()},
            chargers={
                c.key: {"connection": c.connection.type, "control": c.control.source}
                for c in cfg.chargers
            },
        )
        for warning in cfg.warnings:
            log.warning("config.warning", message=warning)
        loop = asyncio.get_running_loop()
        if self.install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            publish_name = cfg.publish_broker
            for charger in cfg.chargers:
                transport = make_transport(charger, cfg, session, self.links)
                control_link = self.links[cfg.broker_for(charger.control.broker) or ""]
                runtime = ChargerRuntime(
                    charger, cfg, transport, self.links[publish_name or ""], control_link
                )
                runtime.on_identity = self._on_identity
                self.chargers[runtime.id] = runtime
            if cfg.publish.home_assistant.enabled and publish_name:
                self.links[publish_name].subscribe(
                    f"{cfg.publish.home_assistant.prefix}/status", self._on_ha_status
                )
            for runtime in self.chargers.values():
                runtime.start_messages()
            if publish_name:
                self.publish_info()
                self.publish_discovery()
            server = None
            if cfg.http.enabled:
                server = WebServer(self, cfg.http.host, cfg.http.port)
                try:
                    await server.start()
                except OSError as exc:
                    log.error(  # noqa: TRY400 - a busy port needs no traceback
                        "http.failed", host=cfg.http.host, port=cfg.http.port, error=str(exc)
                    )
                    return EXIT_CONFIG
            try:
                async with asyncio.TaskGroup() as tg:
                    for name, link in self.links.items():
                        tg.create_task(link.run(), name=f"mqtt-{name}")
                    for runtime in self.chargers.values():
                        for name, coro in runtime.tasks():
                            tg.create_task(coro, name=name)
                    tg.create_task(self._notify_ready(), name="sd-ready")
                    if self.notifier.watchdog_s:
                        tg.create_task(self._watchdog(), name="sd-watchdog")
                    tg.create_task(self._shutdown_on_stop(), name="shutdown")
            except* GracefulExit:
                pass
            finally:
                if server is not None:
                    await server.close()
                for runtime in self.chargers.values():
                    await runtime.transport.close()
        log.info("bridge.stopped")
        return EXIT_OK

    async def _notify_ready(self) -> None:
        if self.config.publish_broker:
            await self.publish_link.connected.wait()
        self.ready.set()
        self.notifier.notify("READY=1")
        log.info("bridge.ready")

    async def _watchdog(self) -> None:
        assert self.notifier.watchdog_s is not None
        while True:
            self.notifier.notify("WATCHDOG=1")
            await asyncio.sleep(self.notifier.watchdog_s / 2)

    async def _shutdown_on_stop(self) -> None:
        await self.stop_event.wait()
        log.info("bridge.stopping")
        self.notifier.notify("STOPPING=1")
        for link in self.links.values():
            await link.close()
        raise GracefulExit


def main(config: Config) -> int:
    logs.setup(config.log.level, config.log.format)
    return asyncio.run(Bridge(config).run())
