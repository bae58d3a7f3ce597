"""Wiring: the only module that knows every part. One asyncio.TaskGroup, every task named;
SIGTERM/SIGINT publish `offline`, disconnect and exit 0; anything unexpected propagates, the
group cancels its siblings and the process exits non-zero so systemd/Docker restart it."""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import json
import math
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp

from . import __version__, logs
from .config import (
    ChargerConfig,
    CloudConnection,
    Config,
    ConfigError,
    HttpConnection,
    MqttConnection,
)
from .config import load as load_config
from .control import plan as planning
from .control.base import Controller
from .control.mqtt_controller import MqttController, refuse
from .control.pv_input import PvInput
from .control.reconciler import Reconciler
from .goe import derive
from .goe.model import ChargerStatus, WireValue
from .goe.plausibility import Plausibility
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
# Another goe-bridge runs on the same config (same chargers, same client id) and took over;
# this one stepped aside without writing to a charger. systemd does not restart it
# (RestartPreventExitStatus), Docker's `restart: on-failure:3` gives up after a few tries.
EXIT_DUPLICATE = 3
# bridge/info changes of one burst (every charger's first status at start-up) go out once
INFO_COALESCE_S = 0.5
# A charger's start (detection, full status, first publication of every field, its device
# config) costs ~7 ms of CPU, ten polls' worth (bench/floor.py start-up profile). A few
# chargers start within their first poll interval; a fleet takes as many intervals as it
# needs for at most one start per START_SPACING_S on average: 500 chargers at 5 s start
# within 50 s, and no 5 s window of the start takes more than ~25 % of a core.
START_SPACING_S = 0.1


