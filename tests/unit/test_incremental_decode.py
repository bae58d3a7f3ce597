"""codec_v2.Decoder (only what changed is decoded again) gives what codec_v2.decode gives,
status for status: fields, the values left out and why, the raw payload, the errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.goe import codec_v2
from bridge.goe.model import ChargerStatus, CodecError

FIXTURE = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "goe" / "v2-status-full-idle.json").read_text()
)
CHECK = settings(
    max_examples=int(os.environ.get("GOE_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# every key a reader reads, one no reader names (the card names are found by pattern) and a
# secret (left out of `raw`)
KEYS = sorted(
    {key for _, keys, _ in codec_v2.READERS for key in keys} | {"c0n", "c1n", "c-2n", "xyz", "wke"}
)
scalars = (
    st.none() | st.booleans() | st.integers(-3, 40) | st.sampled_from([0.0, 1.0, 16.0, -0.5])
    | st.floats(allow_nan=False, width=32) | st.sampled_from(["16", "a", "", "56.9"])
)  # fmt: skip
values = (
    scalars
    | st.lists(scalars, min_size=16, max_size=16)  # an nrg
    | st.lists(st.booleans() | st.integers(0, 1), min_size=6, max_size=6)  # a pha
    | st.lists(st.fixed_dictionaries({"name": scalars}), max_size=3)  # cards
    | st.lists(scalars, max_size=3)
)
_GONE = object()
changes = st.dictionaries(st.sampled_from(KEYS), values | st.just(_GONE), max_size=4)


def outcome(decode: Any, payload: dict[str, Any]) -> Any:
    try:
        status: ChargerStatus = decode(payload)
    except CodecError as exc:
        return ("error", str(exc))
    return (status, status.dropped, dict(status.raw))


def apply(payload: dict[str, Any], change: dict[str, Any]) -> None:
    for key, value in change.items():
        if value is _GONE:
            payload.pop(key, None)
        else:
            payload[key] = value


@CHECK
@given(steps=st.lists(changes, min_size=1, max_size=6))
def test_only_what_changed_is_decoded_again_with_the_same_result(
    steps: list[dict[str, Any]],
) -> None:
    decoder = codec_v2.Decoder()
    payload = dict(FIXTURE)
    assert outcome(decoder.decode, payload) == outcome(codec_v2.decode, payload)
    for change in steps:
        payload = dict(payload)  # a new answer each poll (HTTP)
        apply(payload, change)
        assert outcome(decoder.decode, payload) == outcome(codec_v2.decode, payload)


@CHECK
@given(steps=st.lists(changes, min_size=1, max_size=6))
def test_one_dict_updated_in_place_is_decoded_right(steps: list[dict[str, Any]]) -> None:
    # go-e's MQTT: the transport keeps one dict and sets one key a message
    decoder = codec_v2.Decoder()
    payload = dict(FIXTURE)
    decoder.decode(payload)
    for change in steps:
        apply(payload, change)
        assert outcome(decoder.decode, payload) == outcome(codec_v2.decode, payload)


def test_the_same_values_give_the_same_status() -> None:
    decoder = codec_v2.Decoder()
    first = decoder.decode(dict(FIXTURE))
    assert decoder.decode(json.loads(json.dumps(FIXTURE))) is first


def test_true_is_not_one_and_one_is_not_one_point_zero() -> None:
    decoder = codec_v2.Decoder()
    decoder.decode({**FIXTURE, "alw": 1, "amp": 16})
    status = decoder.decode({**FIXTURE, "alw": True, "amp": 16.0})
    assert status == codec_v2.decode({**FIXTURE, "alw": True, "amp": 16.0})
    decoder.decode({**FIXTURE, "pha": [True] * 6})
    status = decoder.decode({**FIXTURE, "pha": [1] * 6})
    expected = codec_v2.decode({**FIXTURE, "pha": [1] * 6})
    assert (status, status.dropped) == (expected, expected.dropped)
    assert status.dropped  # six integers are no pha


def test_a_failed_status_leaves_the_last_good_one_to_compare_with() -> None:
    decoder = codec_v2.Decoder()
    decoder.decode(dict(FIXTURE))
    try:
        decoder.decode({**FIXTURE, "car": "x"})
    except CodecError:
        pass
    else:  # pragma: no cover
        raise AssertionError("a broken car must fail the poll")
    again = {**FIXTURE, "car": "x"}
    assert outcome(decoder.decode, again) == outcome(codec_v2.decode, again)


def test_a_card_name_is_read_again_whatever_the_transaction_number() -> None:
    # `c{trx - 1}n` of a trx below 1 is `c-2n`: still the card reader's key
    decoder = codec_v2.Decoder()
    decoder.decode({**FIXTURE, "trx": -1, "c-2n": "Anna"})
    status = decoder.decode({**FIXTURE, "trx": -1, "c-2n": "Ben"})
    assert status.rfid_card == codec_v2.decode({**FIXTURE, "trx": -1, "c-2n": "Ben"}).rfid_card
