"""Capped exponential backoff with full jitter, reset on success (docs/design.md#backoff)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# One generator for every backoff: a Random per instance is 2.5 kB, 1.3 MB for a fleet of
# 500 chargers (bench/floor.py, tracemalloc); tests pass their own seeded one.
_RNG = random.Random()


@dataclass(slots=True)
class Backoff:
    base_s: float = 1.0
    cap_s: float = 60.0
    factor: float = 2.0
    failures: int = 0
    rng: random.Random = field(default=_RNG, repr=False)

    def failure(self) -> float:
        """Record a failure; return how long to wait before the next attempt."""
        self.failures += 1
        return self.delay()

    def delay(self) -> float:
        if self.failures == 0:
            return 0.0
        ceiling = min(self.cap_s, self.base_s * self.factor ** (self.failures - 1))
        # Half fixed, half random: never zero (no tight loop), never in lock-step.
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def success(self) -> None:
        self.failures = 0
