"""A read-only picture of the running bridge, taken on demand: what the HTTP endpoint
(web.py) shows, and nothing it could change. The web module knows only these types."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import __version__

if TYPE_CHECKING:
    from .service import Bridge

__all__ = ["BridgeSnapshot", "BrokerView", "ChargerView", "snapshot"]


@dataclass(frozen=True, slots=True)
class BrokerView:
    name: str
    connected: bool
    host: str
    reconnects: int
    published: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class ChargerView:
    id: str
    available: bool
    in_sync: bool | None
    failsafe_active: bool
    control_source: str
    connection: dict[str, Any]
    last_poll_age_s: float | None
    last_error: str | None
    target: dict[str, Any] | None
    status: dict[str, Any] | None
    commands: list[dict[str, Any]]
    warnings: dict[str, str]
    writes: dict[str, int] = field(default_factory=dict)  # sent, failed, verified
    polls: dict[str, int] = field(default_factory=dict)  # ok, failed
    poll_latency_s: float | None = None


@dataclass(frozen=True, slots=True)
class BridgeSnapshot:
    version: str
    uptime_s: float
    standby: bool
    standby_for: dict[str, Any] | None
    brokers: tuple[BrokerView, ...]
    chargers: tuple[ChargerView, ...]
    tasks: int = 0


def snapshot(bridge: Bridge) -> BridgeSnapshot:
    now = time.monotonic()
    brokers = tuple(
        BrokerView(
            name=name,
            connected=link.connected.is_set(),
            host=f"{link.cfg.host}:{link.cfg.port}",
            reconnects=max(0, link.connects - 1),
            published=link.published,
            last_error=link.last_error,
        )
        for name, link in bridge.links.items()
    )
    chargers = []
    for cid, rt in bridge.chargers.items():
        poller = rt.poller
        last_ok = poller.last_ok
        if rt.transport.push and rt.available:
            last_ok = now  # push transports: availability is the freshness
        target = rt.reconciler.target
        reconciler = rt.reconciler
        chargers.append(
            ChargerView(
                id=cid,
                available=bool(rt.available),
                in_sync=reconciler.in_sync,
                failsafe_active=bool(rt.control_state.get("failsafe_active")),
                control_source=rt.cfg.control.source,
                connection=rt.transport.describe(),
                last_poll_age_s=round(now - last_ok, 1) if last_ok is not None else None,
                last_error=poller.last_error,
                target=_target(target),
                status=rt.status.fields() if rt.status else None,
                commands=list(rt.commands),
                warnings=dict(rt.setting_warnings),
                writes={
                    "sent": reconciler.writes_sent,
                    "failed": reconciler.writes_failed,
                    "verified": reconciler.writes_verified,
                },
                polls={"ok": poller.ok_polls, "failed": poller.failed_polls},
                poll_latency_s=poller.last_latency_s,
            )
        )
    arbiter = bridge.arbiter
    return BridgeSnapshot(
        version=__version__,
        uptime_s=round(time.time() - bridge.started, 1),
        standby=bridge.standing_by,
        standby_for=arbiter.other if arbiter is not None and arbiter.standing_by else None,
        brokers=brokers,
        chargers=tuple(chargers),
        tasks=len(asyncio.all_tasks()),
    )


def _target(target: Any) -> dict[str, Any] | None:
    if target is None:
        return None
    return {"allow": target.allow, "current_a": target.current_a, "phases": target.phases}
