"""Polls one charger on a cadence: at once, then every `interval_s`; a write pokes it for
an immediate re-read (docs/design.md#polling). Failures back off (capped, jittered) and the charger
counts as unavailable after `unavailable_after` failures in a row."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .. import logs
from ..aio import Wakeup
from ..backoff import Backoff
from .model import ChargerStatus, ChargerUnavailable
from .transports.base import Transport

log = logs.get("goe_bridge.poller")

# In the first minutes of an outage a charger is probed at least every
# max(poll interval, EARLY_RETRY_CAP_S): most outages are a WiFi drop or a reboot.
EARLY_OUTAGE_S = 300.0
EARLY_RETRY_CAP_S = 5.0


class Poller:
    def __init__(
        self,
        transport: Transport,
        interval_s: float,
        *,
        on_status: Callable[[ChargerStatus], None],
        on_unavailable: Callable[[str], None],
        unavailable_after: int = 3,
        backoff_cap_s: float = 30.0,
        name: str = "charger",
    ) -> None:
        self.transport = transport
        self.interval_s = interval_s
        self.on_status = on_status
        self.on_unavailable = on_unavailable
        self.unavailable_after = unavailable_after
        self.backoff = Backoff(base_s=interval_s, cap_s=max(backoff_cap_s, interval_s))
        self.name = name
        self._poke = Wakeup()
        self.failures = 0
        self.ok_polls = 0
        self.failed_polls = 0
        self.last_ok: float | None = None  # monotonic
        self.last_latency_s: float | None = None
        self.last_error: str | None = None
        self.outage_started = 0.0
        # Where in the first interval this charger's first poll goes: the bridge spreads its
        # chargers evenly, so a fleet does not start with every detection, full status read
        # and discovery in the same second (bench/floor.py start-up curve).
        self.start_offset_s = 0.0
        # Another bridge serves this charger (arbitration): no polls until resumed.
        self.paused = False

    def retry_delay(self, now: float) -> float:
        """The wait before the next probe of a charger that did not answer: the poll
        interval, growing with failures, but in the first minutes of an outage at most two
        intervals and never past max(interval, 5 s), so a charger that is back (a WiFi drop,
        a reboot) is polled again within about two intervals; longer outages back off to
        the cap."""
        delay = max(self.interval_s, self.backoff.failure())
        if now - self.outage_started < EARLY_OUTAGE_S:
            # two intervals, but never past max(interval, 5 s)
            cap = max(self.interval_s, min(EARLY_RETRY_CAP_S, 2 * self.interval_s))
            delay = min(delay, cap)
        return delay

    def poke(self) -> None:
        """Read again now (after a write, to verify it); during a poll: right after it."""
        self._poke.set()

    async def poll_once(self) -> float:
        """One poll; returns how long to wait before the next."""
        started = time.monotonic()
        try:
            status = await self.transport.read_status()
        except ChargerUnavailable as exc:
            if self.failures == 0:
                self.outage_started = started
            self.failures += 1
            self.failed_polls += 1
            self.last_error = str(exc)
            delay = self.retry_delay(started)
            log.warning(
                "charger.poll_failed",
                charger=self.name,
                error=str(exc),
                failures=self.failures,
                retry_in_s=round(delay, 1),
            )
            if self.failures == self.unavailable_after or (
                self.last_ok is None and self.failures == 1
            ):
                self.on_unavailable(str(exc))
            return delay
        self.last_latency_s = time.monotonic() - started
        self.last_ok = time.monotonic()
        self.ok_polls += 1
        if self.failures:
            log.info("charger.recovered", charger=self.name, after_failures=self.failures)
        self.failures = 0
        self.last_error = None
        self.backoff.success()
        self.on_status(status)
        return self.interval_s

    async def run(self) -> None:
        if self.start_offset_s > 0:
            await asyncio.sleep(self.start_offset_s)
        while True:
            self._poke.clear()
            if self.paused:
                await self._poke.wait(None)
                continue
            delay = await self.poll_once()
            await self._poke.wait(delay)  # a poke during the poll: at once
