"""Wiring: the only module that knows every part. One asyncio.TaskGroup, every task named;
SIGTERM/SIGINT mark every charger and the bridge `offline`, disconnect and exit 0; anything
unexpected propagates, the group cancels its siblings and the process exits non-zero so
systemd/Docker restart it.

What each part does lives in its own module: one charger's status and command paths in
runtime.py, the retained state read back at start in lifecycle.py, which of two bridges
serves in arbitration.py, the HTTP endpoint in web.py (from a read-only snapshot)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import signal
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

import aiohttp

from . import __version__, logs
from .arbitration import Arbiter
from .config import Config, ConfigError
from .config import load as load_config
from .exitcodes import EXIT_CONFIG, EXIT_ERROR, EXIT_OK
from .goe.transports.factory import make_transport
from .lifecycle import ReadBack, read_back, remove_ghosts
from .mqtt.link import BrokerLink
from .mqtt.messages import Outgoing
from .publish import discovery
from .publish.fields import bridge_info_topic, bridge_state_topic
from .runtime import ChargerRuntime
from .sdnotify import Notifier
from .snapshot import BridgeSnapshot, snapshot
from .statefile import StateFile, default_path

__all__ = ["Bridge", "main", "stable_client_id", "start_offsets"]

log = logs.get("goe_bridge")

# bridge/info changes of one burst (every charger's first status at start-up) go out once
INFO_COALESCE_S = 0.5
# A charger's start (detection, full status, first publication of every field, its device
# config) costs ~7 ms of CPU, ten polls' worth (bench/floor.py start-up profile): at most one
# charger starts per START_SPACING_S. 500 chargers start within 50 s; two start at once,
# whatever their poll intervals (a cloud v1 charger polls every 120 s, and its first data
# must not wait for half of that).
START_SPACING_S = 0.1


def start_offsets(intervals: Sequence[float]) -> list[float]:
    """When each charger's first poll goes, in seconds from the start. A fleet that needs
    more than one poll interval to start at START_SPACING_S per charger is spread over as
    many intervals as it needs with its poll phases evenly spread (charger i of n at i/n of
    its interval, in round ⌊i·rounds/n⌋); a smaller one starts one charger every
    START_SPACING_S, never over a long interval."""
    count = len(intervals)
    out = []
    for i, every in enumerate(intervals):
        if START_SPACING_S * count <= every:
            out.append(i * START_SPACING_S)
            continue
        rounds = max(1, math.ceil(START_SPACING_S * count / every))
        out.append(every * (i / count + (i * rounds) // count))
    return out


class GracefulExit(Exception):
    """Raised inside the TaskGroup to end it after an orderly shutdown."""


def stable_client_id(config: Config, broker: str) -> str:
    """The MQTT client id for one broker: the same on every start of a bridge on this base
    topic, whatever chargers its config lists (the persistent session, and the commands
    queued in it, belong to it: adding a charger must not lose them). Two bridges on one
    base topic get the same id, and the broker lets only one be connected (arbitration.py)."""
    basis = json.dumps([config.publish.base_topic, broker]).encode()
    return f"goe-bridge-{hashlib.sha256(basis).hexdigest()[:12]}-{broker}"[:64]


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
        # Who this process is, in bridge/info (for people reading it; arbitration.py decides
        # who serves from a live exchange, never from this retained message).
        self.instance = {
            "id": uuid.uuid4().hex[:12],
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": round(self.started, 3),
        }
        self.exit_code = EXIT_OK
        self.readback: ReadBack | None = None
        # Home Assistant devices of chargers no longer configured, until a Home Assistant
        # birth (node → the config in the valid dead form, and in the removal form)
        self.ghost_devices: dict[str, tuple[str, str]] = {}
        # set once the retained state of the last run is restored (or there is no publish
        # broker): the chargers' tasks wait for it
        self.restored = asyncio.Event()
        self._info_scheduled = False
        self.reload_config: Config | None = None
        base = config.publish.base_topic
        for name, broker in config.brokers.items():
            self.links[name] = BrokerLink(
                name,
                broker,
                state_topic=bridge_state_topic(base) if name == config.publish_broker else None,
                client_id=stable_client_id(config, name),
            )
        # the record beside the broker's, for a power cut that rolls the broker back
        self._seq = 0
        path = default_path(config.state_file, os.environ)
        self.state_file = StateFile(path, self._state) if path else None
        self.arbiter: Arbiter | None = None
        if config.publish_broker:
            self.arbiter = Arbiter(self.publish_link, base, str(self.instance["id"]),
                                   on_standby=self._on_standby)  # fmt: skip
        logs.register_secrets(
            [b.password.reveal() for b in config.brokers.values() if b.password]
            + [str(getattr(c.connection, "token", "") or "") for c in config.chargers]
        )

    @property
    def publish_link(self) -> BrokerLink:
        name = self.config.publish_broker
        assert name is not None
        return self.links[name]

    @property
    def standing_by(self) -> bool:
        return self.arbiter is not None and self.arbiter.standing_by

    def snapshot(self) -> BridgeSnapshot:
        return snapshot(self)

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

    def _on_standby(self, on: bool, other: dict[str, Any] | None) -> None:
        for runtime in self.chargers.values():
            runtime.standby(on)
        if not on:
            self.publish_info()
            self.publish_discovery()

    # ------------------------------------------------------------------ start-up

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _state(self) -> dict[str, Any]:
        return {
            "seq": self._seq,
            "chargers": {cid: rt.memory for cid, rt in self.chargers.items() if rt.memory},
            "links": {
                name: {"client_id": link.client_id, "mids": link.handled_mids()}
                for name, link in self.links.items()
            },
        }

    def _save_state(self) -> None:
        if self.state_file is not None:
            self.state_file.schedule()

    async def _prepare(self) -> bool:
        """Before the first session: the retained state of the last run (lifecycle.py)."""
        ha = self.config.publish.home_assistant
        result = await read_back(
            self.publish_link.cfg,
            base=self.config.publish.base_topic,
            ha_prefix=ha.prefix if ha.enabled else None,
            client_id=self.publish_link.client_id,
            charger_ids=self.chargers,
        )
        if result is None:
            return False  # the broker is not there yet: again before the next connect
        self.readback = result
        local = self.state_file.load() if self.state_file is not None else None
        local_chargers = (local or {}).get("chargers")
        if not isinstance(local_chargers, dict):
            local_chargers = {}
        self._restore_local(local)
        for cid, runtime in self.chargers.items():
            runtime.restore(result.chargers.get(cid, {}), local_chargers.get(cid))
            node = discovery.node_id(cid)
            if node in result.configs:
                runtime.on_own_discovery("", result.configs[node], True)
            if node in result.foreign_nodes:
                log.warning("homeassistant.node_shared", charger=cid, node=node,
                            message="another goe-bridge (another base topic) announces a "
                            "charger with this id to Home Assistant: give one of them another "
                            "id")  # fmt: skip
        remove_ghosts(result, self.publish_link.publish)
        if ha.enabled:
            for node, payload in result.ghost_nodes(self.chargers).items():
                self._remove_ghost_device(node, payload)
        self.restored.set()
        return True

    def _restore_local(self, local: dict[str, Any] | None) -> None:
        """The sequence goes on from the highest record seen (the file's or the broker's);
        the command deliveries handled before are known again (same client id only)."""
        seqs = [local.get("seq") if local else None]
        seqs += [rt.memory_seq(self.readback) for rt in self.chargers.values()]
        self._seq = max([s for s in seqs if isinstance(s, int)] + [0])
        links = (local or {}).get("links")
        if not isinstance(links, dict):
            return
        for name, link in self.links.items():
            saved = links.get(name)
            if isinstance(saved, dict) and saved.get("client_id") == link.client_id:
                link.restore_mids(saved.get("mids"))

    def _remove_ghost_device(self, node: str, payload: bytes) -> None:
        """A device this bridge announced for a charger it no longer has. A Home Assistant
        that is up removes it now (its components once more in a valid form, then in the
        removal form); one that is away finds the removal form retained, and gets the same
        pair after its birth, then an empty config (`_on_ha_status`)."""
        prefix = self.config.publish.home_assistant.prefix
        topic = discovery.config_topic(prefix, node)
        components = {**discovery.announced_components(payload),
                      **discovery.removed_components(payload)}  # fmt: skip
        dead = discovery.with_components(
            payload, discovery.dead_forms(components, self.config.publish.base_topic)
        )
        removal = discovery.with_components(payload, {c: {"p": p} for c, p in components.items()})
        if dead is None or removal is None:
            self.publish_link.publish(topic, "", retain=True)
            return
        log.info("homeassistant.ghost_removed", node=node, components=len(components))
        self.publish_link.publish(topic, dead, retain=True, ordered=True)
        self.publish_link.publish(topic, removal, retain=True)
        self.ghost_devices[node] = (dead, removal)

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
            out.extend((discovery.config_topic(ha.prefix, node), removal)
                       for node, (_, removal) in self.ghost_devices.items())  # fmt: skip
        return out

    def publish_discovery(self) -> None:
        ha = self.config.publish.home_assistant
        if not ha.enabled:
            return
        topic, payload = discovery.bridge_config(ha.prefix, self.config.publish.base_topic)
        self.publish_link.publish(topic, payload, retain=True)
        for runtime in self.chargers.values():
            message = runtime.discovery_message()
            if message is not None:
                self.publish_link.publish(*message, retain=True)

    def _on_ha_status(self, topic: str, payload: bytes, retain: bool) -> None:
        if payload.strip() != b"online":
            return
        log.info("homeassistant.online")
        # Home Assistant just started: what was removed while it was away reaches it now
        # (each removal once after a birth, then it is dropped)
        prefix = self.config.publish.home_assistant.prefix
        link = self.publish_link
        for node, (dead, _) in list(self.ghost_devices.items()):
            topic = discovery.config_topic(prefix, node)
            link.publish(topic, dead, retain=True, ordered=True)
            link.publish(topic, "", retain=True)
            del self.ghost_devices[node]
        for runtime in self.chargers.values():
            for message in runtime.tombstone_messages():
                link.publish(*message, retain=True, ordered=True)
            runtime.drop_tombstones()
        self.publish_discovery()

    def _on_identity(self, runtime: ChargerRuntime) -> None:
        """One charger's identity or capabilities changed: its own device config, and the
        bridge info once for a burst of them (at start-up every charger reports at once;
        re-sending everything for each was quadratic in the number of chargers)."""
        self.schedule_info()
        if not self.config.publish.home_assistant.enabled:
            return
        # components removed while Home Assistant may have been away: the valid form first
        for tombstone in runtime.tombstone_messages():
            self.publish_link.publish(*tombstone, retain=True, ordered=True)
        message = runtime.discovery_message()
        if message is not None:
            self.publish_link.publish(*message, retain=True)

    def schedule_info(self) -> None:
        if self._info_scheduled:
            return
        self._info_scheduled = True

        def publish() -> None:
            self._info_scheduled = False
            self.publish_info()

        asyncio.get_running_loop().call_later(INFO_COALESCE_S, publish)

    # ------------------------------------------------------------------ run

    def _build(self, session: aiohttp.ClientSession) -> None:
        cfg = self.config
        for charger in cfg.chargers:
            conn_link = self.links.get(cfg.broker_for(getattr(charger.connection, "broker", None))
                                       or "")  # fmt: skip
            transport = make_transport(
                charger.connection,
                session=session,
                link=conn_link,
                max_current_a=charger.limits.max_current_a,
                keep_raw=cfg.publish.raw,
            )
            runtime = ChargerRuntime(
                charger,
                cfg,
                transport,
                self.links[cfg.publish_broker or ""],
                self.links[cfg.broker_for(charger.control.broker) or ""],
                on_warnings=self.schedule_info,
                on_memory=self._save_state,
                next_seq=self.next_seq,
            )
            runtime.on_identity = lambda rt=runtime: self._on_identity(rt)  # type: ignore[misc]
            self.chargers[runtime.id] = runtime

    def _start(self) -> None:
        cfg = self.config
        for link in self.links.values():
            link.on_handled = self._save_state
        if cfg.publish_broker:
            link = self.publish_link
            link.prepare = self._prepare
            link.add_replay(self.replay)
            if self.arbiter is not None:
                self.arbiter.start()
            if cfg.publish.home_assistant.enabled:
                link.subscribe(f"{cfg.publish.home_assistant.prefix}/status", self._on_ha_status)
        offsets = start_offsets([rt.poller.interval_s for rt in self.chargers.values()])
        for runtime, offset in zip(self.chargers.values(), offsets, strict=True):
            runtime.start()
            runtime.poller.start_offset_s = offset  # the start-up burst, spread
        if cfg.publish_broker:
            self.publish_info()
            self.publish_discovery()

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
            self._build(session)
            self._start()
            server = None
            if cfg.http.enabled:
                # imported only for the status page (off by default): aiohttp.web is ~50 ms
                # of the bridge's ~0.5 s of imports (bench/RESULTS.md#against-the-corrected-floor)
                from .web import WebServer  # noqa: PLC0415 - see above

                server = WebServer(self.snapshot, cfg.http.host, cfg.http.port)
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
                    if not cfg.publish_broker:
                        self.restored.set()
                    for runtime in self.chargers.values():
                        for name, coro in runtime.tasks(self.restored):
                            tg.create_task(coro, name=name)
                    if self.arbiter is not None:
                        tg.create_task(self.arbiter.run(), name="arbitration")
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
        # A bridge that stands by leaves every topic to the one that serves; one that
        # reloads comes straight back (and its chargers with it).
        final = not (self.standing_by or self.reload_config)
        if final:
            for runtime in self.chargers.values():
                runtime.stopping()
        if self.state_file is not None and not self.standing_by:
            self.state_file.save()
        for name, link in self.links.items():
            last: list[Outgoing] = []
            if final and name == self.config.publish_broker:
                for runtime in self.chargers.values():
                    topic, payload = runtime.outputs.offline_message()
                    last.append(Outgoing(topic, payload.encode(), True, 1))
            await link.close(offline=final, last=last)
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
