"""What ships: the systemd installer, the Dockerfile's steps, the compose file, the Node-RED
flow. No Docker engine here, so the Dockerfile's install, CMD and HEALTHCHECK are reproduced
in a temporary virtual environment."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.goe.model import FIELD_NAMES, ApiVersion
from bridge.publish.fields import CONTROL_KEYS, SETTABLE
from bridge.simulator.charger import SimCharger
from bridge.simulator.http import HttpFrontend
from tests.conftest import ROOT, free_port


def contract_topic(topic: str, base: str = "goe") -> bool:
    """Is this a topic of the published contract (README, docs/design.md#contract)?"""
    parts = topic.split("/")
    if parts in ([base, "bridge", "state"], [base, "bridge", "info"]):
        return True
    if parts[0] != base or len(parts) < 3:
        return False
    rest = parts[2:]
    if rest in (["availability"], ["result"], ["set"]):
        return True
    if len(rest) == 1:
        return rest[0] in FIELD_NAMES
    if len(rest) == 2 and rest[1] == "set":
        return rest[0] in SETTABLE
    if len(rest) == 2 and rest[0] == "control":
        return rest[1] in CONTROL_KEYS
    return False


def test_compose_file() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.example.yml").read_text())
    services = compose["services"]
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    assert "ports" not in services["mosquitto"]  # reachable only inside the compose network
    # the broker's config ships with the repository
    (conf,) = [v for v in services["mosquitto"]["volumes"] if "mosquitto.conf" in v]
    assert (ROOT / conf.split(":")[0]).is_file()
    bridge = services["goe-bridge"]
    assert "./config:/config:ro" in bridge["volumes"]
    env = bridge["environment"]
    # the environment names real config keys
    from bridge import config

    cfg = config.loads(
        (ROOT / "config.example.yaml").read_text(),
        env={"GOE_BRIDGE__BROKERS__HOME__HOST": env["GOE_BRIDGE__BROKERS__HOME__HOST"]},
    )
    assert cfg.brokers["home"].host == "mosquitto"


def test_the_compose_brokers_config_accepts_other_containers(tmp_path: Path) -> None:
    """mosquitto 2 with the shipped config listens beyond its own host: another container is
    another address. Here 127.0.0.2 stands for it (mosquitto's local-only default, without a
    `listener` line, binds 127.0.0.1 and ::1 alone)."""
    from bridge.mqtt.embedded import find_mosquitto

    port = free_port()
    shipped = (ROOT / "docker" / "mosquitto.conf").read_text()
    assert re.search(r"^listener 1883$", shipped, re.M)
    data = tmp_path / "data"
    data.mkdir(mode=0o777)
    data.chmod(0o777)  # mosquitto started as root drops to its own user
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        shipped.replace("listener 1883", f"listener {port}")
        .replace("/mosquitto/data/", f"{data}/")
        .replace("log_dest stdout", "log_dest none")
    )
    proc = subprocess.Popen([find_mosquitto() or "mosquitto", "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                import socket

                with socket.create_connection(("127.0.0.2", port), timeout=1):
                    break
            except OSError:
                assert proc.poll() is None, "mosquitto refused the shipped config"
                assert time.monotonic() < deadline, "nothing listens on 127.0.0.2"
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(10)


def _dockerfile() -> dict[str, Any]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    # only the build stage's steps: the final stage creates a system user
    build_stage = text.split("FROM ", 2)[1]
    runs = re.findall(r"^RUN (.+)$", build_stage, re.M)
    cmd = json.loads(re.search(r"^CMD (\[.+\])$", text, re.M).group(1))  # type: ignore[union-attr]
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.+\])$", text, re.M).group(1))  # type: ignore[union-attr]
    health = json.loads(re.search(r"HEALTHCHECK .*?CMD (\[.+\])", text).group(1))  # type: ignore[union-attr]
    final = text.split("FROM ", 2)[2]
    env = dict(re.findall(r"(GOE_BRIDGE__\w+)=(\S+)", final))
    return {"text": text, "runs": runs, "cmd": cmd, "entrypoint": entry, "healthcheck": health,
            "env": env}  # fmt: skip


def test_dockerfile_shape() -> None:
    d = _dockerfile()
    text = d["text"]
    assert text.count("FROM python:3.11-slim") == 2  # multi-stage
    assert "USER goe" in text and "useradd --system" in text  # non-root
    final = text.split("FROM python:3.11-slim", 2)[2]
    assert "PYTHONUNBUFFERED=1" in final
    assert d["entrypoint"] == ["goe-bridge"]
    assert d["cmd"] == ["run", "-c", "/config/config.yaml"]
    assert d["healthcheck"][:2] == ["goe-bridge", "health"]
    assert "org.opencontainers.image.title" in text
    # a slim final image: no pip or setuptools, byte-compiled in the build stage
    assert "pip uninstall --yes pip setuptools" in text.split("FROM ", 2)[1]
    assert "compileall" in text.split("FROM ", 2)[1]
    assert "pip uninstall --yes pip setuptools wheel" in final


