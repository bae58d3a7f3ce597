"""The broker is the bridge's memory: at start, read back what it holds, keep what must
survive, remove what must not.

Before its own session connects (so before a command queued in that session is handled),
the bridge reads every retained message under its base topic and, with Home Assistant
discovery on, the device configs under the discovery prefix (mqtt/readback.py). Then:

- each configured charger restores what its last run recorded (runtime.restore: the topics
  it left, the session energy baseline, the plug state, the generic controller's intent);
- a charger id that has retained topics under the base topic but is no longer configured
  (removed or renamed) is a ghost: every topic it left is deleted, and its Home Assistant
  device removed (publish/ha_removals.py), so nobody reads a live-looking charger that
  nothing serves;
- the device configs this bridge announced (their availability is `<base>/bridge/state`)
  tell each charger which components it announced last, so components that are gone are
  removed; a config another bridge announced is left alone.

Several bridges may share a broker and a discovery prefix, each with its own base topic:
each reads and removes only what is under its own base topic or announced by it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from . import logs
from .config import BrokerConfig
from .mqtt.readback import ReadBackFailed, read_retained
from .publish import discovery
from .publish.fields import bridge_info_topic, bridge_state_topic

__all__ = ["ReadBack", "read_back"]

log = logs.get("goe_bridge.lifecycle")


@dataclass
class ReadBack:
    """What the broker held at start, sorted by owner."""

    base: str
    chargers: dict[str, dict[str, bytes]] = field(default_factory=dict)  # id → topic → payload
    ghosts: dict[str, dict[str, bytes]] = field(default_factory=dict)
    # node → payload of the device configs this bridge announced
    configs: dict[str, bytes] = field(default_factory=dict)
    # nodes of chargers configured here that another bridge announced (a shared charger id)
    foreign_nodes: set[str] = field(default_factory=set)

    @classmethod
    def sort(
        cls,
        messages: Mapping[str, bytes],
        *,
        base: str,
        ha_prefix: str | None,
        charger_ids: Iterable[str],
    ) -> ReadBack:
        ids = set(charger_ids)
        nodes = {discovery.node_id(cid): cid for cid in ids}
        out = cls(base)
        for cid in ids:
            out.chargers[cid] = {}
        own = (bridge_state_topic(base), bridge_info_topic(base))
        for topic, payload in messages.items():
            if topic.startswith(f"{base}/"):
                cid = topic[len(base) + 1 :].split("/", 1)[0]
                if cid == "bridge" or topic in own:
                    continue
                (out.chargers if cid in ids else out.ghosts).setdefault(cid, {})[topic] = payload
            elif ha_prefix and topic.startswith(f"{ha_prefix}/device/"):
                node = topic[len(ha_prefix) + 8 :].rsplit("/", 1)[0]
                if discovery.owned_by(payload, base):
                    out.configs[node] = payload
                elif node in nodes:
                    out.foreign_nodes.add(node)
        return out

    def ghost_nodes(self, charger_ids: Iterable[str]) -> dict[str, bytes]:
        """Device configs this bridge announced for chargers it no longer has (and a bridge
        device of an older naming)."""
        keep = {discovery.node_id(cid) for cid in charger_ids} | {discovery.bridge_node(self.base)}
        return {node: payload for node, payload in self.configs.items() if node not in keep}


async def read_back(
    broker: BrokerConfig,
    *,
    base: str,
    ha_prefix: str | None,
    client_id: str,
    charger_ids: Iterable[str],
) -> ReadBack | None:
    """None when the broker cannot be reached (the caller tries again before the next
    connect); an empty ReadBack when it answers but the read-back does not complete (an ACL
    that forbids the marker): the bridge then starts without it, as on an empty broker."""
    filters = [f"{base}/#"]
    if ha_prefix:
        filters.append(f"{ha_prefix}/device/+/config")
    try:
        messages = await read_retained(
            broker, filters, f"{base}/bridge/readback", client_id=f"{client_id}-rb"
        )
    except ReadBackFailed as exc:
        if not exc.connected:
            return None
        log.warning("lifecycle.readback_failed", error=str(exc),
                    message="starting without the retained state of the last run (can the "
                    f"bridge's user subscribe to {base}/# and publish on it?)")  # fmt: skip
        return ReadBack(base)
    result = ReadBack.sort(messages, base=base, ha_prefix=ha_prefix, charger_ids=charger_ids)
    log.info("lifecycle.readback", retained=len(messages), ghosts=sorted(result.ghosts) or None,
             ha_configs=len(result.configs))  # fmt: skip
    return result


def remove_ghosts(result: ReadBack, publish: Callable[..., None]) -> int:
    """Delete every retained topic a charger that is no longer configured left."""
    count = 0
    for cid, topics in result.ghosts.items():
        for topic in topics:
            publish(topic, "", retain=True)
            count += 1
        log.info("lifecycle.ghost_removed", charger=cid, topics=len(topics))
    return count
