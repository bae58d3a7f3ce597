"""go-e's own PV-surplus input, fed from any home energy meter on the broker.

`<base>/<id>/pv/set` takes the grid, PV and battery power in W — a JSON object
`{"grid_w": -1200, "pv_w": 3000, "battery_w": 0}` (grid negative = feeding in, battery
negative = charging it, as go-e counts them) or a bare number for the grid alone. The bridge
writes it to the charger as `ids={"pGrid":…,"pPv":…,"pAkku":…}` and repeats the last value
every RESEND_S, because go-e needs it "all 5 seconds" (apikeys-en.md `ids`; syssi's README:
refresh within 10 s). When the source goes quiet for `timeout_s`, the bridge stops: the
charger's PV logic then sees no fresh data instead of an old surplus.

Each pv/set message is answered on `<base>/<id>/result` once, with the outcome of its first
write. `ids` exists from firmware 055.6 (syssi/homeassistant-goecharger-mqtt PR #104): older
firmware gets no write at all, and a charger that rejects `ids` gets no more until its
firmware changes, instead of a failing write every RESEND_S.

The charger uses it only in Eco mode (`lmo=4`) with PV surplus charging on (`fup`) and not
forced (`frc=0`) (syssi README).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .. import jsontext, logs
from ..goe.model import (
    IDS_SINCE,
    ApiVersion,
    ChargerError,
    ChargerStatus,
    WireValue,
    WriteRejected,
    firmware_at_least,
)
from ..publish.fields import Topics, result_payload

log = logs.get("goe_bridge.control.pv")

RESEND_S = 4.0  # under go-e's 5 s
# The charger itself lets `ids` lapse after 10-15 s without a refresh (syssi README: "No
# update for 10-15s means no PV-surplus is available"); a quiet meter must not be covered for
# longer by re-sending its last value: the default stays under that.
DEFAULT_TIMEOUT_S = 8.0
# Plausible household powers: beyond this it is a unit mistake (kW vs W), not a meter.
MAX_POWER_W = 1_000_000.0
NAMES = {"grid_w": "pGrid", "pv_w": "pPv", "battery_w": "pAkku"}
FIELDS = {go_e: name for name, go_e in NAMES.items()}


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
        # the charger rejected `ids`: (its firmware then, its reason); nothing more is sent
        # until the firmware changes
        self.refused: tuple[str | None, str] | None = None
        self._unanswered = False  # the newest pv/set still waits for its result
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
        refusal = self._refusal(status)
        if refusal is not None:
            self._result(False, _shown(value), refusal)
            return
        self.value = value
        self.received = self.clock()
        self._unanswered = True
        self._new.set()

    def _refusal(self, status: ChargerStatus | None) -> str | None:
        firmware = status.firmware if status is not None else None
        if self.refused is not None:
            if status is None or self.refused[0] == firmware:
                return self.refused[1]
            self.refused = None  # a firmware update: try again
        if firmware_at_least(firmware, IDS_SINCE) is False:
            # syssi/homeassistant-goecharger-mqtt PR #104: ids from 0.55.6
            return f"the PV input (ids) needs firmware 055.6 or later (this charger: {firmware})"
        return None

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
        except WriteRejected as exc:
            # the charger says no (an `ids` it does not know): stop, say so, and do not ask
            # again every RESEND_S
            status = self.status()
            self.refused = (status.firmware if status else None, f"rejected: {exc.reason}")
            log.warning("pv.refused", error=str(exc))
            self.value = None
            self._answer(value, False, self.refused[1])
            return
        except ChargerError as exc:
            if not self.failed:
                log.warning("pv.write_failed", error=str(exc))
            self.failed = True
            self._answer(value, False, f"no answer: {exc}")
            return
        if self.failed:
            log.info("pv.write_ok")
        self.failed = False
        self.sent += 1
        self._answer(value, True, None)

    def _answer(self, value: dict[str, float], ok: bool, error: str | None) -> None:
        if (self._unanswered and value is self.value) or (not ok and self._unanswered):
            self._unanswered = False
            self._result(ok, _shown(value), error)


def _shown(value: dict[str, float]) -> dict[str, float]:
    """The ids values in the topic's own words ({"grid_w": …}), for a result."""
    return {FIELDS[key]: number for key, number in value.items() if key in FIELDS}
