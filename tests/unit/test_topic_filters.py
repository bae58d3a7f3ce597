"""The link's subscription index against aiomqtt's own MQTT filter rule."""

from __future__ import annotations

import aiomqtt
from hypothesis import given
from hypothesis import strategies as st

from bridge.mqtt.filters import Filters
from tests.unit.test_fuzz import FUZZ

levels = st.sampled_from(["a", "b", "c", ""])
# MQTT topic names are at least one character long (aiomqtt.Topic refuses "")
topics = st.lists(levels, min_size=1, max_size=4).map("/".join).filter(bool)
filters = st.builds(
    lambda head, tail: "/".join(head + tail),
    st.lists(levels | st.just("+"), min_size=0, max_size=4),
    st.sampled_from([[], ["#"]]),
).filter(bool)


@FUZZ
@given(patterns=st.lists(filters, max_size=12), topic=topics)
def test_the_index_matches_what_each_filter_matches(patterns: list[str], topic: str) -> None:
    index = Filters()
    for pattern in patterns:
        index.add(pattern)
    expected = [p for p in dict.fromkeys(patterns) if aiomqtt.Topic(topic).matches(p)]
    assert index.match(topic) == expected


def test_examples() -> None:
    index = Filters()
    for pattern in ("goe/c1/set", "goe/c1/+/set", "goe/#", "homeassistant/status", "#"):
        index.add(pattern)
    assert index.match("goe/c1/current_limit_a/set") == ["goe/c1/+/set", "goe/#", "#"]
    assert index.match("goe") == ["goe/#", "#"]
    assert index.match("goe/c1/set") == ["goe/c1/set", "goe/#", "#"]
    assert index.match("other") == ["#"]
    assert "goe/c1/set" in index and "goe/c2/set" not in index
