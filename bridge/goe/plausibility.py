"""Values no charger can report truthfully are not passed on (pure, no I/O).

A go-e that glitches (a corrupt `nrg` after a WiFi hiccup, an `eto` read as 0 during a reboot,
RSSI 31 for "unknown") must not reach Home Assistant's Energy dashboard or openWB's energy
accounting as the truth:

- power beyond the hardware's rating, currents and voltages no installation can carry, power
  factors beyond 100 %, absurd RSSI and temperatures are dropped for that poll (the field is
  left out);
- the lifetime counter `energy_total_wh` never goes backwards and never jumps by more than
  the charger could deliver at full power since the last accepted value: the last good value
  stands instead. A new baseline (a replaced or reset charger) is accepted once it has been
  reported consistently for NEW_BASELINE_POLLS polls;
- `energy_session_wh` may fall (a new session starts at 0), but never jump up.

Each kind of implausible value is logged once per episode, and again when it is over.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from .model import ChargerStatus

MAX_CURRENT_A = 32 * 1.25  # 32 A hardware plus generous measuring tolerance
MAX_PHASE_POWER_W = 32 * 1.25 * 253  # per phase, at +10 % of 230 V
MAX_VOLTAGE_V = 300.0
RSSI_RANGE_DBM = (-120, 0)
# go-e reports power factors in % (API v1 doc `nrg[12..15]`; v2 the same array, evcc and
# openHAB read it unscaled): a power factor is at most 1, so at most 100 %, with the same
# generous measuring tolerance as the currents.
POWER_FACTOR_RANGE_PCT = (-100.0 * 1.25, 100.0 * 1.25)
TEMPERATURE_RANGE_C = (-50.0, 120.0)
DEFAULT_RATING_KW = 22
# Allowed energy per hour of elapsed time, relative to the rating, plus a fixed allowance
# for a coarse counter (`eto` is 0.1 kWh on API v1).
ENERGY_FACTOR = 1.5
ENERGY_SLACK_WH = 200.0
NEW_BASELINE_POLLS = 30

# (field, low, high); power_w's range follows the charger's rating
_LIMITS: tuple[tuple[str, float, float], ...] = (
    *((name, -MAX_PHASE_POWER_W, MAX_PHASE_POWER_W)
      for name in ("power_l1_w", "power_l2_w", "power_l3_w", "power_n_w")),
    *((name, -1.0, MAX_CURRENT_A) for name in ("current_l1_a", "current_l2_a", "current_l3_a")),
    *((name, 0.0, MAX_VOLTAGE_V)
      for name in ("voltage_l1_v", "voltage_l2_v", "voltage_l3_v", "voltage_n_v")),
    *((name, *POWER_FACTOR_RANGE_PCT)
      for name in ("power_factor_l1_pct", "power_factor_l2_pct", "power_factor_l3_pct",
                   "power_factor_n_pct")),
    ("wifi_rssi_dbm", *RSSI_RANGE_DBM),
    ("temperature_c", *TEMPERATURE_RANGE_C),
)  # fmt: skip


class Plausibility:
    def __init__(self, on_event: Callable[[str, dict[str, Any]], None]) -> None:
        self.on_event = on_event
        self.total: tuple[float, float] | None = None  # (value, at)
        self.session: tuple[float, float] | None = None
        self.candidate: tuple[float, int] | None = None  # rejected total, consistent polls
        self.episodes: set[str] = set()
        self.rejected = 0

    def check(self, status: ChargerStatus, now: float) -> ChargerStatus:
        bad: dict[str, Any] = {}
        rating_w = (status.variant_kw or DEFAULT_RATING_KW) * 1000.0 * 1.25
        for name, low, high in (("power_w", -rating_w, rating_w), *_LIMITS):
            value = getattr(status, name)
            # a range test is also false for NaN and ±inf
            if value is not None and not low <= value <= high:
                bad[name] = None
                self._episode(name, value, f"outside {low:g}..{high:g}")

        total = self._total(status.energy_total_wh, rating_w, now)
        if total != status.energy_total_wh:
            bad["energy_total_wh"] = total
        session = self._session(status.energy_session_wh, rating_w, now)
        if session != status.energy_session_wh:
            bad["energy_session_wh"] = session

        for name in list(self.episodes):
            if name not in bad:
                self.episodes.discard(name)
                self.on_event("status.plausible_again", {"field": name})
        if not bad:
            return status
        self.rejected += 1
        return dataclasses.replace(status, **bad)

    def _allowed_wh(self, rating_w: float, since: float, now: float) -> float:
        return rating_w * ENERGY_FACTOR * max(0.0, now - since) / 3600 + ENERGY_SLACK_WH

    def _total(self, value: float | None, rating_w: float, now: float) -> float | None:
        if value is None:
            return None
        last = self.total
        if not math.isfinite(value) or value < 0:
            self._episode("energy_total_wh", value, "negative")
            return last[0] if last else None
        if last is None:
            self.total = (value, now)
            return value
        reason = None
        if value < last[0]:
            reason = f"went back from {last[0]:g}"
        elif last[0] > 0 and value - last[0] > self._allowed_wh(rating_w, last[1], now):
            # (from 0 anything goes: a new charger, or a first read during a reboot)
            reason = f"jumped from {last[0]:g}"
        if reason is None:
            self.total = (value, now)
            self.candidate = None
            return value
        # A counter that really restarted (a replaced or reset charger) keeps reporting
        # the new values: after NEW_BASELINE_POLLS consistent polls they are the truth.
        previous = self.candidate
        consistent = previous is not None and 0 <= value - previous[0] <= ENERGY_SLACK_WH * 5
        self.candidate = (value, previous[1] + 1 if previous and consistent else 1)
        if self.candidate[1] >= NEW_BASELINE_POLLS:
            self.on_event("status.energy_total_new_baseline", {"from": last[0], "to": value})
            self.total = (value, now)
            self.candidate = None
            return value
        self._episode("energy_total_wh", value, reason)
        return last[0]

    def _session(self, value: float | None, rating_w: float, now: float) -> float | None:
        if value is None:
            return None
        last = self.session
        if not math.isfinite(value) or value < 0:
            self._episode("energy_session_wh", value, "negative")
            return None
        if last is not None and value > last[0] + self._allowed_wh(rating_w, last[1], now):
            self._episode("energy_session_wh", value, f"jumped from {last[0]:g}")
            return last[0]
        self.session = (value, now)  # a fall is a new session
        return value

    def _episode(self, name: str, value: Any, reason: str) -> None:
        if name not in self.episodes:
            self.episodes.add(name)
            self.on_event("status.implausible", {"field": name, "value": value, "reason": reason})
