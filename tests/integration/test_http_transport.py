"""The local HTTP transport against the simulator over real HTTP."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bridge.goe import codec_v2
from bridge.goe.model import ApiVersion, ChargerUnavailable, CodecError, WriteRejected
from bridge.goe.transports.http import NOT_ENABLED_HINT, HttpTransport
from bridge.simulator.charger import SimCharger
from bridge.simulator.http import HttpFrontend


def transport(fe: HttpFrontend, **kw: object) -> HttpTransport:
    return HttpTransport("127.0.0.1", fe.port, **kw)  # type: ignore[arg-type]


async def test_detects_v2_and_reads_the_full_status_once(sim_v2: HttpFrontend) -> None:
    t = transport(sim_v2)
    status = await t.read_status()
    assert t.api is ApiVersion.V2
    assert (status.api_version, status.firmware, status.serial) == (ApiVersion.V2, "56.9", "000001")
    assert status.hardware == "go-eCharger" and status.variant_kw == 11
    assert "wke" not in status.raw and "cak" not in status.raw
    await t.close()


async def test_a_v2_charger_is_detected_with_the_full_read_it_needs_anyway(
    sim_v2: HttpFrontend,
) -> None:
    """Start-up costs two requests (the full status, then the first filtered poll), not a
    filtered probe before the full read: 500 chargers start with 500 requests fewer."""
    t = transport(sim_v2)
    await t.read_status()
    assert sim_v2.charger.requests == 2
    await t.read_status()
    assert sim_v2.charger.requests == 3
    await t.close()


async def test_without_the_raw_mirror_only_what_decode_reads_is_kept(
    sim_v2: HttpFrontend,
) -> None:
    """publish.raw off: of the start-up status only identity and card names stay in memory,
    and every field decodes as with the whole status kept."""
    sim_v2.charger.card_names = ["Anna", "Ben"]
    sim_v2.charger.scan_card("Ben")
    full, lean = transport(sim_v2), transport(sim_v2, keep_raw=False)
    a, b = await full.read_status(), await lean.read_status()
    assert a.fields() == b.fields()
    assert (b.serial, b.hardware, b.variant_kw, b.rfid_card) == ("000001", "go-eCharger", 11, "Ben")
    assert "oem" in a.raw and "oem" not in b.raw  # a configuration key nothing decodes
    assert set(b.raw) <= set(codec_v2.POLL_KEYS) | codec_v2.STATIC_KEYS
    await full.close()
    await lean.close()


async def test_detects_v1(sim_v1: HttpFrontend) -> None:
    t = transport(sim_v1)
    status = await t.read_status()
    assert t.api is ApiVersion.V1
    assert (status.firmware, status.serial, status.car_state) == ("041.0", "000001", "idle")
    await t.close()


async def test_detects_v1_legacy_when_v2_is_off() -> None:
    # A charger with only the legacy API switched on: /api/status 404, /status answers.
    async with HttpFrontend(SimCharger(api=ApiVersion.V1, firmware="051.4")) as fe:
        t = transport(fe)
        await t.read_status()
        assert t.api is ApiVersion.V1
        await t.close()


async def test_both_apis_off_tells_the_user_what_to_enable(sim_v2: HttpFrontend) -> None:
    sim_v2.charger.inject("not_found", count=2)
    t = transport(sim_v2)
    with pytest.raises(ChargerUnavailable) as info:
        await t.read_status()
    assert str(info.value) == NOT_ENABLED_HINT
    assert "HTTP API v2" in str(info.value)
    await t.close()


async def test_v2_writes_are_verified(sim_v2: HttpFrontend) -> None:
    sim = sim_v2.charger
    t = transport(sim_v2)
    await t.read_status()
    await t.write({"amp": 10, "frc": 2})
    assert (sim.amp, sim.frc) == (10, 2)
    assert [(w.key, w.value, w.via) for w in sim.writes] == [
        ("amp", 10, "http-v2"),
        ("frc", 2, "http-v2"),
    ]
    await t.close()


@pytest.mark.parametrize(
    ("changes", "key", "reason"),
    [
        ({"amp": 5}, "amp", "amp: failed: Value 5 exceeds range 6 to 32 (5)"),
        ({"amp": 33}, "amp", "amp: failed: Value 33 exceeds range 6 to 32 (33)"),
        ({"frc": 3}, "frc", "frc: failed: Value 3 exceeds range 0 to 2 (3)"),
    ],
)
async def test_v2_rejections_carry_the_chargers_text(
    sim_v2: HttpFrontend, changes: dict[str, int], key: str, reason: str
) -> None:
    t = transport(sim_v2)
    await t.read_status()
    with pytest.raises(WriteRejected) as info:
        await t.write(changes)
    assert (info.value.key, info.value.reason) == (key, reason)
    assert sim_v2.charger.amp == 16  # unchanged
    await t.close()


async def test_v2_read_only_key_is_refused_by_the_charger(sim_v2: HttpFrontend) -> None:
    t = transport(sim_v2)
    await t.read_status()
    # The bridge never writes alw on v2; ask the simulator directly as a client would.
    status, answer = sim_v2.charger.set_v2({"alw": "true"})
    assert status == 500
    assert answer == {"alw": "alw: tried to set api key without setter"}
    with pytest.raises(ValueError, match="not a key the bridge writes"):
        await t.write({"alw": True})
    await t.close()


async def test_v2_http_500_without_json_is_a_rejection(sim_v2: HttpFrontend) -> None:
    t = transport(sim_v2)
    await t.read_status()
    sim_v2.charger.inject("http500")
    with pytest.raises(WriteRejected, match="HTTP 500"):
        await t.write({"amp": 10})
    assert sim_v2.charger.amp == 16
    await t.close()


async def test_v1_writes_use_amx_and_are_verified_from_the_returned_status(
    sim_v1: HttpFrontend,
) -> None:
    sim = sim_v1.charger
    t = transport(sim_v1)
    await t.read_status()
    await t.write({"amx": 10, "alw": 0})
    assert (sim.amp, sim.amp_eeprom, sim.alw, sim.eeprom_writes) == (10, 16, False, 0)
    sim.reboot()  # amx is volatile
    assert sim.amp == 16
    await t.close()


async def test_v1_unchanged_value_is_a_verification_failure(sim_v1: HttpFrontend) -> None:
    t = transport(sim_v1)
    await t.read_status()
    with pytest.raises(WriteRejected) as info:
        await t.write({"amx": 40})
    assert info.value.reason == "not applied: status shows amp='16' after amx=40"
    await t.close()


async def test_v1_commands_go_out_with_a_raw_equals_sign(sim_v1: HttpFrontend) -> None:
    """`/mqtt?payload=amx=16`, as evcc and openWB 1.9 send it; the simulator does not decode
    the query for the bridge, so `amx%3D16` is refused as a real charger may refuse it."""
    import aiohttp

    t = transport(sim_v1)
    await t.read_status()
    await t.write({"amx": 11})
    assert sim_v1.charger.amp == 11
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{sim_v1.url}/mqtt?payload=amx%3D12") as answer,  # the encoded form
    ):
        await answer.read()
    assert sim_v1.charger.amp == 11  # not understood, nothing changed
    await t.close()


async def test_v1_never_writes_amp_on_firmware_040_and_later(sim_v1: HttpFrontend) -> None:
    t = transport(sim_v1)
    await t.read_status()
    with pytest.raises(ValueError, match="amx"):
        await t.write({"amp": 10})
    assert sim_v1.charger.eeprom_writes == 0
    await t.close()


async def test_v1_amx_is_unknown_on_firmware_033() -> None:
    async with HttpFrontend(SimCharger(api=ApiVersion.V1, firmware="033")) as fe:
        t = transport(fe)
        await t.read_status()
        with pytest.raises(WriteRejected, match="not applied"):
            await t.write({"amx": 10})
        await t.write({"amp": 10})  # the only way on 033 (evcc #2711)
        assert fe.charger.eeprom_writes == 1
        await t.close()


async def test_timeout_is_reported_within_the_configured_time(sim_v2: HttpFrontend) -> None:
    t = transport(sim_v2, timeout_s=0.3)
    await t.read_status()
    # the simulator answers after 5 s: without the configured timeout the read would succeed
    # then, so the error alone shows the timeout applied (no wall-clock bound needed)
    sim_v2.charger.inject("timeout", delay_s=5)
    with pytest.raises(ChargerUnavailable, match=r"no answer within 0.3 s"):
        await t.read_status()
    await t.close()


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        ("http500", ChargerUnavailable, "HTTP 500"),
        ("truncated", CodecError, "answer is not valid JSON"),
        ("wrong_type", CodecError, "car: expected an integer, got {'unexpected': True}"),
    ],
)
async def test_broken_answers_are_communication_errors(
    sim_v2: HttpFrontend, kind: str, error: type[Exception], message: str
) -> None:
    t = transport(sim_v2)
    await t.read_status()
    sim_v2.charger.inject(kind)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        await t.read_status()
    assert (await t.read_status()).car_state == "idle"  # recovers on the next poll
    await t.close()


async def test_all_zero_nrg_while_charging_is_a_meter_fault(sim_v2: HttpFrontend) -> None:
    """fw 60.4 (go-eCharger-API-v2 #321): a charging car at 0 V is no measurement."""
    sim_v2.charger.plug()
    sim_v2.charger.set_v2({"frc": "2"})
    t = transport(sim_v2)
    await t.read_status()
    sim_v2.charger.inject("zero_nrg")
    status = await t.read_status()
    assert status.charging and status.meter_fault is True
    assert status.power_w is None and status.voltage_l1_v is None
    await t.close()


async def test_detection_is_redone_after_repeated_failures() -> None:
    sim = SimCharger(api=ApiVersion.V2)
    async with HttpFrontend(sim) as fe:
        t = transport(fe)
        await t.read_status()
        assert t.api is ApiVersion.V2
        # The user switches the charger to the legacy API only.
        sim.api = ApiVersion.V1
        for _ in range(3):
            with pytest.raises(ChargerUnavailable):
                await t.read_status()
        assert t.api is None
        await t.read_status()
        assert t.api is ApiVersion.V1
        await t.close()


async def test_one_request_in_flight(sim_v2: HttpFrontend) -> None:
    t = transport(sim_v2)
    await t.read_status()
    sim_v2.charger.inject("slow", count=6, delay_s=0.1)
    results = await asyncio.gather(
        *(t.read_status() for _ in range(3)), t.write({"amp": 12}), t.read_status()
    )
    assert results[0] is not None and results[0].car_state == "idle"
    assert sim_v2.charger.max_in_flight == 1
    await t.close()


async def test_unreachable_host_is_unavailable() -> None:
    from tests.conftest import free_port

    t = HttpTransport("127.0.0.1", free_port(), timeout_s=1)
    with pytest.raises(ChargerUnavailable, match="GET /api/status"):
        await t.read_status()
    await t.close()


async def test_odd_values_cost_only_themselves_not_the_poll(sim_v2: HttpFrontend) -> None:
    t = transport(sim_v2)
    await t.read_status()
    sim_v2.charger.inject("odd_values", 1)
    status = await t.read_status()  # no CodecError: the charger is not "unreachable"
    assert {d.split(":")[0].split("[")[0] for d in status.dropped} == {"pha", "tma"}
    assert status.car_state is not None and status.power_w is not None
    assert status.phase_l1_available is None and status.temperature_c is None
    await t.close()


async def test_firmware_042_gets_its_stored_amp_raised_once_then_regulated_with_amx() -> None:
    """HW V2 firmware 042.0 ignores amx above the stored amp (go-eCharger-API-v1 #114): with a
    stored 6 A the current could never be raised. The bridge raises the stored value once to
    the configured maximum (one flash write), then regulates with amx below it."""
    sim = SimCharger(api=ApiVersion.V1, firmware="042.0")
    sim.amp = sim.amp_eeprom = 6
    async with HttpFrontend(sim) as fe:
        t = transport(fe, max_current_a=16)
        await t.read_status()
        await t.write({"amx": 10})
        assert sim.amp == 10 and sim.amp_eeprom == 16 and sim.eeprom_writes == 1
        await t.write({"amx": 14})
        await t.write({"amx": 8})
        assert sim.amp == 8 and sim.eeprom_writes == 1  # never again
        await t.close()


async def test_a_polled_key_that_vanished_is_not_frozen_at_its_start_up_value() -> None:
    sim = SimCharger(api=ApiVersion.V2, alw_delay_s=0)
    sim.plug()
    sim.set_v2({"frc": "2"})
    async with HttpFrontend(sim) as fe:
        t = transport(fe)
        assert (await t.read_status()).effective_current_a is not None  # start-up: charging
        sim.inject("missing_key", 1)  # the poll comes without `acu`
        assert (await t.read_status()).effective_current_a is None
        await t.close()


@pytest.mark.parametrize("firmware", ["051.3", "40.0", "56.9"])
async def test_the_status_filter_takes_the_form_the_firmware_knows(firmware: str) -> None:
    """go-e http-en.md: the comma-separated filter since 051.4, a JSON array of about ten keys
    before. The simulator refuses the form its firmware would refuse."""
    sim = SimCharger(api=ApiVersion.V2, firmware=firmware)
    async with HttpFrontend(sim) as fe:
        t = transport(fe)
        status = await t.read_status()
        assert status.firmware == firmware and status.car_state is not None
        assert status.power_w is not None and status.energy_total_wh is not None
        await t.close()
    async with (
        HttpFrontend(SimCharger(api=ApiVersion.V2, firmware="051.3")) as old,
        aiohttp.ClientSession() as session,
        session.get(f"{old.url}/api/status?filter=car,alw") as answer,
    ):
        assert answer.status == 400  # the comma form on 051.3


async def test_a_firmware_update_rereads_identity_and_configuration(sim_v2: HttpFrontend) -> None:
    t = transport(sim_v2)
    assert (await t.read_status()).firmware == "56.9"
    requests = sim_v2.charger.requests
    sim_v2.charger.firmware = "60.4"  # updated and rebooted
    sim_v2.charger.variant_kw = 22
    status = await t.read_status()
    assert status.firmware == "60.4" and status.variant_kw == 22  # `var` is not polled
    assert sim_v2.charger.requests - requests == 2  # the poll, then the full status once
    await t.read_status()
    assert sim_v2.charger.requests - requests == 3
    await t.close()


async def test_an_answer_like_the_last_one_gives_the_status_a_full_decode_gives(
    sim_v2: HttpFrontend,
) -> None:
    """The same bytes again are neither parsed nor decoded again; what changed is seen, and
    each status is what decoding its whole payload gives (the poll has no secret key, so
    `raw` is that payload)."""
    t = transport(sim_v2)
    first = await t.read_status()
    assert await t.read_status() is first  # nothing changed: the same (frozen) status
    sim_v2.charger.set_v2({"amp": "10", "psm": "1"})
    for _ in range(2):
        status = await t.read_status()
        expected = codec_v2.decode(status.raw)
        assert (status, status.dropped) == (expected, expected.dropped)
        assert (status.current_limit_a, status.phases) == (10, 1)
    await t.close()


async def test_v1_single_phase_with_l1_on_the_n_sensor_is_read_by_the_apps_rule() -> None:
    """API v1 EN doc, nrg "App logic": with only L1 present (floor(pha/8) == 1) and
    nrg[3] > nrg[0], L1 is copied from the N sensor (indices 3/10/15); N keeps its values."""
    from bridge.simulator.charger import Car

    sim = SimCharger(api=ApiVersion.V1, l1_on_n=True)
    sim.plug(Car(max_current_a=16, energy_needed_wh=1e9))
    async with HttpFrontend(sim) as fe:
        t = transport(fe)
        status = await t.read_status()
        assert status.voltage_l1_v == status.voltage_n_v == 230
        assert status.power_l1_w == status.power_n_w == 3700
        assert status.phase_l2_available is False and status.phases_in_use == 1
        await t.close()


@pytest.mark.parametrize(
    "answer",
    [
        '{"fwv":"042.0","amx":"6","amp":1e999}',  # the stored amp: not an integer at all
        '{"fwv":"042.0","amx":"6","amp":"10","ama":1e999,"cbl":"--5"}',  # the limit in effect
    ],
)
async def test_a_write_answer_with_numbers_no_integer_holds_is_a_rejection(answer: str) -> None:
    """A v1 write's answer where go-e sends integers: `1e999` (JSON allows it, Python reads
    infinity) or `--5` is a rejected write, not an OverflowError or ValueError out of the
    transport (the reconciler catches charger errors only: that error ended the bridge)."""

    from aiohttp import web

    from tests.conftest import load_fixture

    status = load_fixture("v1-status-fw041-finished.json")
    status |= {"fwv": "042.0", "amx": "6"}

    async def handle(request: web.Request) -> web.Response:
        if request.path == "/status":
            return web.json_response(status)
        if request.path == "/mqtt":
            return web.Response(text=answer, content_type="application/json")
        return web.Response(status=404)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    t = HttpTransport("127.0.0.1", port, max_current_a=16)
    try:
        await t.read_status()
        assert t.api is ApiVersion.V1
        with pytest.raises(WriteRejected):
            await t.write({"amx": 16})
    finally:
        await t.close()
        await runner.cleanup()