@pytest.mark.xdist_group("pip")  # pip builds and installs: CPU-bound, one at a time
@pytest.mark.timeout(600)  # on a loaded machine pip alone can take minutes
@pytest.mark.slow(20)
async def test_dockerfile_install_cmd_and_healthcheck_in_a_venv(
    mosquitto: Any, tmp_path: Path
) -> None:
    d = _dockerfile()
    venv = tmp_path / "opt" / "goe-bridge"
    # the build stage, with /opt/goe-bridge → a temporary folder and /src → this checkout
    steps = [r.replace("/opt/goe-bridge", str(venv)) for r in d["runs"]]
    steps = [s.replace("python -m venv", f"{sys.executable} -m venv") for s in steps]
    for step in steps:
        args = shlex.split(step)
        result = await asyncio.to_thread(
            subprocess.run, args, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
        )
        assert result.returncode == 0, result.stderr[-2000:]
    exe = venv / "bin" / "goe-bridge"
    assert exe.exists()

    http_port = free_port()
    sim = SimCharger(api=ApiVersion.V2)
    async with HttpFrontend(sim) as fe:
        conf_dir = tmp_path / "config"
        conf_dir.mkdir()
        # a config without an http: section: the image's own environment turns /healthz on
        (conf_dir / "config.yaml").write_text(yaml.safe_dump({
            "brokers": {"home": {"host": mosquitto.host, "port": mosquitto.port}},
            "chargers": [{"id": "garage", "connection": {"type": "http", "host": "127.0.0.1", "port": fe.port}}],
        }))  # fmt: skip
        assert d["env"]["GOE_BRIDGE__HTTP__ENABLED"] == "true"
        cmd = [str(exe), *[a.replace("/config/", f"{conf_dir}/", 1) for a in d["cmd"]]]
        health = [str(venv / "bin" / d["healthcheck"][0]),
                  *[a.replace(":8080", f":{http_port}") for a in d["healthcheck"][1:]]]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **d["env"],
               "GOE_BRIDGE__HTTP__PORT": str(http_port)}  # fmt: skip
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, waited for off the loop
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "bridge.log").open("w"),
            text=True,
            env=env,
        )
        try:
            deadline = time.monotonic() + 30
            code = 1
            while time.monotonic() < deadline:
                code = (
                    await asyncio.to_thread(
                        subprocess.run, health, capture_output=True, timeout=30, check=False
                    )
                ).returncode
                if code == 0:
                    break
                await asyncio.sleep(0.3)
            assert code == 0, (
                "HEALTHCHECK never passed: " + (tmp_path / "bridge.log").read_text()[-3000:]
            )
            proc.send_signal(signal.SIGTERM)  # docker stop
            assert await asyncio.to_thread(proc.wait, 20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        assert (
            await asyncio.to_thread(
                subprocess.run, health, capture_output=True, timeout=30, check=False
            )
        ).returncode == 1


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.xdist_group("pip")  # pip builds and installs: CPU-bound, one at a time
@pytest.mark.timeout(600)  # on a loaded machine pip alone can take minutes
@pytest.mark.slow(50)
def test_install_script_into_a_staging_folder_twice(tmp_path: Path) -> None:
    dest = tmp_path / "root"
    env = {**os.environ, "DESTDIR": str(dest), "PYTHON": sys.executable}
    script = ROOT / "systemd" / "install.sh"
    first = subprocess.run(
        [str(script), "--prefix", "/opt/goe-bridge"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert first.returncode == 0, first.stderr
    venv = dest / "opt" / "goe-bridge"
    assert (venv / "bin" / "goe-bridge").exists()
    config = dest / "etc" / "goe-bridge" / "config.yaml"
    assert config.read_text() == (ROOT / "config.example.yaml").read_text()
    assert _mode(config) == 0o640 and _mode(config.parent) == 0o750
    unit = dest / "etc" / "systemd" / "system" / "goe-bridge.service"
    text = unit.read_text()
    assert _mode(unit) == 0o644
    for line in ("Type=notify", "WatchdogSec=60", "Restart=on-failure", "User=goe-bridge",
                 "ConfigurationDirectory=goe-bridge", "ProtectSystem=strict", "ProtectHome=yes",
                 "NoNewPrivileges=yes", "PrivateTmp=yes",
                 "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                 "ExecStart=/opt/goe-bridge/bin/goe-bridge run -c /etc/goe-bridge/config.yaml"):  # fmt: skip
        assert line in text.splitlines(), line
    # the unit's Documentation= names a file the installer put there
    (doc,) = [
        line.split("=", 1)[1] for line in text.splitlines() if line.startswith("Documentation=")
    ]
    assert doc.startswith("file:///opt/goe-bridge/")
    assert (dest / doc.removeprefix("file:///")).is_file(), doc
    assert (venv / "share" / "doc" / "goe-bridge" / "docs" / "raspberry-pi.md").is_file()
    # the user edits the config; a second run upgrades and keeps it
    config.write_text("# mine\n")
    second = subprocess.run(
        [str(script), "--prefix", "/opt/goe-bridge"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert second.returncode == 0, second.stderr
    assert config.read_text() == "# mine\n"
    assert unit.read_text() == text
    # relocatable: the scripts name the final prefix, not the staging folder
    shebang = (venv / "bin" / "goe-bridge").read_text().splitlines()[0]
    assert shebang.startswith("#!/opt/goe-bridge/bin/python"), shebang
    assert str(dest) not in (venv / "bin" / "activate").read_text()
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "bridge", "--version"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert version.stdout.startswith("goe-bridge ")
    # another prefix is written into the unit
    third = subprocess.run(
        [str(script), "--prefix=/srv/gb"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert third.returncode == 0, third.stderr
    assert "ExecStart=/srv/gb/bin/goe-bridge run" in unit.read_text()


def test_install_script_refuses_without_root_or_destdir() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # a copy an ordinary user can read (the checkout may sit in a private folder)
        os.chmod(tmp, 0o755)
        script = Path(tmp) / "install.sh"
        shutil.copy(ROOT / "systemd" / "install.sh", script)
        script.chmod(0o755)
        command = ["sh", str(script)]
        if os.getuid() == 0:
            command = ["runuser", "-u", "nobody", "--", *command]  # as an ordinary user
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "run as root (sudo), or set DESTDIR" in result.stderr
