"""Cloud v1 and v2 transports against the simulator's cloud front-end over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bridge.goe.model import ApiVersion, ChargerUnavailable, WriteRejected
from bridge.goe.transports.cloud import CloudV1Transport, CloudV2Transport, RateLimited
from bridge.simulator.charger import SimCharger
from bridge.simulator.cloud import CloudFrontend, CloudState

TOKEN = "s3cr3t-token"


@pytest.fixture
async def cloud_v1() -> AsyncIterator[CloudFrontend]:
    async with CloudFrontend(
        CloudState(SimCharger(api=ApiVersion.V1, serial="012345"), TOKEN)
    ) as fe:
        yield fe


@pytest.fixture
async def cloud_v2() -> AsyncIterator[CloudFrontend]:
    async with CloudFrontend(
        CloudState(SimCharger(api=ApiVersion.V2, serial="072246"), TOKEN)
    ) as fe:
        yield fe


async def test_v1_status_is_unwrapped_with_its_age(cloud_v1: CloudFrontend) -> None:
    t = CloudV1Transport(TOKEN, base_url=cloud_v1.url)
    status = await t.read_status()
    assert (status.api_version, status.serial, status.car_state) == (
        ApiVersion.V1,
        "012345",
        "idle",
    )
    assert status.data_age_s == 0.347
    await t.close()


@pytest.mark.parametrize(
    ("token", "message"),
    [("", "no token"), ("nope", "wrong token")],
)
async def test_v1_token_errors_are_clear(cloud_v1: CloudFrontend, token: str, message: str) -> None:
    t = CloudV1Transport(token, base_url=cloud_v1.url)
    with pytest.raises(ChargerUnavailable, match=f"the go-e cloud says: {message}"):
        await t.read_status()
    await t.close()


async def test_v1_rate_limiting_is_honoured(cloud_v1: CloudFrontend) -> None:
    cloud_v1.state.min_status_interval_s = 60
    now = [1000.0]
    t = CloudV1Transport(
        TOKEN, base_url=cloud_v1.url, rate_limit_backoff_s=300, clock=lambda: now[0]
    )
    await t.read_status()
    with pytest.raises(RateLimited, match="next try in 300 s"):
        await t.read_status()
    sent = len(cloud_v1.state.requests)
    # within the backoff nothing is sent at all
    now[0] += 299
    with pytest.raises(RateLimited):
        await t.read_status()
    assert len(cloud_v1.state.requests) == sent
    # after it, one request goes out; a second rate limit doubles the wait
    now[0] += 2
    with pytest.raises(RateLimited, match="next try in 600 s"):
        await t.read_status()
    assert len(cloud_v1.state.requests) == sent + 1
    await t.close()


async def test_v1_write_is_forwarded_and_the_next_read_shows_it(cloud_v1: CloudFrontend) -> None:
    t = CloudV1Transport(TOKEN, base_url=cloud_v1.url)
    await t.write({"amx": 10, "alw": 0})
    status = await t.read_status()
    assert (status.current_limit_a, status.allow_charging) == (10, False)
    assert [(w.key, w.value, w.via) for w in cloud_v1.state.charger.writes] == [
        ("amx", 10, "cloud-v1"), ("alw", 0, "cloud-v1"),
    ]  # fmt: skip
    await t.close()


async def test_v2_status_with_bearer_token(cloud_v2: CloudFrontend) -> None:
    t = CloudV2Transport("072246", TOKEN, base_url=cloud_v2.url)
    status = await t.read_status()
    assert (status.api_version, status.serial, status.firmware) == (ApiVersion.V2, "072246", "56.9")
    assert status.data_age_s is not None and 0 <= status.data_age_s < 60
    # later reads ask only for the keys the bridge decodes
    await t.read_status()
    assert cloud_v2.state.requests[-1] == (cloud_v2.state.requests[-1][0], "/api/status")
    await t.close()


async def test_v2_403_and_404_are_clear_states(cloud_v2: CloudFrontend) -> None:
    t = CloudV2Transport("072246", TOKEN, base_url=cloud_v2.url)
    cloud_v2.state.offline = True
    with pytest.raises(
        ChargerUnavailable,
        match="HTTP 403: the charger is offline, or the cloud API is not enabled",
    ):
        await t.read_status()
    cloud_v2.state.offline = False
    cloud_v2.state.outdated = True
    with pytest.raises(
        ChargerUnavailable, match=r"HTTP 404: the cloud has no recent data .*Data is outdated"
    ):
        await t.read_status()
    cloud_v2.state.outdated = False
    assert (await t.read_status()).car_state == "idle"
    bad = CloudV2Transport("072246", "wrong", base_url=cloud_v2.url)
    with pytest.raises(ChargerUnavailable, match="HTTP 403"):
        await bad.read_status()
    await t.close()
    await bad.close()


async def test_v2_set_202_is_forwarded_then_verified_by_reading(cloud_v2: CloudFrontend) -> None:
    t = CloudV2Transport("072246", TOKEN, base_url=cloud_v2.url)
    await t.read_status()
    await t.write({"amp": 12})
    assert (await t.read_status()).current_limit_a == 12
    with pytest.raises(WriteRejected) as info:
        await t.write({"amp": 5})
    assert info.value.reason == "amp: failed: Value 5 exceeds range 6 to 32 (5)"
    await t.close()


async def test_tokens_never_appear_in_errors(cloud_v2: CloudFrontend) -> None:
    from tests.conftest import free_port

    t = CloudV1Transport(TOKEN, base_url=f"http://127.0.0.1:{free_port()}", timeout_s=1)
    with pytest.raises(ChargerUnavailable) as info:
        await t.read_status()
    assert TOKEN not in str(info.value)
    await t.close()
