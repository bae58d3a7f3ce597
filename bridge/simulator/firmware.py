"""What the simulator knows about go-e firmware versions: its own reading of a firmware string
and the version each documented feature appeared in, each with its public source.

Deliberately independent of `bridge/goe/`: the simulator stands for the chargers, so a wrong
belief of the bridge about a firmware must not become a wrong charger in the tests.
"""

from __future__ import annotations

import enum
import re


class Api(enum.StrEnum):
    """The API a simulated charger speaks natively (v1: HW V1/V2, v2: V3 and later). A
    StrEnum: "v1"/"v2" and any other str enum with those values compare equal."""

    V1 = "v1"
    V2 = "v2"


_VERSION = re.compile(r"\s*([0-9]{1,4})(?:\.([0-9]{1,4}))?")


def version(fwv: str | None) -> tuple[int, int] | None:
    """(major, minor) of a go-e firmware string: "051.8" → (51, 8), "56.9" → (56, 9),
    "040" → (40, 0), "35.6-1-ga0d44e5" → (35, 6); None when it does not start with ASCII
    digits. The format drifts: leading zeros until 055.x, none from 56 on (syssi captures
    053.1 … 060.5; go-eCharger-API-v2 mqtt-de.md shows a development string)."""
    if not fwv:
        return None
    match = _VERSION.match(fwv)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


# The firmware each feature appeared in. Most are user reports, not go-e statements: the
# comment says which.
SINCE: dict[str, tuple[int, int]] = {
    # `amx` (volatile current) from 040: go-eCharger-API-v1 #49 (go-e support's answer quoted
    # by a user), evcc #2711 (033 takes only `amp`).
    "amx": (40, 0),
    # `filter` as a comma-separated list "since firmware 051.4"; before, a JSON array that
    # runs out of memory above about ten keys (go-eCharger-API-v2 http-en.md).
    "comma_filter": (51, 4),
    # MQTT writes answered on `<key>/result`, and allowed only with `mcr=false`, since 051.5
    # (go-eCharger-API-v2 mqtt-de.md).
    "mqtt_result": (51, 5),
    # `psm` from 051.8 (go-eCharger-API-v2 #58: one user comment, "psm erst ab 051.8").
    "psm": (51, 8),
    # `psm=0` (automatic phase switching) from 055.5 (syssi/homeassistant-goecharger-mqtt
    # #89: one user report on 0.55.5-beta).
    "psm_auto": (55, 5),
    # `ids` (PV surplus input) from 055.6 (syssi/homeassistant-goecharger-mqtt PR #104,
    # README "requires firmware 0.55.6 or newer").
    "ids": (55, 6),
}


def has(fwv: str | None, feature: str) -> bool:
    """Whether firmware `fwv` has `feature`; an unreadable version counts as new."""
    found = version(fwv)
    return found is None or found >= SINCE[feature]
