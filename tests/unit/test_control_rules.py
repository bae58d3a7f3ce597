"""Control integrity, pure parts (issue: the charger ends on the newest command): hostile
payloads, verbatim secrets, recovery timing, implausible values, the openWB heartbeat that
cannot be forged, and the inbox that coalesces floods."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from bridge import config, jsontext, logs
from bridge.goe.model import ApiVersion, ChargerStatus
from bridge.goe.plausibility import NEW_BASELINE_POLLS, Plausibility
from bridge.goe.poller import Poller
from bridge.mqtt.inbox import Inbox
from bridge.mqtt.messages import Incoming
from bridge.openwb.secondary import OpenWBSecondary
from bridge.publish.fields import result_payload
from tests.unit.test_fuzz import RecordingLink, Targets, charger

# ------------------------------------------------------------------ hostile payloads


@pytest.mark.parametrize("text", ["١٦", "1_6", "nan", "inf", "-inf", "0x10", "16A", "", " "])
def test_numbers_are_ascii_digits_only(text: str) -> None:
    with pytest.raises(ValueError):
        jsontext.parse_number(text)


@pytest.mark.parametrize(
    "text,value", [("16", 16.0), (" 12.5 ", 12.5), ("-3", -3.0), ("1e1", 10.0)]
)
def test_plain_numbers_parse(text: str, value: float) -> None:
    assert jsontext.parse_number(text) == value


def test_oversized_payload_is_rejected_not_parsed() -> None:
    with pytest.raises(jsontext.BadPayload, match="too large"):
        jsontext.decode_command(b"1" * (jsontext.MAX_PAYLOAD_BYTES + 1))


def test_deep_nesting_is_a_rejection_not_a_recursion_error() -> None:
    with pytest.raises(jsontext.BadPayload, match="nested too deeply"):
        jsontext.decode_command(b"[" * 30_000 + b"]" * 30_000)


def test_nan_in_json_is_not_a_number() -> None:
    assert jsontext.decode_command(b"NaN") == "NaN"  # text, which no parser accepts
    assert jsontext.decode_command(b'{"a": Infinity}') == '{"a": Infinity}'


def test_output_json_never_holds_nan_or_infinity() -> None:
    text = jsontext.dumps({"a": float("nan"), "b": [float("inf"), 1.5]})
    assert json.loads(text) == {"a": None, "b": [None, 1.5]}
    assert "NaN" not in result_payload(False, "x", float("nan"), "e")


def test_results_and_logs_echo_at_most_a_short_excerpt() -> None:
    huge = "x" * 10_000
    result = json.loads(result_payload(False, "current_limit_a", huge, "bad"))
    assert len(result["value"]) <= jsontext.EXCERPT_CHARS
    out = io.StringIO()
    logs.setup("info", "json", stream=out)
    throttled = logs.Throttled(logs.get("t"), "warning", "command.rejected")
    throttled.note(field=huge, error="bad")
    assert len(out.getvalue()) < 400


def test_a_flood_is_summarised_in_the_log() -> None:
    out = io.StringIO()
    logs.setup("info", "json", stream=out)
    now = [0.0]
    throttled = logs.Throttled(logs.get("t"), "warning", "command.rejected", clock=lambda: now[0])
    for _ in range(10_000):
        throttled.note(error="bad")
    now[0] = 11.0
    throttled.note(error="bad")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 6
    assert lines[-1]["suppressed_before"] == 9_995
    logging.getLogger().handlers.clear()


# ------------------------------------------------------------------ the inbox


def test_inbox_keeps_only_the_newest_unread_command_per_topic_in_arrival_order() -> None:
    inbox = Inbox(lambda topic: topic.endswith("/set"))
    for topic, payload in [("a/set", b"6"), ("b/set", b"true"), ("s", b"1"), ("a/set", b"7"),
                           ("s", b"2"), ("a/set", b""), ("a/set", b"16")]:  # fmt: skip
        inbox.append(Incoming(topic, payload, False, False))
    order = [(m.topic, m.payload) for m in inbox]
    # an empty message (a retained one deleted) never supersedes a command and stays where it
    # arrived (its handler ignores it); a/set moved behind b/set when replaced
    assert order == [("b/set", b"true"), ("s", b"1"), ("s", b"2"), ("a/set", b""),
                     ("a/set", b"16")]  # fmt: skip
    assert inbox.superseded == 2


# ------------------------------------------------------------------ secrets from the environment


def test_numeric_looking_secrets_from_the_environment_are_taken_verbatim(tmp_path: Path) -> None:
    text = "brokers: {home: {host: localhost}}\n"
    env = {
        "GOE_BRIDGE__BROKERS__HOME__PASSWORD": "0123",
        "GOE_BRIDGE__BROKERS__HOME__USERNAME": "007",
        "GOE_BRIDGE__BROKERS__HOME__PORT": "1884",
        "GOE_BRIDGE__BROKERS__HOME__TLS__ENABLED": "true",
        "GOE_BRIDGE__BROKERS__HOME__CLIENT_ID": "1e3",
    }
    cfg = config.loads(text, env)
    broker = cfg.brokers["home"]
    assert broker.password is not None and broker.password.reveal() == "0123"
    assert broker.username == "007"
    assert broker.client_id == "1e3"
    assert broker.port == 1884 and broker.tls.enabled is True


def test_check_config_warns_about_password_without_username_and_readable_secret_files(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "mqtt_password"
    secret.write_text("s3cret\n")
    os.chmod(secret, 0o644)
    path = tmp_path / "config.yaml"
    path.write_text(f"brokers: {{home: {{host: localhost, password_file: {secret}}}}}\n")
    os.chmod(path, 0o600)
    warnings = config.load(path, env={}).warnings
    assert any("brokers.home.password: set without brokers.home.username" in w for w in warnings)
    assert any(f"brokers.home.password_file: {secret} is readable by every user" in w
               for w in warnings)  # fmt: skip
    os.chmod(secret, 0o600)
    path.write_text(
        f"brokers: {{home: {{host: localhost, username: u, password_file: {secret}}}}}\n"
    )
    assert config.load(path, env={}).warnings == ()


# ------------------------------------------------------------------ recovery


class _NoTransport:
    push = False


@pytest.mark.parametrize("interval", [0.5, 1.0, 5.0, 10.0])
def test_a_charger_is_probed_at_least_every_max_interval_or_5s_in_the_first_minutes(
    interval: float,
) -> None:
    poller = Poller(_NoTransport(), interval, on_status=print, on_unavailable=print)  # type: ignore[arg-type]
    poller.outage_started = 1000.0
    delays = [poller.retry_delay(1000.0 + i) for i in range(0, 290, 10)]
    assert max(delays) <= max(interval, 5.0)
    assert max(delays) <= max(interval, 2 * interval if interval < 5 else interval)
    assert min(delays) >= interval
    # a long outage backs off further
    assert poller.retry_delay(1000.0 + 301) > max(interval, 5.0) / 2


# ------------------------------------------------------------------ implausible values


def status(**fields: Any) -> ChargerStatus:
    base = {"api_version": ApiVersion.V2, "variant_kw": 11, "power_w": 11000.0,
            "energy_total_wh": 100_000.0, "energy_session_wh": 5000.0, "wifi_rssi_dbm": -60}  # fmt: skip
    return ChargerStatus(**{**base, **fields})  # type: ignore[arg-type]


def test_implausible_values_are_not_passed_on_and_logged_once_per_episode() -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    check = Plausibility(lambda e, f: events.append((e, f)))
    assert check.check(status(), 0).power_w == 11000.0
    spiked = check.check(status(power_w=250_000.0, wifi_rssi_dbm=31), 5)
    assert spiked.power_w is None and spiked.wifi_rssi_dbm is None
    check.check(status(power_w=250_000.0, wifi_rssi_dbm=31), 10)
    assert [e for e, _ in events].count("status.implausible") == 2  # once per field
    assert check.check(status(), 15).power_w == 11000.0
    assert ("status.plausible_again", {"field": "power_w"}) in events


def test_energy_counter_never_goes_back_or_jumps() -> None:
    check = Plausibility(lambda e, f: None)
    assert check.check(status(energy_total_wh=100_000.0), 0).energy_total_wh == 100_000.0
    assert check.check(status(energy_total_wh=0.0), 5).energy_total_wh == 100_000.0
    assert check.check(status(energy_total_wh=-5.0), 10).energy_total_wh == 100_000.0
    # 11 kW for 15 s is ≈ 46 Wh; 1 MWh is not
    assert check.check(status(energy_total_wh=1_100_000.0), 15).energy_total_wh == 100_000.0
    assert check.check(status(energy_total_wh=100_040.0), 20).energy_total_wh == 100_040.0
    # session energy may restart at 0 (a new session), never jump up
    assert check.check(status(energy_session_wh=0.0), 25).energy_session_wh == 0.0
    assert check.check(status(energy_session_wh=90_000.0), 30).energy_session_wh == 0.0


def test_a_counter_that_really_restarted_is_accepted_after_consistent_polls() -> None:
    check = Plausibility(lambda e, f: None)
    check.check(status(energy_total_wh=500_000.0), 0)
    values = [check.check(status(energy_total_wh=1000.0 + i), 5 * (i + 1)).energy_total_wh
              for i in range(NEW_BASELINE_POLLS)]  # fmt: skip
    assert values[:-1] == [500_000.0] * (NEW_BASELINE_POLLS - 1)
    assert values[-1] == 1000.0 + NEW_BASELINE_POLLS - 1


# ------------------------------------------------------------------ openWB heartbeat


class Clocks:
    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = 1_700_000_000.0


def secondary(clocks: Clocks) -> tuple[OpenWBSecondary, Targets, RecordingLink]:
    link, targets = RecordingLink(), Targets()
    ctl = OpenWBSecondary(charger("openwb-secondary"), on_target=targets,
                          on_state=lambda s: None, link=link,  # type: ignore[arg-type]
                          wall_clock=lambda: clocks.wall, clock=lambda: clocks.mono)  # fmt: skip
    ctl.resumed = True
    ctl.started_at = clocks.mono
    return ctl, targets, link


def beat(ctl: OpenWBSecondary, heartbeat: float) -> None:
    payload = json.dumps({"heartbeat": heartbeat, "parent_ip": "192.0.2.1"}).encode()
    ctl._on_set("openWB/set/internal_chargepoint/global_data", payload, False)


def current(ctl: OpenWBSecondary, amps: float) -> None:
    ctl._on_set("openWB/set/internal_chargepoint/0/data/set_current", str(amps).encode(), False)


def test_a_heartbeat_from_the_future_is_rejected() -> None:
    clocks = Clocks()
    ctl, targets, _ = secondary(clocks)
    beat(ctl, 1e18)
    current(ctl, 16)
    assert ctl.future_heartbeats == 1 and ctl.rejected == 1
    assert targets.values == [] or targets.values[-1].allow is False


def test_the_failsafe_runs_on_our_clock_whatever_the_timestamps_say() -> None:
    clocks = Clocks()
    ctl, targets, _ = secondary(clocks)
    beat(ctl, clocks.wall)
    current(ctl, 16)
    assert targets.values[-1].allow is True
    # the primary goes silent while its last heartbeat stays "fresh" by wall clock: our
    # wall clock jumped back, or the heartbeat was 25 s ahead (within the tolerance)
    beat(ctl, clocks.wall + 25)
    for _ in range(79):
        clocks.mono += 1
        clocks.wall -= 1
        ctl.update()
    assert targets.values[-1].allow is True
    clocks.mono += 2
    ctl.update()
    assert targets.values[-1].allow is False and ctl.failsafe_active


def test_a_repeated_heartbeat_is_no_sign_of_life() -> None:
    clocks = Clocks()
    ctl, targets, _ = secondary(clocks)
    stuck = clocks.wall
    beat(ctl, stuck)
    current(ctl, 10)
    for _ in range(9):
        clocks.mono += 10
        clocks.wall = stuck  # the wall clock rule alone would never fire
        beat(ctl, stuck)
        ctl.update()
    assert targets.values[-1].allow is False


def test_openwbs_own_rule_still_applies() -> None:
    clocks = Clocks()
    ctl, targets, _ = secondary(clocks)
    beat(ctl, clocks.wall - 81)  # older than 80 s by the primary's own timestamp
    current(ctl, 16)
    assert targets.values[-1].allow is False


def test_status_replace_keeps_a_frozen_model() -> None:
    # Plausibility returns a replaced copy; the input is never changed
    original = status(power_w=1e9)
    Plausibility(lambda e, f: None).check(original, 0)
    assert original.power_w == 1e9
    assert dataclasses.is_dataclass(original)


async def test_the_liveness_watch_wakes_when_due_not_every_second() -> None:
    """The failsafe watch sleeps until the failsafe could fall due (a one-second tick per
    charger was 500 wake-ups a second for 500 chargers, bench/floor.py) and still acts in
    time."""
    import asyncio

    from bridge.control.base import Controller
    from bridge.goe.model import Target
    from tests.mqtt_helpers import until

    class Counting(Controller):
        checks = 0

        def check_failsafe(self, now: float | None = None) -> None:
            self.checks += 1
            super().check_failsafe(now)

    quiet = Counting(charger("mqtt"), on_target=Targets(), on_state=lambda s: None)
    assert quiet.timeout_s is None
    task = asyncio.create_task(quiet.run())
    await asyncio.sleep(1.2)
    task.cancel()
    assert quiet.checks == 1  # nothing to time: no tick

    targets = Targets()
    watched = Counting(charger("mqtt"), on_target=targets, on_state=lambda s: None)
    watched.timeout_s = 0.3
    task = asyncio.create_task(watched.run())
    try:
        watched.heard(Target(True, 10))
        await until(lambda: watched.failsafe_active, what="failsafe after 0.3 s of quiet")
        assert targets.values[-1] == Target(allow=False)
        assert watched.checks <= 3  # start, after `heard`, when due
    finally:
        task.cancel()


async def test_a_poke_reads_again_at_once_also_during_a_poll() -> None:
    """A write's verification: a poke while the poller waits ends the wait; a poke while a
    poll is in flight makes another right after it; cancelling stops a waiting poller."""
    import asyncio

    from bridge.goe.codec_v2 import decode
    from tests.mqtt_helpers import until

    reads: list[float] = []
    in_poll = asyncio.Event()
    release = asyncio.Event()

    class Slow:
        push = False

        async def read_status(self) -> ChargerStatus:
            reads.append(asyncio.get_running_loop().time())
            if len(reads) == 2:  # the second poll waits until released
                in_poll.set()
                await release.wait()
            return decode({"car": 1})

    poller = Poller(Slow(), 3600, on_status=lambda s: None, on_unavailable=print)  # type: ignore[arg-type]
    task = asyncio.create_task(poller.run())
    try:
        await until(lambda: len(reads) == 1, what="the first poll")
        await asyncio.sleep(0.05)
        assert len(reads) == 1  # waiting an hour
        poller.poke()
        await asyncio.wait_for(in_poll.wait(), 2)  # the wait ended at once
        poller.poke()  # during the poll
        release.set()
        await until(lambda: len(reads) == 3, what="a read right after the poll", timeout=1)
        await asyncio.sleep(0.05)
        assert len(reads) == 3  # then the interval again
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert task.cancelled()


def test_a_fleet_starts_spread_a_home_at_once() -> None:
    """A charger's start costs ten polls of CPU (bench/floor.py): at most one start per
    START_SPACING_S, a fleet over as many intervals as it needs with the polls' phases evenly
    spread, a few chargers at once whatever their intervals (a go-e cloud v1 charger polls
    every 120 s: its first data must not wait for 60 s)."""
    from bridge.service import START_SPACING_S, start_offsets

    assert start_offsets([5.0]) == [0.0]
    assert start_offsets([5.0, 5.0]) == [0.0, START_SPACING_S]
    assert start_offsets([1.0, 30.0]) == [0.0, START_SPACING_S]
    assert start_offsets([5.0, 120.0]) == [0.0, START_SPACING_S]
    fleet = start_offsets([5.0] * 500)
    assert fleet == sorted(fleet) and fleet[-1] < 500 * START_SPACING_S
    per_window = max(sum(1 for t in fleet if w <= t < w + 5) for w in range(0, 50))
    assert per_window <= 5 / START_SPACING_S
    phases = sorted(round(t % 5.0, 9) for t in fleet)
    assert phases == [round(5.0 * i / 500, 9) for i in range(500)]