def start_offsets(intervals: Sequence[float]) -> list[float]:
    """When each charger's first poll goes, in seconds from the start. Charger i of n polls
    at i/n of its interval (the phases stay evenly spread, as the polls then go on), in
    round ⌊i·rounds/n⌋ of the start."""
    count = len(intervals)
    out = []
    for i, every in enumerate(intervals):
        rounds = max(1, math.ceil(START_SPACING_S * count / every))
        out.append(every * (i / count + (i * rounds) // count))
    return out


OPENWB_ADAPTERS: dict[str, type[OpenWBController]] = {
    "openwb-secondary": OpenWBSecondary,
    "openwb-mqtt": OpenWBMqttChargepoint,
    "openwb-1.9": OpenWB19,
}


class GracefulExit(Exception):
    """Raised inside the TaskGroup to end it after an orderly shutdown."""


def stable_client_id(config: Config, broker: str) -> str:
    """The MQTT client id for one broker: the same on every start of the same config (the
    persistent session and the commands queued in it belong to it), different for configs
    that serve other chargers."""
    basis = json.dumps(
        [config.publish.base_topic, broker, sorted(c.key for c in config.chargers)]
    ).encode()
    return f"goe-bridge-{hashlib.sha256(basis).hexdigest()[:12]}-{broker}"[:64]


def make_transport(
    cfg: ChargerConfig,
    config: Config,
    session: aiohttp.ClientSession,
    links: Mapping[str, BrokerLink],
) -> Transport:
    conn = cfg.connection
    if isinstance(conn, HttpConnection):
        return HttpTransport(
            conn.host, conn.port, api=conn.api, timeout_s=conn.timeout_s, session=session,
            max_current_a=cfg.limits.max_current_a, keep_raw=config.publish.raw,
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
    assert isinstance(conn, MqttConnection)
    link = links[config.broker_for(conn.broker) or ""]
    return GoeMqttTransport(
        link, conn.serial, prefix=conn.prefix, topic=conn.topic, api=conn.api,
        timeout_s=conn.timeout_s,
    )  # fmt: skip


def phase_switch_interval(cfg: ChargerConfig) -> float:
    """The phase-switch rate guard: as configured, else 300 s for the generic `mqtt` source
    and none for openWB, which times its own switches (it checks about 40 s after commanding
    one and counts it as failed otherwise, control/ev/ev_template.py)."""
    configured = cfg.control.phase_switch_min_interval_s
    if configured is not None:
        return configured
    return 300.0 if cfg.control.source == "mqtt" else 0.0


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
        self.plausibility = Plausibility(self._plausibility_event)
        self.session_energy = derive.SessionEnergy()
        self._dropped: set[str] = set()
        self._meter_fault = False
        # charger settings that fight the controller: key → advice (log, bridge/info, page)
        self.setting_warnings: dict[str, str] = {}
        self._settings_seen: tuple[Any, ...] | None = None
        self.available: bool | None = None
        # availability and control state as last published (the fields are the publisher's)
        self.retained: dict[str, str] = {}
        self.control_state: dict[str, Any] = {"source": cfg.control.source}
        self.commands: collections.deque[dict[str, Any]] = collections.deque(maxlen=20)
        self.on_identity: Callable[[], None] = lambda: None
        self.on_warnings: Callable[[], None] = lambda: None
        # Home Assistant: the fields this charger has, and the components its device config
        # announced last (read back from the retained config, so a restart with another
        # control source or charger still deletes what is gone)
        self.capable: frozenset[str] = frozenset()
        self.announced: dict[str, str] = {}
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
            authorize=cfg.control.authorize,
            min_command_interval_s=cfg.control.min_command_interval_s,
            phase_switch_min_interval_s=phase_switch_interval(cfg),
            request_read=(lambda: None) if transport.push else self.poller.poke,
            on_state=self.on_control_state,
            on_write=self.on_write,
        )
        self.controller = self._make_controller()
        # go-e's own PV-surplus input (`ids`), fed on <base>/<id>/pv/set
        self.pv_input = PvInput(
            self.topics,
            transport.write,
            self.link.publish,
            lambda: self.status,
            enabled=cfg.control.source != "none",
            timeout_s=cfg.control.pv_input_timeout_s,
        )
        self.link.subscribe(self.pv_input.topic, self.pv_input.handle, command=True,
                            latest_only=True)  # fmt: skip
        self.link.add_replay(self.replay)

    def _make_controller(self) -> Controller | None:
        source = self.cfg.control.source
        adapter = OPENWB_ADAPTERS.get(source)
        if adapter is not None:
            adapted = adapter(
                self.cfg,
                on_target=self.reconciler.set_target,
                on_state=self.on_control_state,
                link=self.control_link,
            )
            adapted.phase_switch_wait = self.reconciler.phase_switch_wait
            self._refuse_generic(source)
            return adapted
        if source == "mqtt":
            mqtt_controller = MqttController(
                self.cfg,
                on_target=self.reconciler.set_target,
                on_state=self.on_control_state,
                topics=self.topics,
                publish=self.control_link.publish,
            )
            # one field per topic: only the newest unread set point counts; the JSON topic
            # carries partial updates, every one of which is read
            self.control_link.subscribe(self.topics.set(), mqtt_controller.handle, command=True)
            self.control_link.subscribe(self.topics.set("+"), mqtt_controller.handle,
                                        command=True, latest_only=True)  # fmt: skip
            return mqtt_controller
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
        self.link.subscribe(self.topics.set(), handler, command=True)
        self.link.subscribe(self.topics.set("+"), handler, command=True, latest_only=True)

    def suspend(self) -> None:
        """Write nothing more to the charger (another bridge serves it)."""
        self.reconciler.suspended = True

    # ------------------------------------------------------------------ events

    def _plausibility_event(self, event: str, fields: dict[str, Any]) -> None:
        level = log.warning if event == "status.implausible" else log.info
        level(event, charger=self.id, **fields)

    def _note_dropped(self, status: ChargerStatus) -> None:
        """A value the decoder had to leave out: logged once per key and episode."""
        keys = {text.split(":", 1)[0].split("[", 1)[0]: text for text in status.dropped}
        for key, text in keys.items():
            if key not in self._dropped:
                log.warning("status.value_dropped", charger=self.id, key=key, error=text)
        self._dropped = set(keys)

    def _note_meter_fault(self, status: ChargerStatus) -> None:
        if bool(status.meter_fault) != self._meter_fault:
            self._meter_fault = bool(status.meter_fault)
            if self._meter_fault:
                # go-eCharger-API-v2 #321 (fw 60.4): all-zero nrg while charging
                log.warning(
                    "status.meter_fault",
                    charger=self.id,
                    firmware=status.firmware,
                    message="the charger reports 0 V and 0 W while charging (a known firmware "
                    "fault); the meter values are left out",
                )
            else:
                log.info("status.meter_ok", charger=self.id)

    def _note_settings(self, status: ChargerStatus) -> None:
        """Warn once at start-up and on every change (docs/protocol/go-e.md#settings)."""
        settings = tuple(status.raw.get(key) for key in derive.SETTING_KEYS)
        if not status.raw or settings == self._settings_seen:
            return  # checked on every poll: the warnings only when the settings changed
        self._settings_seen = settings
        mqtt_writes = isinstance(self.cfg.connection, MqttConnection)
        warnings = derive.setting_warnings(status.raw, mqtt_writes=mqtt_writes)
        if self.cfg.control.source == "none":
            warnings = {}  # nobody controls this charger: its own logic is the point
        elif self.cfg.control.authorize and status.access_control == "wait":
            warnings.pop("acs", None)  # the bridge authorises the sessions itself
        for key, text in warnings.items():
            if self.setting_warnings.get(key) != text:
                log.warning("charger.setting_conflict", charger=self.id, key=key, message=text)
        for key in self.setting_warnings.keys() - warnings.keys():
            log.info("charger.setting_ok", charger=self.id, key=key)
        if warnings != self.setting_warnings:
            self.setting_warnings = warnings
            self.on_warnings()

    def on_status(self, status: ChargerStatus) -> None:
        self._note_dropped(status)
        self._note_meter_fault(status)
        status = self.plausibility.check(status, time.monotonic())
        status = self.session_energy.apply(status)
        self._note_settings(status)
        previous = self.status
        self.status = status
        fields = status.fields()
        for topic, payload in self.publisher.update(status, time.monotonic(), fields):
            self.link.publish(topic, payload, retain=True)
        if self.available is not True:
            self.available = True
            self._retain(self.topics.availability, "online")
            log.info("charger.online", charger=self.id, api=status.api_version.value)
        if self.controller is not None:
            self.controller.on_status(status)
        self.reconciler.on_status(status)
        capable = discovery.capabilities(self.capable, status, fields.keys())
        if (
            previous is None
            or (previous.firmware, previous.serial, previous.api_version)
            != (status.firmware, status.serial, status.api_version)
            or capable != self.capable
        ):
            self.capable = capable
            self.on_identity()

    def on_unavailable(self, reason: str) -> None:
        if self.available is not False:
            self.available = False
            self._retain(self.topics.availability, "offline")
            log.warning("charger.offline", charger=self.id, reason=reason)
        self.reconciler.on_unavailable()
        if self.controller is not None:
            self.controller.on_unavailable(reason)

    def on_control_state(self, state: Mapping[str, Any]) -> None:
        self.control_state.update(state)
        for topic, payload in control_messages(self.topics, state):
            self._retain(topic, payload)

    def on_write(self, key: str, value: WireValue, error: str | None) -> None:
        if error is None and isinstance(self.controller, OpenWBController):
            self.controller.on_charger_write(key, value)
        self.commands.append(
            {"at": time.time(), "key": key, "value": value, "text": planning.describe(key, value),
             "ok": error is None, "error": error}
        )  # fmt: skip

    def _retain(self, topic: str, payload: str) -> None:
        self.retained[topic] = payload
        self.link.publish(topic, payload, retain=True)

    def replay(self) -> list[tuple[str, str]]:
        """Everything this charger keeps retained, for a broker that may have lost it."""
        return [*self.publisher.replay(), *self.retained.items()]

    def start_messages(self) -> None:
        self._retain(self.topics.availability, "offline")
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
        out.append((f"pv-{self.id}", self.pv_input.run()))
        return out

    def info(self) -> dict[str, Any]:
        return {
            **self.transport.describe(),
            "control": self.cfg.control.source,
            "firmware": self.status.firmware if self.status else None,
            "warnings": dict(self.setting_warnings),
        }

    def discovery_message(self) -> tuple[str, str] | None:
        """The device config, once the charger answered: until then nothing is announced
        (and whatever a previous run announced stays as it is, unavailable), so a bridge
        started while the charger is unreachable neither invents entities nor deletes the
        user's."""
        if self.status is None:
            return None
        topic, payload = discovery.charger_config(
            self.config.publish.home_assistant.prefix,
            self.topics,
            self.status,
            controllable=self.cfg.control.source == "mqtt",
            max_current_a=self.cfg.limits.max_current_a,
            capable=self.capable,
            announced=self.announced,
            control_source=self.cfg.control.source,
        )
        self.announced = discovery.announced_components(payload.encode())
        return topic, payload

    def on_own_discovery(self, topic: str, payload: bytes, retain: bool) -> bool:
        """Our retained device config as the broker has it (at start: the previous run's).
        True when it announced components that are gone: the config must go out again."""
        if not retain:
            # our own publication coming back (a live message is never retained on
            # delivery): nothing to learn, and a 17 kB parse per charger at start-up
            return False
        old = discovery.announced_components(payload)
        gone = set(old) - set(self.announced)
        self.announced = {**old, **self.announced}
        return bool(gone) and self.status is not None


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
        # Who this process is, in bridge/info: a second bridge on the same chargers sees it.
        self.instance = {
            "id": uuid.uuid4().hex[:12],
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": round(self.started, 3),
        }
        self.exit_code = EXIT_OK
        self.stepped_aside = False
        self._info_scheduled = False
        self.reload_config: Config | None = None
        base = config.publish.base_topic
        publish_broker = config.publish_broker
        for name, broker in config.brokers.items():
            link = BrokerLink(
                name,
                broker,
                state_topic=bridge_state_topic(base) if name == publish_broker else None,
                client_id=stable_client_id(config, name),
            )
            link.on_taken_over.append(functools.partial(
                self.step_aside, f"the session on broker {name!r} was taken over by a client "
                "with the same client id"
            ))  # fmt: skip
            self.links[name] = link
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

    def request_reload(self) -> None:
        """SIGHUP: check the config file again; a valid one restarts the bridge in-process
        on it (the persistent session carries the commands over), an invalid one is logged
        and the bridge goes on with the config it has."""
        path = self.config.source
        if path is None:
            log.warning("bridge.reload_ignored", reason="the config did not come from a file")
            return
        try:
            new = load_config(path)
        except ConfigError as exc:
            log.error("config.reload_failed", config=path, problems=exc.problems)  # noqa: TRY400
            return
        log.info("bridge.reload", config=path)
        self.reload_config = new
        self.request_stop()

    def step_aside(self, reason: str, other: Mapping[str, Any] | None = None) -> None:
        """Another bridge serves these chargers: write nothing more, leave its state topic
        alone, and exit with EXIT_DUPLICATE."""
        if self.stepped_aside:
            return
        self.stepped_aside = True
        self.exit_code = EXIT_DUPLICATE
        for runtime in self.chargers.values():
            runtime.suspend()
        log.error(
            "bridge.duplicate",
            reason=reason,
            other=dict(other) if other else None,
            this=self.instance,
            message="another goe-bridge serves the same chargers; this one stops without "
            "writing to them (exit code 3). Run one bridge per config.",
        )
        self.request_stop()

    def _on_bridge_info(self, topic: str, payload: bytes, retain: bool) -> None:
        try:
            info = json.loads(payload)
            other = info["instance"]
            other_key = (float(other["started"]), str(other["id"]))
            chargers = set(info.get("chargers") or ())
        except (ValueError, KeyError, TypeError, RecursionError):
            return  # not a bridge/info we understand (an older version): nothing to compare
        if other.get("id") == self.instance["id"] or not chargers & set(self.chargers):
            return
        if other_key > (self.started, str(self.instance["id"])):
            self.step_aside("a newer goe-bridge announced itself for the same chargers", other)
        elif not self.stepped_aside:
            # An older one (or a dead one's retained info): it steps aside; ours stands.
            self.publish_info()

    # ------------------------------------------------------------------ discovery

    def info_message(self) -> tuple[str, str]:
        info = {
            "version": __version__,
            "instance": self.instance,
            "chargers": {cid: rt.info() for cid, rt in self.chargers.items()},
        }
        return bridge_info_topic(self.config.publish.base_topic), json.dumps(
            info, separators=(",", ":")
        )

    def publish_info(self) -> None:
        self.publish_link.publish(*self.info_message(), retain=True)

    def replay(self) -> list[tuple[str, str]]:
        """The bridge's info and Home Assistant configs, for a broker that may have lost
        them (device configs are built again instead of kept: ~17 kB each, 8.5 MB for 500
        chargers, bench/floor.py with tracemalloc)."""
        out = [self.info_message()]
        ha = self.config.publish.home_assistant
        if ha.enabled:
            out.append(discovery.bridge_config(ha.prefix, self.config.publish.base_topic))
            out.extend(m for rt in self.chargers.values() if (m := rt.discovery_message()))
        return out

    def publish_discovery(self) -> None:
        ha = self.config.publish.home_assistant
        if not ha.enabled:
            return
        topic, payload = discovery.bridge_config(ha.prefix, self.config.publish.base_topic)
        self._publish_config(topic, payload)
        for runtime in self.chargers.values():
            message = runtime.discovery_message()
            if message is not None:
                self._publish_config(*message)

    def _publish_config(self, topic: str, payload: str) -> None:
        self.publish_link.publish(topic, payload, retain=True)

    def _on_own_discovery(self, runtime: ChargerRuntime, topic: str, payload: bytes,
                          retain: bool) -> None:  # fmt: skip
        if runtime.on_own_discovery(topic, payload, retain):
            message = runtime.discovery_message()
            if message is not None:
                log.info("homeassistant.removing_stale_entities", charger=runtime.id)
                self._publish_config(*message)

    def _on_ha_status(self, topic: str, payload: bytes, retain: bool) -> None:
        if payload.strip() == b"online":
            log.info("homeassistant.online")
            self.publish_discovery()

    def _on_identity(self, runtime: ChargerRuntime) -> None:
        """One charger's identity or capabilities changed: its own device config, and the
        bridge info once for a burst of them (at start-up every charger reports at once;
        re-sending everything for each was quadratic in the number of chargers)."""
        self.schedule_info()
        ha = self.config.publish.home_assistant
        message = runtime.discovery_message() if ha.enabled else None
        if message is not None:
            self._publish_config(*message)

    def schedule_info(self) -> None:
        if self._info_scheduled:
            return
        self._info_scheduled = True

        def publish() -> None:
            self._info_scheduled = False
            self.publish_info()

        asyncio.get_running_loop().call_later(INFO_COALESCE_S, publish)

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
        if not cfg.chargers:
            log.warning(
                "bridge.no_chargers",
                message="the config lists no chargers: the bridge runs and does nothing; add "
                "one under chargers: (see config.example.yaml)",
            )
        loop = asyncio.get_running_loop()
        if self.install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            publish_name = cfg.publish_broker
            for charger in cfg.chargers:
                transport = make_transport(charger, cfg, session, self.links)
                control_link = self.links[cfg.broker_for(charger.control.broker) or ""]
                runtime = ChargerRuntime(
                    charger, cfg, transport, self.links[publish_name or ""], control_link
                )
                runtime.on_identity = functools.partial(self._on_identity, runtime)
                runtime.on_warnings = self.schedule_info
                self.chargers[runtime.id] = runtime
            if publish_name:
                self.links[publish_name].subscribe(
                    bridge_info_topic(cfg.publish.base_topic), self._on_bridge_info
                )
            if publish_name:
                self.links[publish_name].add_replay(self.replay)
            if cfg.publish.home_assistant.enabled and publish_name:
                self.links[publish_name].subscribe(
                    f"{cfg.publish.home_assistant.prefix}/status", self._on_ha_status
                )
                for runtime in self.chargers.values():
                    self.links[publish_name].subscribe(
                        discovery.config_topic(
                            cfg.publish.home_assistant.prefix, discovery.node_id(runtime.id)
                        ),
                        functools.partial(self._on_own_discovery, runtime),
                    )
            offsets = start_offsets([rt.poller.interval_s for rt in self.chargers.values()])
            for runtime, offset in zip(self.chargers.values(), offsets, strict=True):
                runtime.start_messages()
                runtime.poller.start_offset_s = offset  # the start-up burst, spread
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
        log.info("bridge.stopped", exit_code=self.exit_code)
        return self.exit_code

    async def _notify_ready(self) -> None:
        # systemd hears READY as soon as the config is loaded and every task runs: a broker
        # that is down at boot must not time the start out into a restart loop (the broker
        # state is on /healthz and in the log). `bridge.ready` waits for the broker.
        self.notifier.notify("READY=1")
        if self.config.publish_broker:
            await self.publish_link.connected.wait()
        self.ready.set()
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
            # A bridge that steps aside leaves the state topic to the one that runs; one
            # that reloads comes straight back.
            await link.close(offline=not (self.stepped_aside or self.reload_config))
        raise GracefulExit


def main(config: Config) -> int:
    while True:
        logs.setup(config.log.level, config.log.format)
        bridge = Bridge(config)
        try:
            code = asyncio.run(bridge.run())
        except Exception:
            # Never die silently: systemd/Docker restart the bridge, the log says why.
            log.exception("bridge.crashed")
            return EXIT_ERROR
        if bridge.reload_config is None:
            return code
        config = bridge.reload_config
