"""One charger at run time: its transport, the status path and the command path.

Status flows one way, in named steps, each in its own room:

    transport ─► poller ─► on_status:  diagnose (diagnostics.py: what to tell the user)
                                     → derive   (goe/plausibility.py, goe/derive.py: pure)
                                     → publish  (publish/charger.py: topics, availability)
                                     → control  (controller, reconciler)

Commands flow the other way: a controller turns messages into a Target, the reconciler
makes it true through the transport. The runtime only wires them and keeps the record the
bridge leaves for its next start (`<base>/<id>/memory`).
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from . import jsontext, logs
from .config import ChargerConfig, CloudConnection, Config, MqttConnection
from .control import plan as planning
from .control.base import Controller
from .control.mqtt_controller import MqttController, refuse
from .control.pv_input import PvInput
from .control.reconciler import Reconciler
from .diagnostics import ChargerDiagnostics
from .goe import derive
from .goe.model import ApiVersion, ChargerStatus, WireValue
from .goe.plausibility import Plausibility
from .goe.poller import Poller
from .goe.transports.base import Transport
from .goe.transports.cloud import CLOUD_V1_MIN_INTERVAL_S
from .mqtt.link import BrokerLink
from .openwb.common import OpenWBController
from .openwb.legacy19 import OpenWB19
from .openwb.mqtt_chargepoint import OpenWBMqttChargepoint
from .openwb.secondary import OpenWBSecondary
from .publish import discovery
from .publish.charger import ChargerOutputs
from .publish.fields import Topics

__all__ = ["ChargerRuntime", "phase_switch_interval", "poll_interval"]

log = logs.get("goe_bridge")

OPENWB_ADAPTERS: dict[str, type[OpenWBController]] = {
    "openwb-secondary": OpenWBSecondary,
    "openwb-mqtt": OpenWBMqttChargepoint,
    "openwb-1.9": OpenWB19,
}
MEMORY_VERSION = 1


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
    def __init__(
        self,
        cfg: ChargerConfig,
        config: Config,
        transport: Transport,
        link: BrokerLink,
        control_link: BrokerLink,
        *,
        on_identity: Callable[[], None] = lambda: None,
        on_warnings: Callable[[], None] = lambda: None,
        on_memory: Callable[[], None] = lambda: None,
        next_seq: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.id = cfg.key
        self.config = config
        self.transport = transport
        self.link = link
        self.control_link = control_link
        self.on_identity = on_identity
        self.on_memory = on_memory
        self.next_seq = next_seq
        self.memory: dict[str, Any] | None = None  # the record last kept
        self.clock = clock
        self.wall_clock = wall_clock
        self.topics = Topics(config.publish.base_topic, self.id)
        interval = poll_interval(cfg)
        self.outputs = ChargerOutputs(
            self.topics,
            refresh_s=config.publish.refresh_s,
            raw=config.publish.raw,
            poll_interval_s=interval,
            publish=link.publish,
            clock=clock,
            publish_retained=link.publish_retained,
        )
        self.diagnostics = ChargerDiagnostics(
            self.id,
            control_source=cfg.control.source,
            authorize=cfg.control.authorize,
            mqtt_writes=isinstance(cfg.connection, MqttConnection),
            on_warnings=on_warnings,
            pv_input=lambda: self.pv_input.received is not None,
        )
        self.plausibility = Plausibility(self.diagnostics.plausibility_event)
        self.session_energy = derive.SessionEnergy()
        self.status: ChargerStatus | None = None
        self.control_state: dict[str, Any] = {"source": cfg.control.source}
        self.commands: collections.deque[dict[str, Any]] = collections.deque(maxlen=20)
        # Home Assistant: the fields this charger has, and the components its device config
        # announced last (read back from the retained config, so a restart with another
        # control source or charger still deletes what is gone)
        self.capable: frozenset[str] = frozenset()
        self.announced: dict[str, str] = {}
        # components removed from the device config, kept in the removal form until a Home
        # Assistant that was away has been told after its birth (tombstone_messages)
        self.tombstones: dict[str, str] = {}
        self.intent_at: float | None = None  # wall clock of the last generic command
        self._memory_key: tuple[Any, ...] | None = None
        self._charger_wh: float | None = None
        self._wh_restarts = 0
        conn = cfg.connection
        if isinstance(conn, CloudConnection) and conn.api == "v1" and interval < 107:
            log.warning(
                "cloud.fair_use",
                charger=self.id,
                poll_interval_s=interval,
                message="the go-e v1 cloud allows about 25,000 status calls a month "
                "(one every 107 s); faster polling will be answered with 'rate limiting'",
            )
        self.poller = Poller(transport, interval, on_status=self.on_status,
                             on_unavailable=self.on_unavailable, name=self.id)  # fmt: skip
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
        self._refusal = (
            None
            if isinstance(self.controller, MqttController)
            else refuse(self.topics, link.publish, self._refusal_reason())
        )
        # go-e's own PV-surplus input (`ids`), fed on <base>/<id>/pv/set
        self.pv_input = PvInput(
            self.topics,
            transport.write,
            link.publish,
            lambda: self.status,
            enabled=cfg.control.source != "none",
            timeout_s=cfg.control.pv_input_timeout_s,
        )

    def _make_controller(self) -> Controller | None:
        source = self.cfg.control.source
        adapter = OPENWB_ADAPTERS.get(source)
        if adapter is not None:
            return adapter(
                self.cfg,
                on_target=self.reconciler.set_target,
                on_state=self.on_control_state,
                link=self.control_link,
                phase_switch_wait=self.reconciler.phase_switch_wait,
                clock=self.clock,
                wall_clock=self.wall_clock,
            )
        if source == "mqtt":
            return MqttController(
                self.cfg,
                on_target=self.reconciler.set_target,
                on_state=self.on_control_state,
                topics=self.topics,
                publish=self.control_link.publish,
                on_intent=self._on_intent,
                clock=self.clock,
            )
        return None

    def _refusal_reason(self) -> str:
        source = self.cfg.control.source
        if source == "none":
            return f"charger {self.id!r} is read-only (control.source: none)"
        return (
            f"charger {self.id!r} is controlled by {source} (control.source); commands on the "
            "generic topics are refused"
        )

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Subscribe and publish the start-up state (the link sends it once connected).

        Two filters carry everything under `<base>/<id>/` (MQTT 5: only others' messages,
        retained flag as published): the commands, and the status topics, where a foreign
        write is answered with the truth. Two wildcards instead of one filter per kind: the
        broker may deliver a message once per matching filter, and overlapping filters would
        hand a command over twice."""
        root = self.topics.root
        self.link.subscribe(f"{root}/+", self._on_own, command=True,
                            latest_only=lambda topic: not topic.endswith("/set"))  # fmt: skip
        self.link.subscribe(f"{root}/+/+", self._on_own, command=True, latest_only=True)
        if isinstance(self.controller, MqttController) and self.control_link is not self.link:
            # commands on another broker than the one the status goes to
            handle = self.controller.handle
            self.control_link.subscribe(self.topics.set(), handle, command=True)
            self.control_link.subscribe(self.topics.set("+"), handle, command=True,
                                        latest_only=True)  # fmt: skip
        self.link.add_replay(self.outputs.replay)
        if self.controller is not None:
            self.controller.start()
        self.outputs.set_available(False)
        # Never a previous run's Target or in_sync as the present one: the Target is `none`
        # until the controller speaks (or the recorded intent is adopted, restore()), and
        # whether the charger shows it is not known until the first reconcile.
        self.on_control_state({"source": self.cfg.control.source, "failsafe_active": False})
        if self.cfg.control.source != "none" and self.reconciler.target is None:
            self.on_control_state(
                {"target_allow": None, "target_current_a": None, "target_phases": None}
            )
        self.outputs.clear_control("in_sync")

    def _on_own(self, topic: str, payload: bytes, retain: bool) -> None:
        """Everything under `<base>/<id>/`: commands to their handlers, foreign writes on
        status topics answered."""
        name = topic[len(self.topics.root) + 1 :]
        if name == "pv/set":
            self.pv_input.handle(topic, payload, retain)
        elif name == "set" or (name.endswith("/set") and name.count("/") == 1):
            if isinstance(self.controller, MqttController):
                if self.control_link is self.link:
                    self.controller.handle(topic, payload, retain)
            elif self._refusal is not None:
                self._refusal(topic, payload, retain)
        elif name != "result":
            self.outputs.foreign(topic, payload, self.clock())

    # ------------------------------------------------------------------ status path

    def on_status(self, status: ChargerStatus) -> None:
        self.diagnostics.observe(status)
        status = self._derive(status)
        previous = self.status
        self.status = status
        fields = status.fields()
        self._publish(status, previous, fields)
        self._control(status)

    def _derive(self, status: ChargerStatus) -> ChargerStatus:
        status = self.plausibility.check(status, self.clock())
        return self.session_energy.apply(status)

    def _publish(
        self, status: ChargerStatus, previous: ChargerStatus | None, fields: Mapping[str, Any]
    ) -> None:
        was_available = self.outputs.available
        self.outputs.status(status, self.clock(), fields)
        if was_available is not True:
            log.info("charger.online", charger=self.id, api=status.api_version.value)
        self._remember()
        capable = discovery.capabilities(self.capable, status, fields.keys())
        if (
            previous is None
            or (previous.firmware, previous.serial, previous.api_version)
            != (status.firmware, status.serial, status.api_version)
            or capable != self.capable
        ):
            self.capable = capable
            self.on_identity()

    def _control(self, status: ChargerStatus) -> None:
        if self.controller is not None:
            self.controller.on_status(status)
        self.reconciler.on_status(status)

    def on_unavailable(self, reason: str) -> None:
        if self.outputs.available is not False:
            self.outputs.set_available(False)
            log.warning("charger.offline", charger=self.id, reason=reason)
        self.reconciler.on_unavailable()
        if self.controller is not None:
            since = self.poller.outage_started if self.poller.failures else None
            self.controller.on_unavailable(reason, since)

    # ------------------------------------------------------------------ command path

    def on_control_state(self, state: Mapping[str, Any]) -> None:
        self.control_state.update(state)
        self.outputs.control(state)

    def on_write(self, key: str, value: WireValue, error: str | None) -> None:
        if error is None and key == "psm":
            self.session_energy.phase_switch_written()  # plug and session hold through it
        if error is None and isinstance(self.controller, OpenWBController):
            self.controller.on_charger_write(key, value)
        self.commands.append(
            {"at": self.wall_clock(), "key": key, "value": value,
             "text": planning.describe(key, value), "ok": error is None, "error": error}
        )  # fmt: skip

    def _on_intent(self, intent: Mapping[str, Any]) -> None:
        self.intent_at = self.wall_clock()
        self._remember()

    def stopping(self) -> None:
        """The bridge stops for good (not a reload, not standing by): an openWB controller
        must not read the last values as live while nobody serves them."""
        if isinstance(self.controller, OpenWBController):
            self.controller.stopped_values()

    def standby(self, on: bool) -> None:
        """Another bridge serves this charger: read nothing, write nothing (arbitration.py);
        or serve it again."""
        self.reconciler.suspended = on
        self.poller.paused = on
        if not on:
            self.poller.poke()

    # ------------------------------------------------------------------ memory

    def memory_record(self) -> dict[str, Any]:
        """What the next start needs and the broker can keep: the generic controller's
        intent (with when it was commanded), the session energy's baseline, and the plug
        state and phases of the last status (openWB must not see an unplug when the bridge
        starts before the charger answers)."""
        record: dict[str, Any] = {"v": MEMORY_VERSION, "source": self.cfg.control.source}
        if isinstance(self.controller, MqttController) and self.controller.intent:
            record["intent"] = dict(self.controller.intent)
            record["intent_at"] = self.intent_at
        session = self.session_energy
        kept = self.memory or {}
        if session.baseline is not None:
            record["session"] = session.snapshot()
        elif session.pending and "session" in kept:
            # restored and not yet checked against the charger (it has not answered): a
            # record written before then (a command, the stop) keeps it for the next start
            record["session"] = kept["session"]
        status = self.status
        if status is not None and status.plugged is not None:
            record["plug"] = {"plugged": status.plugged, "phases_in_use": status.phases_in_use}
        elif status is None and "plug" in kept:
            record["plug"] = kept["plug"]  # the same, for the restored plug state
        return record

    def _remember(self) -> None:
        session = self.session_energy
        status = self.status
        wh = session.charger_wh
        if wh is not None and self._charger_wh is not None and wh < self._charger_wh:
            # go-e's own counter restarted (a phase switch): the record must say so, or a
            # restart could not tell this session from a new one (derive.SessionEnergy)
            self._wh_restarts += 1
        self._charger_wh = wh
        key = (
            self.intent_at,
            session.baseline,
            self._wh_restarts,
            status.plugged if status else None,
            status.phases_in_use if status else None,
        )
        if key != self._memory_key:
            self._memory_key = key
            self.memory = {**self.memory_record(), "seq": self.next_seq()}
            self.outputs.set_memory(self.memory)
            self.on_memory()

    def restore(self, retained: Mapping[str, bytes], local: Any = None) -> None:
        """What the broker held under `<base>/<id>/` at start (lifecycle.read_back): the
        topics a previous run left (cleared after the first status unless published again)
        and the record it kept for this start — or `local`, the same record from the
        bridge's state file, when it is newer (the broker restored an older database)."""
        root = self.topics.root + "/"
        self.outputs.previous = {
            topic
            for topic in retained
            if topic.startswith(root) and not topic.endswith("/set") and topic != self.topics.result
        }
        record: dict[str, Any] | None = None
        raw = retained.get(self.topics.memory)
        if raw is not None:
            try:
                record = jsontext.loads_object(raw)
            except ValueError:
                log.warning("memory.unreadable", charger=self.id, topic=self.topics.memory)
        if isinstance(local, dict) and _seq(local) > _seq(record):
            if record is not None:
                log.warning(
                    "memory.broker_older",
                    charger=self.id,
                    broker_seq=_seq(record),
                    local_seq=_seq(local),
                    message="the broker restored an older database: the bridge's own record "
                    "is used",
                )
            record = local
        if record is None or record.get("v") != MEMORY_VERSION:
            return
        # the record stands until this run writes its own: a save of the state file before
        # the charger's first status (another charger's record, the stop) must not drop it
        self.memory = record
        self._restore_session(record.get("session"))
        self._restore_plug(record.get("plug"))
        if record.get("source") == self.cfg.control.source:
            self._restore_intent(record.get("intent"), record.get("intent_at"))

    def memory_seq(self, readback: Any) -> int | None:
        """The sequence number of the record the broker held for this charger."""
        raw = getattr(readback, "chargers", {}).get(self.id, {}).get(self.topics.memory)
        try:
            seq = _seq(jsontext.loads_object(raw)) if raw is not None else -1
        except ValueError:
            return None
        return seq if seq >= 0 else None

    def _restore_session(self, session: Any) -> None:
        # taken when the charger's first plugged-in status shows the same session
        if session is not None and not self.session_energy.restore(session):
            log.info("memory.session_not_taken", charger=self.id)

    def _restore_plug(self, plug: Any) -> None:
        if not isinstance(plug, dict) or not isinstance(self.controller, OpenWBController):
            return
        state = self.controller.map_state
        if isinstance(plug.get("plugged"), bool):
            state.plug_state = plug["plugged"]
        phases = plug.get("phases_in_use")
        if isinstance(phases, int) and not isinstance(phases, bool) and 1 <= phases <= 3:
            state.phases_in_use = phases

    def _restore_intent(self, intent: Any, intent_at: Any) -> None:
        """Adopt the generic controller's last intent while it is still valid: always
        without a failsafe (its commands are sporadic by nature), else only while the
        failsafe window since the last command has not run out."""
        controller = self.controller
        if not isinstance(controller, MqttController) or not isinstance(intent, dict):
            return
        if not _number(intent_at):
            return
        age = max(0.0, self.wall_clock() - float(intent_at))  # a clock stepped back: now
        timeout = controller.timeout_s
        if timeout is not None and age >= timeout:
            log.info("control.intent_expired", charger=self.id, age_s=round(age, 1),
                     failsafe_timeout_s=timeout)  # fmt: skip
            return
        refused = controller.adopt(intent, live_at=self.clock() - age)
        self.intent_at = float(intent_at)
        log.info("control.intent_adopted", charger=self.id, intent=controller.intent,
                 age_s=round(age, 1), refused=refused or None)  # fmt: skip

    # ------------------------------------------------------------------ the rest

    @property
    def available(self) -> bool | None:
        return self.outputs.available

    @property
    def setting_warnings(self) -> dict[str, str]:
        return self.diagnostics.setting_warnings

    def tasks(self, ready: asyncio.Event) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """The charger's tasks; each starts once `ready` is set (the retained state of the
        last run is restored: lifecycle.py), so the first status finds it."""
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
        return [(name, _after(ready, coro)) for name, coro in out]

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
            capable=self.capable_with_announced(),
            announced=self.announced,
            control_source=self.cfg.control.source,
            tombstones=self.tombstones,
            phase_options=tuple(
                str(p) for p in ("auto", 1, 3) if planning.phase_support(self.status, p) is None
            ),
        )
        data = payload.encode()
        self.announced = discovery.announced_components(data)
        self.tombstones = discovery.removed_components(data)
        return topic, payload

    def capable_with_announced(self) -> frozenset[str]:
        """The fields to announce: what the charger reported (and its API reports at
        times), and what was announced before for a field its API has (a field that is
        empty in the first status after a restart keeps its entity and its history)."""
        if self.status is None:
            return self.capable
        node = discovery.node_id(self.id)
        before = {cid[len(node) + 1 :] for cid in self.announced if cid.startswith(node + "_")}
        extra = before & discovery.FIELD_ENTITIES & discovery.API_FIELDS[self.status.api_version]
        return self.capable | extra if extra - self.capable else self.capable

    def tombstone_messages(self) -> list[tuple[str, str]]:
        """What tells a Home Assistant that was away to remove this charger's removed
        components: the config with them in a valid form, then with the removal form."""
        if not self.tombstones or self.status is None:
            return []
        message = self.discovery_message()
        if message is None:
            return []
        topic, payload = message
        cmps = json.loads(payload)["cmps"]
        dead = {**cmps, **discovery.dead_forms(self.tombstones, self.topics.base)}
        first = discovery.with_components(payload.encode(), dead)
        return [(topic, first), (topic, payload)] if first else []

    def drop_tombstones(self) -> None:
        """The removals reached a Home Assistant after its birth: the next config goes
        without them."""
        self.tombstones = {}

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
        self.tombstones = {**discovery.removed_components(payload), **self.tombstones}
        return bool(gone) and self.status is not None

    @property
    def api_version(self) -> ApiVersion | None:
        return self.status.api_version if self.status else self.transport.api


async def _after(ready: asyncio.Event, coro: Coroutine[Any, Any, None]) -> None:
    try:
        await ready.wait()
    except asyncio.CancelledError:
        coro.close()
        raise
    await coro


def _seq(record: Any) -> int:
    seq = record.get("seq") if isinstance(record, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else -1


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
