import random

from bridge.backoff import Backoff


def test_backoff_grows_caps_and_resets() -> None:
    b = Backoff(base_s=1, cap_s=8, rng=random.Random(1))
    assert b.delay() == 0
    delays = [b.failure() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 8, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    b.success()
    assert b.delay() == 0
