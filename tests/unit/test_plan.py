"""Target + status → go-e writes (docs/design.md#control), table-driven."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from bridge.control.plan import Plan, effective, plan
from bridge.goe.model import ApiVersion, ChargerStatus, Target, WireValue
from bridge.goe.transports.base import Transport

V2 = ChargerStatus(api_version=ApiVersion.V2, allow_charging=True, force_state="neutral",
                   current_limit_a=16, max_current_a=16, phases=3)  # fmt: skip
V2_ON_10 = ChargerStatus(api_version=ApiVersion.V2, force_state="on", current_limit_a=10,
                         max_current_a=32, phases=3)  # fmt: skip
V1 = ChargerStatus(api_version=ApiVersion.V1, allow_charging=True, current_limit_a=16,
                   max_current_a=32, firmware="041.0")  # fmt: skip
V1_033 = ChargerStatus(api_version=ApiVersion.V1, allow_charging=False, current_limit_a=16,
                       max_current_a=32, firmware="033")  # fmt: skip
CABLE_13 = ChargerStatus(api_version=ApiVersion.V2, force_state="on", current_limit_a=16,
                         max_current_a=32, cable_current_a=13)  # fmt: skip


class Recording(Transport):
    """A charger that takes every write and keeps it (the reconciler's tests)."""

    def __init__(self) -> None:
        self.writes: list[dict[str, WireValue]] = []

    async def read_status(self) -> ChargerStatus:
        raise AssertionError("not used")

    async def write(self, changes: Mapping[str, WireValue]) -> None:
        self.writes.append(dict(changes))


@pytest.mark.parametrize(
    ("target", "status", "kwargs", "expected"),
    [
        pytest.param(Target(True, 10), V2, {}, Plan({"frc": 2}, {"amp": 10}), id="v2-enable-force"),
        pytest.param(
            Target(True, 10),
            V2,
            {"enable_mode": "neutral"},
            Plan({}, {"amp": 10}),
            id="v2-enable-neutral-already",
        ),
        pytest.param(Target(False), V2_ON_10, {}, Plan({"frc": 1}), id="v2-disable"),
        pytest.param(Target(True, 0), V2_ON_10, {}, Plan({"frc": 1}), id="v2-zero-means-stop"),
        pytest.param(Target(True, 5.9), V2_ON_10, {}, Plan({"frc": 1}), id="v2-below-6-means-stop"),
        pytest.param(Target(True, 12.73), V2_ON_10, {}, Plan({}, {"amp": 12}), id="v2-floor"),
        pytest.param(Target(True, 40), V2_ON_10, {}, Plan({}, {"amp": 32}), id="v2-clamp-32"),
        pytest.param(
            Target(True, 40), V2_ON_10, {"limit_a": 16}, Plan({}, {"amp": 16}), id="v2-clamp-limit"
        ),
        pytest.param(Target(True, 20), V2, {}, Plan({"frc": 2}, {}), id="v2-clamp-ama-16-already"),
        pytest.param(Target(True, 20), CABLE_13, {}, Plan({}, {"amp": 13}), id="v2-clamp-cable"),
        pytest.param(Target(True, 10), V2_ON_10, {}, Plan(), id="v2-nothing-to-do"),
        pytest.param(Target(None, 8), V2, {}, Plan({}, {"amp": 8}), id="v2-current-only"),
        pytest.param(
            Target(True, 10, phases=1), V2_ON_10, {}, Plan({}, {}, {"psm": 1}), id="v2-phases"
        ),
        pytest.param(
            Target(True, 10, phases=2),
            V2_ON_10,
            {},
            Plan(unsupported=("phases: 2 is not 1, 3 or auto",)),
            id="v2-phases-2",
        ),
        pytest.param(
            Target(True, 10, phases="auto"),
            V2_ON_10,
            {},
            Plan({}, {}, {"psm": 0}),
            id="v2-phases-auto",
        ),
        pytest.param(
            Target(False, 10),
            V2_ON_10,
            {},
            Plan({"frc": 1}),
            id="v2-no-current-write-when-stopping",
        ),
        pytest.param(Target(True, 10), V1, {}, Plan({}, {"amx": 10}), id="v1-amx"),
        pytest.param(Target(False), V1, {}, Plan({"alw": 0}), id="v1-disable"),
        pytest.param(
            Target(True, 10), V1_033, {}, Plan({"alw": 1}, {"amp": 10}), id="v1-fw033-amp"
        ),
        pytest.param(
            Target(True, 16, phases=1),
            V1,
            {},
            Plan(unsupported=("phases: API v1 chargers cannot switch phases",)),
            id="v1-no-phases",
        ),
    ],
)
def test_plan(
    target: Target, status: ChargerStatus, kwargs: dict[str, object], expected: Plan
) -> None:
    options: dict[str, object] = {"limit_a": 32, **kwargs}
    assert plan(target, status, **options) == expected  # type: ignore[arg-type]


def test_effective_target() -> None:
    assert effective(Target(True, float("nan")), None, 32) == Target(False, None)
    assert effective(Target(True, 6.99), None, 32) == Target(True, 6.0)
    assert effective(Target(True, 99), None, 10) == Target(True, 10.0)


async def test_reconciler_survives_a_new_target_during_a_failing_write() -> None:
    """Regression: set_target() during an in-flight write that then fails crashed the
    reconciler with a KeyError (found by the fault matrix)."""
    import asyncio

    from bridge.control.reconciler import Reconciler
    from bridge.goe.model import ChargerUnavailable
    from bridge.goe.transports.base import Transport

    class SlowFailing(Transport):
        started = asyncio.Event()

        async def read_status(self) -> ChargerStatus:
            raise ChargerUnavailable("not used")

        async def write(self, changes: Mapping[str, WireValue]) -> None:
            self.started.set()
            await asyncio.sleep(0.05)
            raise ChargerUnavailable("no answer")

    transport = SlowFailing()
    r = Reconciler(transport, name="t", limit_a=16, min_command_interval_s=0)
    r.on_status(V2)
    r.set_target(Target(False))
    step = asyncio.create_task(r.step())
    await transport.started.wait()
    r.set_target(Target(True, 10))  # arrives while the write is in flight
    await step  # must not raise
    assert r.writes_failed == 1


def test_writes_are_described_in_the_commands_words() -> None:
    from bridge.control.plan import describe

    assert describe("frc", 2) == "allow charging: on"
    assert describe("frc", 1) == "allow charging: off"
    assert describe("alw", 0) == "allow charging: off"
    assert describe("amx", 10) == "current limit: 10 A"
    assert describe("psm", 1) == "phases: 1" and describe("psm", 2) == "phases: 3"
    assert describe("psm", True) == "psm=True" and describe("xyz", 1) == "xyz=1"


def test_phase_switching_needs_firmware_051_8() -> None:
    from bridge.goe.model import firmware_version

    assert firmware_version("051.8") == (51, 8) and firmware_version("56.9") == (56, 9)
    assert firmware_version("051.4") < (51, 8) and firmware_version("040") == (40, 0)
    old = ChargerStatus(ApiVersion.V2, firmware="051.4", phases=3, force_state="on",
                        current_limit_a=10)  # fmt: skip
    result = plan(Target(True, 10, phases=1), old, limit_a=16)
    assert result.phases == {}
    assert result.unsupported == (
        "phases: phase switching needs firmware 051.8 or later (this charger: 051.4)",
    )


def test_access_control_authorises_only_on_opt_in_and_only_a_waiting_session() -> None:
    import dataclasses

    waiting = dataclasses.replace(V2_ON_10, access_control="wait", plugged=True,
                                  session_authorized=False)  # fmt: skip
    assert plan(Target(True, 10), waiting, limit_a=32).switch == {}
    assert plan(Target(True, 10), waiting, limit_a=32, authorize=True).switch == {"trx": 0}
    assert plan(Target(False), waiting, limit_a=32, authorize=True).switch == {"frc": 1}
    done = dataclasses.replace(waiting, session_authorized=True)
    assert plan(Target(True, 10), done, limit_a=32, authorize=True).switch == {}
    open_ = dataclasses.replace(waiting, access_control="open")
    assert plan(Target(True, 10), open_, limit_a=32, authorize=True).switch == {}


async def test_reconciler_sleeps_through_polls_while_nobody_controls() -> None:
    """A poll wakes the reconciler only when there is a Target to hold (bench/floor.py: a
    task switch per poll per charger for nothing)."""
    import asyncio

    from bridge.control.reconciler import Reconciler

    class Counting(Reconciler):
        steps = 0

        async def step(self) -> float | None:
            self.steps += 1
            return await super().step()

    r = Counting(Recording(), name="t", limit_a=16, min_command_interval_s=0)
    task = asyncio.create_task(r.run())
    try:
        for _ in range(10):
            r.on_status(V2)
            await asyncio.sleep(0)
        assert r.steps == 1  # the first look, then no wake-up per poll
        r.set_target(Target(True, 10))
        await asyncio.sleep(0.01)
        assert r.steps == 2
        r.on_status(V2)  # with a Target every poll is checked against it
        await asyncio.sleep(0.01)
        assert r.steps == 3
    finally:
        task.cancel()


async def test_reconciler_leaves_the_charger_alone_while_its_own_phase_switch_runs() -> None:
    """After `psm` the charger shows car=1 and frc=0 for seconds (go-eCharger-API-v2 #198):
    nothing is written then; once the car is back, the Target is written again; a car that
    stays at car=4 (#144) is reported."""
    import dataclasses

    from bridge.control import reconciler as module
    from bridge.control.reconciler import Reconciler

    now = [100.0]
    reports: list[tuple[str, WireValue, str | None]] = []
    transport = Recording()
    r = Reconciler(transport, name="t", limit_a=16, min_command_interval_s=0,
                   phase_switch_min_interval_s=0, clock=lambda: now[0],
                   on_write=lambda k, v, e: reports.append((k, v, e)))  # fmt: skip
    charging = ChargerStatus(ApiVersion.V2, car=2, plugged=True, charging=True,
                             force_state="on", current_limit_a=10, phases=3,
                             firmware="56.9")  # fmt: skip
    r.on_status(charging)
    r.set_target(Target(True, 10, phases=1))
    await r.step()
    assert transport.writes == [{"psm": 1}]
    switching = dataclasses.replace(charging, car=1, plugged=True, charging=False,
                                    force_state="neutral", phases=1)  # fmt: skip
    for _ in range(3):
        now[0] += 5
        r.on_status(switching)
        assert await r.step() is not None  # holds, looks again at the window's end
    assert transport.writes == [{"psm": 1}]
    now[0] += 5
    r.on_status(dataclasses.replace(switching, car=3))  # back
    await r.step()
    assert transport.writes == [{"psm": 1}, {"frc": 2}]
    # a car that stays at car 4 after the switch is reported
    now[0] += 1000
    r.on_status(dataclasses.replace(charging, phases=1))
    r.set_target(Target(True, 10, phases=3))
    await r.step()
    r.on_status(dataclasses.replace(charging, car=4, charging=False, phases=3,
                                    model_status_code=23))  # fmt: skip
    await r.step()
    stuck = dataclasses.replace(charging, car=4, charging=False, phases=3)
    r.on_status(stuck)
    await r.step()  # back (modelStatus 23 is over), waiting for the car to resume
    now[0] += module.RESUME_GRACE_S + 1
    r.on_status(stuck)
    await r.step()
    assert r.not_resumed and r.in_sync is False
    assert reports[-1][0] == "psm" and "#144" in (reports[-1][2] or "")


async def test_a_new_target_or_the_new_phases_end_the_switch_hold() -> None:
    """A switch shorter than a poll shows no car=1: charging on the new phases ends the hold;
    and a new Target (a stop) is carried out at once, only the same one waits."""
    import dataclasses

    from bridge.control.reconciler import Reconciler

    now = [100.0]
    transport = Recording()
    r = Reconciler(transport, name="t", limit_a=16, min_command_interval_s=0,
                   phase_switch_min_interval_s=0, clock=lambda: now[0])  # fmt: skip
    three = ChargerStatus(ApiVersion.V2, car=2, plugged=True, charging=True, force_state="on",
                          current_limit_a=10, phases=3, phases_in_use=3, firmware="56.9")  # fmt: skip
    r.on_status(three)
    r.set_target(Target(True, 10, phases=1))
    await r.step()
    assert transport.writes == [{"psm": 1}]
    now[0] += 1
    r.on_status(dataclasses.replace(three, phases=1, phases_in_use=1, force_state="neutral"))
    await r.step()  # charging on one phase: the switch is over, frc=2 again
    assert transport.writes == [{"psm": 1}, {"frc": 2}]
    r.set_target(Target(True, 10, phases="auto"))
    r.on_status(dataclasses.replace(three, phases=1, phases_in_use=1))
    await r.step()
    assert transport.writes[-1] == {"psm": 0}
    r.set_target(Target(False, phases="auto"))  # a stop during the switch: at once
    await r.step()
    assert transport.writes[-1] == {"frc": 1}


async def test_phases_the_car_already_charges_on_hold_nothing() -> None:
    """openWB's phases_to_use 3 at its start, on a charger in auto that already charges on
    three phases: `psm` is written, but there is no switch to wait for, so the rest of the
    Target goes out at once (it was held for the whole window, seen with openWB 2.2.2)."""

    from bridge.control.reconciler import Reconciler

    now = [100.0]
    transport = Recording()
    r = Reconciler(transport, name="t", limit_a=16, min_command_interval_s=0,
                   phase_switch_min_interval_s=0, clock=lambda: now[0])  # fmt: skip
    auto = ChargerStatus(ApiVersion.V2, car=2, plugged=True, charging=True,
                         force_state="neutral", current_limit_a=16, phases="auto",
                         phases_in_use=3, firmware="56.9")  # fmt: skip
    r.on_status(auto)
    r.set_target(Target(True, 16, phases=3))
    await r.step()
    assert transport.writes == [{"psm": 2}]
    now[0] += 1
    await r.step()
    assert transport.writes[-1] == {"frc": 2}  # not held for a switch that does not come
