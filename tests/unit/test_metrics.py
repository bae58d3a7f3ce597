"""/metrics read by Prometheus' own client library (its text-format parser): with two
chargers every family must come once, its samples together (they were interleaved, which the
text format does not allow: a second HELP/TYPE for a family)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from bridge.snapshot import BridgeSnapshot, BrokerView, ChargerView
from bridge.web import metrics_text


def charger(cid: str) -> ChargerView:
    return ChargerView(
        id=cid, available=True, in_sync=True, failsafe_active=False, control_source="mqtt",
        connection={"type": "http"}, last_poll_age_s=1.0, last_error=None, target=None,
        status={"power_w": 11000.0, "energy_total_wh": 1000.0, "current_limit_a": 16,
                "current_l1_a": 16.0, "current_l2_a": 16.0, "current_l3_a": 16.0,
                "charging": True},
        commands=[], warnings={}, writes={"sent": 1, "failed": 0, "verified": 1},
        polls={"ok": 10, "failed": 0}, poll_latency_s=0.01,
    )  # fmt: skip


def test_two_chargers_give_each_family_once() -> None:
    snap = BridgeSnapshot(
        version="0", uptime_s=1.0, standby=False, standby_for=None,
        brokers=(BrokerView("home", True, "h:1883", 0, 5, None),
                 BrokerView("openwb", True, "o:1883", 1, 7, None)),
        chargers=(charger("a"), charger("b")),
    )  # fmt: skip
    families = list(text_string_to_metric_families(metrics_text(snap)))
    names = [f.name for f in families]
    assert len(names) == len(set(names)), names
    current = next(f for f in families if f.name == "goe_bridge_charger_current_amperes")
    assert {(s.labels["charger"], s.labels["phase"]) for s in current.samples} == {
        (c, f"L{n}") for c in ("a", "b") for n in (1, 2, 3)
    }
    polls = next(f for f in families if f.name == "goe_bridge_charger_polls")
    assert len(polls.samples) == 4 and polls.type == "counter"
