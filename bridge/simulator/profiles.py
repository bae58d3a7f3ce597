"""Firmware profiles: one simulated charger per go-e hardware/firmware line, with the quirks
users reported for it. `goe-bridge simulate --profile NAME`, `SimCharger(profile=NAME)`.

Every quirk names its public source; where a behaviour rests on a single user report, the
comment says so. docs/firmware-matrix.md lists the same facts with the tests that hold the
bridge to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .firmware import Api


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    title: str
    api: Api
    firmware: str
    # v2 `typ`; None on API v1 (HW V1/V2 have no `typ`)
    typ: str | None = None
    # Features this hardware lacks whatever its firmware (firmware.SINCE names).
    lacks: frozenset[str] = frozenset()
    # --- API v1 (HW V1/V2) -------------------------------------------------------------
    # 042.0: the status carries its own `amx` (the current in effect) while `amp` stays the
    # stored value, and `amx` above the stored `amp` is ignored (go-eCharger-API-v1 #114:
    # "amx nimmt keine Werte > amp an", reading `amp` does not show what `amx` set;
    # snaptec/openWB #2778: "steht der AMP auf 6A und man steuert mit amx 10A an, dann lädt
    # man trotzdem nur mit 6A"; the `amx` key beside `amp` on 042.0: an MK-2001/ioBroker.go-e
    # user's status, as cited by docs/protocol/go-e.md#fw-042).
    amx_key: bool = False
    amx_capped_by_stored_amp: bool = False
    # --- the V3+ legacy API v1 emulation (`hla`) -----------------------------------------
    # `nrg` currents in A and powers in W, `eto` in Wh instead of 0.1 A / 0.1 kW / 0.01 kW /
    # 0.1 kWh: fw 52.2 (go-eCharger-API-v1 #100: `"nrg":[219,225,222,1,15.1,15.2,15.1,3300,
    # 3400,3400,0,10300,…]` at ~15 A; #103: `eto` 100× too high; one reporter for both).
    legacy_si_units: bool = False
    # the answer to `/mqtt?payload=amx=13` still shows the old `amx` (and the new `amp`);
    # the next status shows both (go-eCharger-API-v1 #56, #57, fw 050/051.4).
    legacy_amx_lags: bool = False
    # --- API v2 ------------------------------------------------------------------------
    # `alw` follows `frc` only after several seconds (go-eCharger-API-v2 #5 on 051.4,
    # go-eCharger-API-v1 #57/#75: 4-7 s); about 1 s on later firmware (the logic runs at
    # 1 Hz, go-eCharger-API-v2 introduction-en.md).
    alw_delay_s: float = 1.0
    # How the charger's own phase switch (a simulated unplug) looks from outside:
    # "car4": `car` 4 (complete) while it runs, back to 2 after it (go-eCharger-API-v2 #121);
    # "car1": `car` 1 and `frc` reset to 0 like an unplug, then `car` 3 again, `wh` restarted
    # (go-eCharger-API-v2 #198 trace: psm=2 → 15 s later car=1, frc=0 → car 4 with wh 0.03;
    # #248 on 56.8: car 1, 10 s later car 3).
    switch_style: str = "car1"
    # modelStatus 23 (NotChargingBecausePhaseSwitch) while switching; 055.8 no longer set it
    # (go-eCharger-API-v2 #194, one report).
    switch_model_status: bool = True
    # Answers HTTP 400 with the (filtered) JSON when the filter names a key the device does
    # not have, and to the full status (go-eCharger-API-v2 #312, PRO on 60.3, one report).
    http_400_on_unknown_key: bool = False
    # `car` 6 (Initializing, modelStatus 40) for this long after a boot (60.x key exports:
    # car "Initializing=6", modelStatus 40 NotChargingBecauseInitializing)
    boot_init_s: float = 0.0
    sources: tuple[str, ...] = field(default=())


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "v2-033",
            "HOME+ V2 (ESP8266), firmware 033: API v1, no amx",
            Api.V1,
            "033",
            sources=("evcc #2711: amx does not work on 033", "go-eCharger-API-v1 #49"),
        ),
        Profile(
            "v2-040",
            "HOME+ V2, firmware 040.0: amx mirrored into amp",
            Api.V1,
            "040.0",
            sources=(
                "go-eCharger-API-v1 #20, #37: amx is not in the status, amp reflects it",
                "evcc #707: a 040.0 status without amx",
            ),
        ),
        Profile(
            "v2-041",
            "HOME+ V2, firmware 041.0: amx mirrored into amp",
            Api.V1,
            "041.0",
            sources=("go-eCharger-API-v1 #111: a 041.0 status without amx",),
        ),
        Profile(
            "v2-042.0",
            "HOME+ V2, firmware 042.0: own amx key, amp stays stored, amx capped by it",
            Api.V1,
            "042.0",
            amx_key=True,
            amx_capped_by_stored_amp=True,
            sources=(
                "go-eCharger-API-v1 #114",
                "snaptec/openWB #2778",
                "MK-2001/ioBroker.go-e (cited by docs/protocol/go-e.md#fw-042)",
                "evcc #13480",
            ),
        ),
        Profile(
            "v3-051",
            "HOME+ V3, firmware 051.4: no psm yet, no MQTT result, alw lags frc by seconds",
            Api.V2,
            "051.4",
            typ="go-eCharger",
            alw_delay_s=5.0,
            legacy_amx_lags=True,
            switch_style="car4",
            sources=(
                "go-eCharger-API-v2 #5 (alw after several seconds on 051.4)",
                "go-eCharger-API-v1 #56, #57 (legacy amx shown late)",
                "go-eCharger-API-v2 http-en.md, mqtt-de.md",
            ),
        ),
        Profile(
            "v3-052",
            "HOME+ V3, firmware 052.2: legacy API v1 reports nrg in A and W, eto in Wh",
            Api.V2,
            "052.2",
            typ="go-eCharger",
            legacy_si_units=True,
            switch_style="car4",
            sources=("go-eCharger-API-v1 #100, #103 (one reporter)",),
        ),
        Profile(
            "v3-055.5",
            "HOME+ V3, firmware 055.5: psm auto, no ids yet; car 4 during a phase switch",
            Api.V2,
            "055.5",
            typ="go-eCharger",
            switch_style="car4",
            sources=(
                "syssi/homeassistant-goecharger-mqtt #89 (psm auto, one report)",
                "syssi/homeassistant-goecharger-mqtt PR #104 (ids from 055.6)",
                "go-eCharger-API-v2 #121 (car 4, modelStatus 23 while switching)",
            ),
        ),
        Profile(
            "v3-056",
            "HOME+ V3, firmware 56.9: ids, car 1 and frc 0 during a phase switch, wh restarts",
            Api.V2,
            "56.9",
            typ="go-eCharger",
            switch_model_status=False,
            sources=(
                "syssi/homeassistant-goecharger-mqtt docs/mqtt-traffic-056.9.log",
                "go-eCharger-API-v2 #198, #248 (car 1 while switching, wh restarted)",
                "go-eCharger-API-v2 #194 (no modelStatus 23 from 055.8, one report)",
            ),
        ),
        Profile(
            "v4-60",
            "Gemini flex (V4), firmware 60.3: car 1/frc 0 phase switch, Initializing at boot",
            Api.V2,
            "60.3",
            # the V4 `typ` is seen only as an OCPP model string (go-eCharger-API-v2 #105)
            typ="go-eCharger_V4",
            switch_model_status=False,
            boot_init_s=3.0,
            sources=(
                "go-eCharger-API-v2 #299, marq24/ha-goecharger-api2 #82 (REST hangs on 60.x)",
                "go-eCharger-API-v2 #198, #248",
                "go-eCharger-API-v2 API_KEYS_FIRMWARE 60.x exports (car 6, modelStatus 40)",
            ),
        ),
        Profile(
            "gemini",
            "Gemini 2.0 / flex 2.0 (V5, LTE), firmware 60.4: no psm, cbl or hla in its keys",
            Api.V2,
            "60.4",
            typ="go-eCharger_V5",
            # the 59.4-60.4 key exports, generated from the V5 firmware (go-eCharger-API-v2
            # commit d47ceee), have no psm, and 60.3/60.4 no cbl and no hla
            lacks=frozenset({"psm", "cbl", "hla"}),
            switch_model_status=False,
            boot_init_s=3.0,
            sources=(
                "go-eCharger-API-v2 API_KEYS_FIRMWARE/apikeys_Firmware_60.4_sorted.md",
                "evcc #23165 (typ go-eCharger_V5)",
            ),
        ),
        Profile(
            "pro-60",
            "PRO, firmware 60.3: HTTP 400 (with the JSON) for keys it does not have",
            Api.V2,
            "60.3",
            typ="go-eCharger_Phoenix",
            lacks=frozenset({"cbl", "hla"}),
            switch_model_status=False,
            http_400_on_unknown_key=True,
            boot_init_s=3.0,
            sources=(
                "go-eCharger-API-v2 #312 (HTTP 400 with the data, one report)",
                "go-eCharger-API-v2 #321 (all-zero nrg on 60.4, one report)",
            ),
        ),
    )
}

# Without a profile: a V3 on 56.9 (the syssi capture the fixtures come from) for API v2, a
# HOME+ V2 on 041.0 for API v1.
DEFAULT = {Api.V2: "v3-056", Api.V1: "v2-041"}


def for_firmware(api: Api, firmware: str | None) -> Profile:
    """The profile of a charger that speaks `api` with `firmware` when no profile is named:
    the line with exactly that firmware, else the default for the API."""
    for profile in PROFILES.values():
        if profile.api == api and profile.firmware == firmware:
            return profile
    return PROFILES[DEFAULT[api]]


def get(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
