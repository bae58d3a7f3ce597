"""A status comes from the charger, or from anyone answering its unauthenticated HTTP on the
LAN: no firmware string, power factor or status may crash the bridge or reach a topic as an
absurd value."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.control.plan import phase_support, plan
from bridge.goe import codec_v1, codec_v2
from bridge.goe.model import (
    ApiVersion,
    ChargerStatus,
    Target,
    firmware_at_least,
    firmware_major,
    firmware_version,
)
from bridge.goe.plausibility import Plausibility

HOSTILE_FIRMWARE = ["²", "56.¹", "9" * 5000, "١٦", "0x10", "", " ", "\x00", "56." + "9" * 5000,
                    "-1", "+5", "56.9" * 10_000, "٥٦.٩", "𝟓𝟔.𝟗"]  # fmt: skip


@pytest.mark.parametrize("fwv", HOSTILE_FIRMWARE, ids=lambda s: repr(s[:12]))
def test_firmware_parsing_never_raises(fwv: str) -> None:
    """`str.isdigit()` is true for "²" and "١٦", and `int()` refuses 4,300+ digits: neither
    may reach a parse that runs on every reconcile step."""
    major = firmware_major(fwv)
    version = firmware_version(fwv)
    assert major is None or (isinstance(major, int) and 0 <= major < 10**6)
    assert version is None or (version[0] == major and 0 <= version[1] < 10**6)
    firmware_at_least(fwv, (51, 8))


@pytest.mark.parametrize(
    ("fwv", "version"),
    [("033", (33, 0)), ("040.0", (40, 0)), ("051.8", (51, 8)), ("56.9", (56, 9)),
     ("35.6-1-ga0d44e5", (35, 6)), ("56.¹", (56, 0)), ("²", None), ("9" * 5000, None),
     ("1234567", None), (None, None)],
)  # fmt: skip
def test_firmware_version_reads_ascii_digits_only(fwv: str | None, version: Any) -> None:
    assert firmware_version(fwv) == version


@pytest.mark.parametrize("fwv", HOSTILE_FIRMWARE, ids=lambda s: repr(s[:12]))
@pytest.mark.parametrize("api", list(ApiVersion))
def test_plan_never_crashes_on_a_firmware_string(fwv: str, api: ApiVersion) -> None:
    status = ChargerStatus(api, firmware=fwv, current_limit_a=16, phases=3, plugged=True,
                           force_state="neutral", allow_charging=False, car=3)  # fmt: skip
    for target in (Target(True, 10, phases=1), Target(True, 10, phases="auto"), Target(False)):
        plan(target, status, limit_a=16)


statuses = st.builds(
    ChargerStatus,
    api_version=st.sampled_from(list(ApiVersion)),
    firmware=st.none() | st.text(max_size=40),
    current_limit_a=st.none() | st.integers(-(10**12), 10**12),
    max_current_a=st.none() | st.integers(-(10**12), 10**12),
    cable_current_a=st.none() | st.integers(-(10**12), 10**12),
    force_state=st.none() | st.text(max_size=8),
    allow_charging=st.none() | st.booleans(),
    phases=st.none() | st.sampled_from([1, 3, "auto", 2, 0]),
    plugged=st.none() | st.booleans(),
    access_control=st.none() | st.sampled_from(["open", "wait", "evcms", "unknown"]),
    session_authorized=st.none() | st.booleans(),
    car=st.none() | st.integers(-5, 300),
    raw=st.dictionaries(st.sampled_from(["psm", "psmd", "fwv", "x"]), st.integers(), max_size=3),
)
targets = st.builds(
    Target,
    allow=st.none() | st.booleans(),
    current_a=st.none() | st.floats(allow_nan=True, allow_infinity=True),
    phases=st.none() | st.sampled_from([1, 3, "auto", 2, 0, "x"]),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=statuses, target=targets, authorize=st.booleans())
def test_plan_never_crashes_on_any_status(
    status: ChargerStatus, target: Target, authorize: bool
) -> None:
    result = plan(target, status, limit_a=16, authorize=authorize)
    for key, value in {**result.switch, **result.current, **result.phases}.items():
        assert key in ("alw", "amx", "amp", "frc", "trx", "psm")
        assert value is None or isinstance(value, int)
        if key in ("amx", "amp"):
            assert isinstance(value, int) and 6 <= value <= 16


@pytest.mark.parametrize("codec", [codec_v1, codec_v2], ids=["v1", "v2"])
@pytest.mark.parametrize(
    "fwv", ["x" * 33, "56.9" * 25_000, "56.9\n", "56.9\x1b[31m", "56.²", "\u200b56.9"]
)
def test_a_firmware_string_is_published_only_when_short_and_printable(codec: Any, fwv: str) -> None:
    status = codec.decode({"car": 1 if codec is codec_v2 else "1", "fwv": fwv, "sse": "072246"})
    assert status.firmware is None
    assert "firmware" not in status.fields()
    assert any(d.startswith("fwv: expected a printable string") for d in status.dropped)
    assert len(max(status.dropped, key=len)) < 200  # the log line quotes an excerpt
    assert status.serial == "072246"


def test_a_normal_firmware_string_is_kept() -> None:
    assert codec_v2.decode({"car": 1, "fwv": "35.6-1-ga0d44e5"}).firmware == "35.6-1-ga0d44e5"
    assert codec_v1.decode({"car": "1", "fwv": "042.0"}).firmware == "042.0"


@pytest.mark.parametrize("pf", [-1e12, 1e12, 250.0, -126.0])
def test_an_implausible_power_factor_is_dropped(pf: float) -> None:
    """go-e reports power factors in % (nrg[12..15]): beyond 100 % is no measurement."""
    nrg = [230, 230, 230, 1, 10, 0, 0, 2300, 0, 0, 0, 2300, pf, 0, 0, 0]
    events: list[tuple[str, dict[str, Any]]] = []
    checked = Plausibility(lambda e, f: events.append((e, f))).check(
        codec_v2.decode({"car": 2, "nrg": nrg}), 0.0
    )
    assert checked.power_factor_l1_pct is None
    assert checked.power_l1_w == 2300.0
    assert events[0][0] == "status.implausible"
    assert events[0][1]["field"] == "power_factor_l1_pct"


def test_a_real_power_factor_passes() -> None:
    nrg = [230, 230, 230, 1, 10, 0, 0, 2300, 0, 0, 0, 2300, 98.96, 0, 0, 100]
    checked = Plausibility(lambda e, f: None).check(codec_v2.decode({"car": 2, "nrg": nrg}), 0.0)
    assert checked.power_factor_l1_pct == 98.96 and checked.power_factor_n_pct == 100


def test_phase_support_says_why() -> None:
    v2 = ChargerStatus(ApiVersion.V2, firmware="052.2")
    assert phase_support(v2, 1) is None
    assert phase_support(v2, "auto") == (
        "phases auto needs firmware 055.5 or later (this charger: 052.2)"
    )
    assert phase_support(ChargerStatus(ApiVersion.V2, firmware="055.5"), "auto") is None
    assert phase_support(ChargerStatus(ApiVersion.V2, firmware="051.4"), 3) == (
        "phase switching needs firmware 051.8 or later (this charger: 051.4)"
    )
    no_psm = ChargerStatus(ApiVersion.V2, firmware="60.4", raw={"car": 1, "fwv": "60.4"})
    assert phase_support(no_psm, 3) == "this charger does not report psm (no phase switching)"
    assert phase_support(ChargerStatus(ApiVersion.V2, firmware="²"), 1) is None
