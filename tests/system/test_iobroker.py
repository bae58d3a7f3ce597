"""docs/iobroker.md against the real ioBroker (tests/peers/iobroker.py): js-controller, the
admin and MQTT adapters from npm, the guide's settings, states and commands. The installation
is cached in ~/.cache/goe-bridge-tests (the first run installs it: a few minutes)."""

from __future__ import annotations

import shutil

import pytest

from tests.peers import iobroker


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed: no ioBroker")
@pytest.mark.timeout(1500)
@pytest.mark.slow(60)
@pytest.mark.xdist_group("peers")  # the real peers take turns: each is a CPU-heavy Node.js
def test_the_iobroker_guide_against_the_real_adapter() -> None:
    assert iobroker.main([]) == 0
