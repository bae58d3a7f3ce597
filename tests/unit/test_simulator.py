"""The simulator's measurement noise (what the benchmarks poll)."""

from __future__ import annotations

from bridge.goe import codec_v2
from bridge.goe.model import ApiVersion
from bridge.simulator.charger import Car, SimCharger


def _charging(noise: bool) -> SimCharger:
    sim = SimCharger(api=ApiVersion.V2, noise=noise)
    sim.plug(Car(max_current_a=16))
    sim.advance()
    return sim


def test_without_noise_every_read_is_the_same() -> None:
    sim = _charging(noise=False)
    first = sim.status_v2(list(codec_v2.POLL_KEYS))
    assert all(sim.status_v2(list(codec_v2.POLL_KEYS))["nrg"] == first["nrg"] for _ in range(5))
    assert first["nrg"][:3] == [230.0, 231.0, 229.0]


def test_noise_moves_the_readings_like_a_real_charger_within_their_spread() -> None:
    sim = _charging(noise=True)
    reads = [sim.status_v2(list(codec_v2.POLL_KEYS)) for _ in range(50)]
    volts = {tuple(r["nrg"][:3]) for r in reads}
    assert len(volts) > 10  # the capture moved within 2 s (tests/fixtures/goe SOURCES.md)
    for r in reads:
        nrg = r["nrg"]
        assert all(abs(v - n) <= 1 for v, n in zip(nrg[:3], (230, 231, 229), strict=True))
        assert all(abs(a - 16) <= 0.1 + 1e-9 for a in nrg[4:7])
        assert nrg[11] == round(sum(nrg[7:10]), 1)  # the total is the sum of the phases
        assert 49.88 <= r["fhz"] <= 50.08
        assert -62 <= r["rssi"] <= -60
        status = codec_v2.decode(r)
        assert status.dropped == ()
        assert status.charging and status.phases_in_use == 3


def test_noise_is_reproducible_per_serial() -> None:
    a, b = _charging(noise=True), _charging(noise=True)
    assert a.status_v2(["nrg", "fhz"]) == b.status_v2(["nrg", "fhz"])
