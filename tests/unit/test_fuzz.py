"""Property-based fuzzing of every inbound handler: whatever arrives, no exception escapes, an
invalid input changes no Target (so nothing is written), and every rejection says why.

The handlers are driven directly with a recording stand-in for the broker link: thousands of
cases in seconds. Their wiring to a real mosquitto is covered by the integration tests."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import config
from bridge.control.mqtt_controller import MqttController
from bridge.goe import codec_v1, codec_v2
from bridge.goe.model import ApiVersion, ChargerStatus, CodecError
from bridge.openwb.legacy19 import OpenWB19
from bridge.openwb.mqtt_chargepoint import OpenWBMqttChargepoint
from bridge.openwb.secondary import OpenWBSecondary
from bridge.publish.fields import Topics

# 300 examples per handler in every run; GOE_FUZZ_EXAMPLES=20000 runs a deep search on
# demand. Examples that failed once are replayed first from Hypothesis' database.
FUZZ = settings(
    max_examples=int(os.environ.get("GOE_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


def as_payload(value: Any) -> bytes:
    try:
        return json.dumps(value).encode()
    except ValueError:
        return str(value).encode()


payloads = (
    st.binary(max_size=40)
    | json_values.map(as_payload)
    | st.sampled_from(
        [b"16", b"0", b"12.73", b"true", b"off", b'"16"', b"NaN", b"-1", b"1e9", b"6", b"3"]
    )
)


class RecordingLink:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes | str, bool]] = []
        self.handlers: dict[str, Callable[[str, bytes, bool], None]] = {}

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False, qos: int = 0,
                expiry_s: int | None = None) -> None:  # fmt: skip
        self.published.append((topic, payload, retain))

    def add_replay(self, source: Callable[[], Any]) -> None:
        pass

    def subscribe(self, pattern: str, handler: Callable[[str, bytes, bool], None],
                  **options: bool) -> None:  # fmt: skip
        self.handlers[pattern] = handler


def charger(source: str, **control: Any) -> config.ChargerConfig:
    cfg = config.loads(
        "brokers: {b: {}}\nchargers: [{id: c, connection: {type: http, host: h}, "
        f"limits: {{max_current_a: 16}}, control: {{source: {source}}}}}]"
    )
    return cfg.chargers[0]


class Targets:
    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, target: Any) -> None:
        self.values.append(target)


# ------------------------------------------------------------------ generic controller


@FUZZ
@given(field=st.sampled_from(["allow_charging", "current_limit_a", "phases", "colour", "", "set"]) | st.text(max_size=10),
       payload=payloads, retain=st.booleans())  # fmt: skip
def test_mqtt_controller(field: str, payload: bytes, retain: bool) -> None:
    link = RecordingLink()
    targets = Targets()
    topics = Topics("goe", "c")
    ctl = MqttController(charger("mqtt"), on_target=targets, on_state=lambda s: None,
                         topics=topics, publish=link.publish)  # fmt: skip
    ctl.status = ChargerStatus(ApiVersion.V2)
    topic = topics.set() if field == "set" else f"{topics.root}/{field}/set"
    ctl.handle(topic, payload, retain)
    if not payload or field == "pv":  # pv/set is the PV input's (control/pv_input.py)
        assert link.published == [] and targets.values == []
        return
    results = [json.loads(p) for t, p, _ in link.published if t == topics.result]
    assert len(results) == 1
    result = results[0]
    if result["ok"]:
        target = targets.values[-1]
        if target.current_a is not None:
            assert 6 <= target.current_a <= 16 and float(target.current_a).is_integer()
        assert target.phases in (None, 1, 3)
    else:
        assert targets.values == []  # nothing changes, nothing is written
        assert isinstance(result["error"], str) and result["error"]


# ------------------------------------------------------------------ openWB


OPENWB_KEYS = ["global_data", "set_current", "phases_to_use", "trigger_phase_switch",
               "cp_interruption_duration", "parent_cp", "last_tag", "bogus"]  # fmt: skip


@FUZZ
@given(key=st.sampled_from(OPENWB_KEYS), payload=payloads)
def test_openwb_secondary(key: str, payload: bytes) -> None:
    link = RecordingLink()
    targets = Targets()
    ctl = OpenWBSecondary(charger("openwb-secondary"), on_target=targets, on_state=lambda s: None,
                          link=link, wall_clock=lambda: 1e9)  # fmt: skip
    ctl.resumed = True
    ctl.heartbeat, ctl.set_current = 1e9, 10.0
    ctl.update()
    before = list(targets.values)
    topic = (f"openWB/set/internal_chargepoint/{key}" if key in ("global_data", "last_tag")
             else f"openWB/set/internal_chargepoint/0/data/{key}")  # fmt: skip
    ctl._on_set(topic, payload, True)
    if not payload:
        return
    # the set topic is always cleared, as openWB's setdata does
    assert (topic, b"", True) in link.published
    if ctl.rejected:
        assert targets.values == before
    for target in targets.values:
        if target.current_a is not None:
            assert 6 <= target.current_a <= 32 and math.isfinite(target.current_a)


@FUZZ
@given(suffix=st.sampled_from(["current", "phases_to_use"]), payload=payloads)
def test_openwb_mqtt_chargepoint(suffix: str, payload: bytes) -> None:
    link = RecordingLink()
    targets = Targets()
    ctl = OpenWBMqttChargepoint(
        charger("openwb-mqtt"), on_target=targets, on_state=lambda s: None, link=link
    )
    handler = ctl._on_current if suffix == "current" else ctl._on_phases
    handler(f"openWB/mqtt/chargepoint/1/set/{suffix}", payload, True)
    if ctl.rejected:
        assert targets.values == []
    for target in targets.values:
        assert target.current_a is None or 6 <= target.current_a <= 1000


@FUZZ
@given(payload=payloads)
def test_openwb_19(payload: bytes) -> None:
    link = RecordingLink()
    targets = Targets()
    ctl = OpenWB19(charger("openwb-1.9"), on_target=targets, on_state=lambda s: None, link=link)
    ctl._on_current("openWB/lp/1/AConfigured", payload, True)
    ctl._on_cleared("openWB/set/lp/1/W", b"", True)
    if ctl.rejected:
        assert targets.values == []
    for target in targets.values:
        assert target.current_a is None or 6 <= target.current_a <= 32


# ------------------------------------------------------------------ codecs and config


status_keys = st.sampled_from(["car", "alw", "amp", "ama", "acu", "cbl", "err", "frc", "psm", "nrg", "pha",
                               "eto", "wh", "dws", "tmp", "tma", "fwv", "sse", "typ", "var", "trx", "uby",
                               "rssi", "fhz", "modelStatus", "fsp", "cards", "other"])  # fmt: skip
nrg_like = st.lists(
    st.integers(-5000, 5000) | st.floats(allow_nan=True) | st.text(max_size=3),
    min_size=0,
    max_size=17,
)


@FUZZ
@given(
    payload=st.dictionaries(status_keys, json_values | nrg_like | st.text(max_size=6), max_size=10)
)
def test_codecs_raise_only_codec_errors(payload: dict[str, Any]) -> None:
    for decode in (codec_v1.decode, codec_v2.decode):
        try:
            status = decode(payload)
        except CodecError as exc:
            assert str(exc)
            continue
        assert isinstance(status, ChargerStatus)
        for name, value in status.fields().items():
            if isinstance(value, float):
                assert math.isfinite(value), name


config_keys = st.sampled_from(["log", "brokers", "publish", "chargers", "http", "level", "format", "home",
                               "host", "port", "id", "connection", "type", "control", "source", "limits",
                               "max_current_a", "failsafe", "timeout_s", "tls", "password", "x"])  # fmt: skip
config_values = st.recursive(
    json_values,
    lambda inner: st.dictionaries(config_keys, inner, max_size=5) | st.lists(inner, max_size=3),
    max_leaves=20,
)


@pytest.mark.slow(10)
@FUZZ
@given(data=st.dictionaries(config_keys, config_values, max_size=6))
def test_config_loader_raises_only_config_errors(data: dict[str, Any]) -> None:
    try:
        cfg = config.from_data(data, env={})
    except config.ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and ":" in p for p in exc.problems)
        return
    assert isinstance(cfg, config.Config)


def test_secondary_ignores_its_own_echo_after_start_up() -> None:
    """Regression (found by bench/command_latency.py): the republished value of an older
    set_current arriving after a newer one must not bring the old set point back."""
    link = RecordingLink()
    targets = Targets()
    ctl = OpenWBSecondary(charger("openwb-secondary"), on_target=targets, on_state=lambda s: None,
                          link=link, wall_clock=lambda: 1e9)  # fmt: skip
    ctl._on_resume(
        "openWB/internal_chargepoint/global_data", b'{"heartbeat": 1e9, "parent_ip": null}', True
    )
    ctl._on_resume("openWB/internal_chargepoint/0/data/set_current", b"8.0", True)
    ctl.resumed = True
    ctl.update()
    assert targets.values[-1].current_a == 8.0  # resumed from retained state
    ctl._on_set("openWB/set/internal_chargepoint/0/data/set_current", b"11.0", False)
    ctl._on_resume("openWB/internal_chargepoint/0/data/set_current", b"10.0", False)  # late echo
    assert targets.values[-1].current_a == 11.0
