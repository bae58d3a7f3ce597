"""The CLI as a user runs it: a subprocess of the installed `goe-bridge` entry point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge import __version__
from tests.conftest import FIXTURES, ROOT, free_port


def goe_bridge() -> list[str]:
    exe = shutil.which("goe-bridge", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "bridge"]


def run(
    *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*goe_bridge(), *args], input=stdin, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False,
    )  # fmt: skip


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"goe-bridge {__version__}"


def test_check_config_ok_prints_the_normalized_config() -> None:
    result = run("check-config", "-c", str(ROOT / "config.example.yaml"))
    assert result.returncode == 0, result.stderr
    cfg = json.loads(result.stdout)
    assert cfg["chargers"][0]["id"] == "garage"
    assert "OK, 1 charger(s)" in result.stderr


def test_check_config_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "brokers: {home: {port: x}}\nchargers: [{id: g, connection: {type: http}, colour: red}]\n"
    )
    result = run("check-config", "-c", str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{bad}: 3 problem(s):" in result.stderr
    assert "brokers.home.port: expected an integer, got 'x'" in result.stderr
    assert "chargers[0].colour: unknown key" in result.stderr
    assert "chargers[0].connection.host: required" in result.stderr


def test_check_config_missing_file_exits_2(tmp_path: Path) -> None:
    result = run("check-config", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr


@pytest.mark.parametrize(
    ("name", "api", "power", "total"),
    [
        ("v1-status-fw033-idle.json", "v1", 0.0, 0.0),
        ("v1-status-fw041-finished.json", "v1", 0.0, 9_593_000.0),
        ("seed-v1-example.json", "v1", 0.0, 12_000.0),
        ("cloud-v1-status.json", "v1", 0.0, 594_000.0),
        ("v2-status-full-idle.json", "v2", 0.0, 0.0),
        ("v2-mqtt-capture-excerpt.txt", "v2", 0.0, 0.0),
    ],
)
def test_decode_every_fixture(name: str, api: str, power: float, total: float) -> None:
    result = run("decode", str(FIXTURES / name))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["api_version"] == api
    assert out["power_w"] == power
    assert out["energy_total_wh"] == total


def test_decode_from_stdin_with_forced_api() -> None:
    payload = {
        "car": "2",
        "nrg": [230, 230, 230, 1, 160, 160, 160, 37, 37, 37, 0, 110, 99, 99, 99, 0],
    }
    result = run("decode", "-", "--api", "v1", stdin=json.dumps(payload))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert (out["current_l1_a"], out["power_l1_w"], out["power_w"]) == (16.0, 3700.0, 1100.0)


def test_decode_garbage_is_a_clear_error() -> None:
    result = run("decode", "-", stdin='{"car": "x"}')
    assert result.returncode == 1
    assert result.stderr.strip() == "error: car: expected an integer, got 'x'"


@pytest.fixture(params=["v1", "v2"])
def simulator(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    port = free_port()
    proc = subprocess.Popen(
        [*goe_bridge(), "simulate", "--api", request.param, "--port", str(port),
         "--serial", "072246"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/_sim/state", timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("simulator did not start: " + (proc.stderr.read() if proc.stderr else ""))
    yield request.param, url
    proc.terminate()
    assert proc.wait(timeout=10) == 0


def test_probe_identifies_the_simulator(simulator: tuple[str, str]) -> None:
    api, url = simulator
    result = run("probe", url)
    assert result.returncode == 0, result.stderr
    firmware = "56.9" if api == "v2" else "041.0"
    assert f"API version : {api} (local HTTP)" in result.stdout
    assert f"firmware    : {firmware}" in result.stdout
    assert "serial      : 072246" in result.stdout
    assert "car_state" in result.stdout and "idle" in result.stdout
    as_json = json.loads(run("probe", url, "--json").stdout)
    assert as_json["serial"] == "072246"


def test_probe_unreachable_exits_1() -> None:
    result = run("probe", f"http://127.0.0.1:{free_port()}", "--timeout", "1")
    assert result.returncode == 1
    assert result.stderr.startswith("error: http://127.0.0.1:")


def _simulator_with_cloud(api: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*goe_bridge(), "simulate", "--api", api, "--port", str(free_port()), "--serial", "072246",
         "--cloud-port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for _ in range(3):
        line = proc.stdout.readline()
        if "go-e cloud API" in line:
            return proc, line.rsplit(" on ", 1)[1].strip()
    proc.kill()
    pytest.fail("the simulator did not print its cloud URL")


def test_probe_cloud_v2_and_v1(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("sim-token\n")
    v2, v2_url = _simulator_with_cloud("v2")
    v1, v1_url = _simulator_with_cloud("v1")
    try:
        result = run(
            "probe",
            "--cloud",
            "v2",
            "--serial",
            "072246",
            "--token-file",
            str(token),
            "--base-url",
            v2_url,
        )
        assert result.returncode == 0, result.stderr
        assert "API version : v2 (cloud v2)" in result.stdout
        assert "serial      : 072246" in result.stdout
        result = run("probe", "--cloud", "v1", "--token-file", str(token), "--base-url", v1_url)
        assert result.returncode == 0, result.stderr
        assert "API version : v1 (cloud v1)" in result.stdout
        bad = tmp_path / "bad"
        bad.write_text("not-the-token")
        result = run("probe", "--cloud", "v1", "--token-file", str(bad), "--base-url", v1_url)
        assert result.returncode == 1
        assert "wrong token" in result.stderr
        assert "not-the-token" not in result.stderr
    finally:
        for proc in (v1, v2):
            proc.terminate()
            proc.wait(10)


@pytest.mark.slow(15)
def test_probe_mqtt_finds_the_simulated_charger(mosquitto: object) -> None:
    broker = f"{mosquitto.host}:{mosquitto.port}"  # type: ignore[attr-defined]
    proc = subprocess.Popen(
        [*goe_bridge(), "simulate", "--port", str(free_port()), "--serial", "654321", "--mqtt", broker,
         "--mqtt-prefix", "/go-eCharger"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        result = run("probe", "--mqtt", broker, "--serial", "654321")
        assert result.returncode == 0, result.stderr
        assert "go-e charger 654321 on MQTT" in result.stdout
        assert "(/go-eCharger/654321)" in result.stdout
        assert "API version : v2 (go-e MQTT)" in result.stdout
        result = run("probe", "--mqtt", broker, "--serial", "999999", "--timeout", "1")
        assert result.returncode == 1
        assert "no go-e status" in result.stderr
    finally:
        proc.terminate()
        proc.wait(10)


def test_check_config_refuses_a_config_without_chargers(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    result = run("check-config", "-c", str(empty))
    assert result.returncode == 2
    assert "chargers: no charger configured" in result.stderr


def test_check_config_from_the_environment_names_where_it_looked(tmp_path: Path) -> None:
    result = subprocess.run(
        [*goe_bridge(), "check-config"], capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**os.environ, "GOE_BRIDGE__BROKERS__HOME__HOST": "localhost",
             "GOE_BRIDGE__CHARGERS__0__CONNECTION__HOST": "192.168.178.50"}, check=False,
    )  # fmt: skip
    if Path("/etc/goe-bridge/config.yaml").exists():
        pytest.skip("this machine has /etc/goe-bridge/config.yaml")
    assert result.returncode == 0, result.stderr
    assert "None" not in result.stderr
    assert "no config file (no ./config.yaml or /etc/goe-bridge/config.yaml)" in result.stderr


def test_check_config_names_an_unreadable_tls_file(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"brokers: {{home: {{host: localhost, tls: {{enabled: true, ca_file: {tmp_path}/ca.pem}}}}}}\n"
        "chargers: [{id: g, connection: {type: http, host: 192.168.178.50}}]\n"
    )
    result = run("check-config", "-c", str(cfg))
    assert result.returncode == 2
    assert f"brokers.home.tls.ca_file: cannot read {tmp_path}/ca.pem: No such file" in result.stderr


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder every user can enter (pytest's tmp_path is private to root)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        yield Path(tmp)


@pytest.mark.skipif(os.geteuid() != 0, reason="checking as another user needs root")
def test_check_config_as_the_service_user_finds_a_file_it_cannot_read(shared_dir: Path) -> None:
    secret = shared_dir / "mqtt_password"
    secret.write_text("0123secret\n")
    secret.chmod(0o600)  # root's alone: the service user cannot read it
    cfg = shared_dir / "config.yaml"
    cfg.write_text(
        f"brokers: {{home: {{host: localhost, username: goe, password_file: {secret}}}}}\n"
        "chargers: [{id: g, connection: {type: http, host: 192.168.178.50}}]\n"
    )
    cfg.chmod(0o644)
    assert run("check-config", "-c", str(cfg)).returncode == 0  # as root: fine
    result = run("check-config", "-c", str(cfg), "--user", "nobody")
    assert result.returncode == 2, result.stderr
    assert "checking as the user nobody" in result.stderr
    assert f"brokers.home.password_file: cannot read {secret}: Permission denied" in result.stderr
    assert "0123secret" not in result.stdout + result.stderr
    # readable for the user's group: OK
    nogroup = subprocess.run(["id", "-gn", "nobody"], capture_output=True, text=True, check=True)
    shutil.chown(secret, group=nogroup.stdout.strip())
    secret.chmod(0o640)
    result = run("check-config", "-c", str(cfg), "--user", "nobody")
    assert result.returncode == 0, result.stderr
    assert "OK for the user nobody, 1 charger(s)" in result.stderr


def test_check_config_takes_the_user_from_the_installed_unit(tmp_path: Path) -> None:
    from bridge.__main__ import service_user

    unit = tmp_path / "goe-bridge.service"
    unit.write_text((ROOT / "systemd" / "goe-bridge.service").read_text())
    assert service_user("/etc/goe-bridge/config.yaml", unit) == "goe-bridge"
    assert service_user(str(tmp_path / "other.yaml"), unit) is None
    assert service_user("/etc/goe-bridge/config.yaml", tmp_path / "absent.service") is None


def test_install_sh_help_is_whole() -> None:
    result = subprocess.run(
        ["sh", str(ROOT / "systemd" / "install.sh"), "--help"], capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    assert result.stdout.rstrip().endswith("(its scripts name PREFIX, not the staging folder).")
    assert "set -eu" not in result.stdout


def test_probe_errors_do_not_name_a_tls_context() -> None:
    result = run("probe", f"http://127.0.0.1:{free_port()}", "--timeout", "1")
    assert result.returncode == 1
    assert "ssl:" not in result.stderr and "Cannot connect to host" in result.stderr


def test_simulate_takes_a_firmware_profile() -> None:
    """`simulate --profile` serves that firmware line; probe sees its API and firmware."""
    assert "unknown profile 'v9'" in run("simulate", "--profile", "v9").stderr
    port = free_port()
    proc = subprocess.Popen(
        [*goe_bridge(), "simulate", "--profile", "v2-042.0", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "(API v1, v2-042.0: HOME+ V2, firmware 042.0" in line, line
        result = run("probe", f"http://127.0.0.1:{port}")
        assert result.returncode == 0, result.stderr
        assert "API version : v1 (local HTTP)" in result.stdout
        assert "042.0" in result.stdout
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_simulate_with_a_broker_port_that_is_no_number_says_so() -> None:
    result = run("simulate", "--mqtt", "localhost:abc")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --mqtt localhost:abc: the port must be a number from 1 to 65535"
    )


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """`goe-bridge check-config | head -1`: the pipe closes long before the output ends
    (a fleet's normalized config is larger than a pipe's buffer)."""
    chargers = "".join(
        f"  - {{id: c{i}, connection: {{type: http, host: 192.0.2.{i % 250 + 1}}}}}\n"
        for i in range(400)
    )
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text(f"brokers: {{home: {{host: localhost}}}}\nchargers:\n{chargers}")
    cfg.chmod(0o600)
    cmd = " ".join([*goe_bridge(), "check-config", "-c", str(cfg)]) + " | head -1"
    result = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=False,
                            cwd=ROOT)  # fmt: skip
    assert result.stdout.strip() == "{"
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
