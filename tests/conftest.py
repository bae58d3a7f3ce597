"""Shared test plumbing: fixture payloads, free ports, the simulator over real HTTP."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.goe.model import ApiVersion
from bridge.simulator.charger import SimCharger
from bridge.simulator.http import HttpFrontend

ROOT = Path(__file__).resolve().parents[1]
# Real charger payloads, with where each came from in SOURCES.md beside them.
FIXTURES = ROOT / "tests" / "fixtures" / "goe"


def fixture_path(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():
        pytest.fail(f"fixture {path} missing (see tests/fixtures/goe/SOURCES.md)")
    return path


def load_fixture(name: str) -> Any:
    return json.loads(fixture_path(name).read_text("utf-8"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long tests first, longest first: with several workers (`./dev test` runs
    pytest-xdist with `--dist loadgroup`, which hands out one test at a time) the run ends
    when its last test does, and a long test started last would run alone at the end."""

    def expected_s(item: pytest.Item) -> float:
        mark = item.get_closest_marker("slow")
        return float(mark.args[0]) if mark is not None and mark.args else 0.0

    items.sort(key=expected_s, reverse=True)  # stable: the rest keep their order


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def sim_v2() -> AsyncIterator[HttpFrontend]:
    async with HttpFrontend(SimCharger(api=ApiVersion.V2, alw_delay_s=0.05)) as fe:
        yield fe


@pytest.fixture
async def sim_v1() -> AsyncIterator[HttpFrontend]:
    async with HttpFrontend(SimCharger(api=ApiVersion.V1)) as fe:
        yield fe


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Any]:
    from tests.mqtt_helpers import run_mosquitto

    with run_mosquitto() as broker:
        yield broker


@pytest.fixture
def base_topic() -> str:
    """A unique base topic per test, so tests on the shared broker never see each other."""
    import uuid

    return f"t{uuid.uuid4().hex[:10]}"
