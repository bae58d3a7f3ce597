"""go-e's own PV-surplus input, fed from any home energy meter on the broker.

`<base>/<id>/pv/set` takes the grid, PV and battery power in W — a JSON object
`{"grid_w": -1200, "pv_w": 3000, "battery_w": 0}` (grid negative = feeding in, battery
negative = charging it, as go-e counts them) or a bare number for the grid alone. The bridge
writes it to the charger as `ids={"pGrid":…,"pPv":…,"pAkku":…}` and repeats the last value
every RESEND_S, because go-e needs it "all 5 seconds" (apikeys-en.md `ids`; syssi's README:
refresh within 10 s). When the source goes quiet for `timeout_s`, the bridge stops: the
charger's PV logic then sees no fresh data instead of an old surplus.

The charger uses it only with PV surplus charging on (`fup`) and not forced (`frc=0`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .. import jsontext, logs
from ..goe.model import ApiVersion, ChargerError, ChargerStatus, WireValue
from ..publish.fields import Topics, result_payload

log = logs.get("goe_bridge.control.pv")

RESEND_S = 4.0  # under go-e's 5 s
DEFAULT_TIMEOUT_S = 30.0
# Plausible household powers: beyond this it is a unit mistake (kW vs W), not a meter.
MAX_POWER_W = 1_000_000.0
NAMES = {"grid_w": "pGrid", "pv_w": "pPv", "battery_w": "pAkku"}


class Invalid(ValueError):
    pass


def parse(payload: bytes) -> dict[str, float]:
    """The pv/set payload → go-e's `ids` object."""
    try:
        value = jsontext.decode_command(payload)
    except jsontext.BadPayload as exc:
        raise Invalid(str(exc)) from None
    if isinstance(value, str):
        try:
            value = jsontext.parse_number(value)
        except ValueError:
            raise Invalid(f"expected a number, got {jsontext.excerpt(repr(value))}") from None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = {"grid_w": value}
    if not isinstance(value, dict):
        raise Invalid('expected {"grid_w": W, "pv_w": W, "battery_w": W} or a number')
    unknown = sorted(set(value) - set(NAMES))
    if unknown:
        raise Invalid(f"unknown key {unknown[0]!r}: use grid_w, pv_w, battery_w")
    if "grid_w" not in value:
        raise Invalid("grid_w is required (W, negative = feeding in)")
    out: dict[str, float] = {}
    for name, number in value.items():
        if (
            isinstance(number, bool)
            or not isinstance(number, int | float)
            or not math.isfinite(number)
        ):
            raise Invalid(f"{name}: expected a number of W, got {jsontext.excerpt(repr(number))}")
        if abs(number) > MAX_POWER_W:
            raise Invalid(f"{name}: {number:g} W is out of range (±{MAX_POWER_W:g} W)")
        out[NAMES[name]] = float(number)
    return out


class PvInput:
    def __init__(
        self,
        topics: Topics,
        write: Callable[[dict[str, WireValue]], Awaitable[None]],
        publish: Callable[..., None],
        status: Callable[[], ChargerStatus | None],
        *,
        enabled: bool,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topics = topics
        self.write = write
        self.publish = publish
        self.status = status
        self.enabled = enabled
        self.timeout_s = timeout_s
        self.clock = clock
        self.value: dict[str, float] | None = None
        self.received: float | None = None
        self.sent = 0
        self.failed = False
        self._new = asyncio.Event()

    @property
    def topic(self) -> str:
        return self.topics.set("pv")

    def _result(self, ok: bool, value: Any, error: str | None) -> None:
        self.publish(self.topics.result, result_payload(ok, "pv", value, error))

    def handle(self, topic: str, payload: bytes, retain: bool) -> None:
        if not payload:
            return
        if not self.enabled:
            self._result(False, None, "this charger is read-only (control.source: none)")
            return
        status = self.status()
        if status is not None and status.api_version is not ApiVersion.V2:
            self._result(False, None, "the PV input (ids) needs a go-e with API v2")
            return
        try:
            value = parse(payload)
        except Invalid as exc:
            log.warning("pv.rejected", topic=topic, error=str(exc))
            self._result(False, jsontext.excerpt(payload.decode("utf-8", "replace")), str(exc))
            return
        self.value = value
        self.received = self.clock()
        self._new.set()

    def fresh(self) -> bool:
        return self.received is not None and self.clock() - self.received <= self.timeout_s

    async def run(self) -> None:
        """Write the newest value at once, then again every RESEND_S while it is fresh."""
        while True:
            self._new.clear()
            if self.value is not None and self.fresh():
                await self._send(self.value)
                wait: float | None = RESEND_S
            else:
                if self.value is not None:
                    log.info("pv.source_quiet", timeout_s=self.timeout_s)
                    self.value = None
                wait = None
            try:
                async with asyncio.timeout(wait):
                    await self._new.wait()
            except TimeoutError:
                pass

    async def _send(self, value: dict[str, float]) -> None:
        try:
            await self.write({"ids": dict(value)})  # type: ignore[dict-item]
        except ChargerError as exc:
            if not self.failed:
                log.warning("pv.write_failed", error=str(exc))
            self.failed = True
            return
        if self.failed:
            log.info("pv.write_ok")
        self.failed = False
        self.sent += 1
