"""The Home Assistant add-on (config.json at the repository root, built from the Dockerfile's
add-on stage): its config follows the add-on configuration rules and its default options pass
its own schema; the options and the Supervisor's MQTT service become a config the bridge
accepts, through the real CLI; `addon-run` against a stand-in for the Supervisor's REST API; the
local add-on folder `./dev addon-folder` writes. No Docker engine runs here: the image itself
is not built (the build stage is reproduced in a venv, tests/system/test_packaging.py)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge import config
from tests.conftest import ROOT, free_port
from tests.mqtt_helpers import Probe
from tests.system.test_cli import goe_bridge

ADDON = ROOT  # the repository is the add-on folder (the Supervisor builds its Dockerfile)
# https://developers.home-assistant.io/docs/add-ons/configuration: required keys and arches
REQUIRED = ("name", "version", "slug", "description", "arch")
ARCHES = {"aarch64", "amd64", "armv7", "armhf", "i386"}


def addon_config() -> dict[str, Any]:
    return json.loads((ADDON / "config.json").read_text())


def check(schema: Any, value: Any, path: str = "options") -> list[str]:
    """The add-on schema language (the Supervisor's validator, in brief): str, bool, int and
    float with optional (min,max), match(regex), list(a|b), a trailing ? for optional, nested
    mappings, and one-element lists for lists of items."""
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping"]
        out = [f"{path}.{k}: not in the schema" for k in value if k not in schema]
        for key, sub in schema.items():
            optional = isinstance(sub, str) and sub.endswith("?")
            if key not in value:
                if not optional:
                    out.append(f"{path}.{key}: required")
                continue
            out += check(sub, value[key], f"{path}.{key}")
        return out
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [p for i, item in enumerate(value) for p in check(schema[0], item, f"{path}[{i}]")]
    rule = schema.rstrip("?")
    if rule == "str":
        return [] if isinstance(value, str) else [f"{path}: expected a string"]
    if rule == "bool":
        return [] if isinstance(value, bool) else [f"{path}: expected a bool"]
    kind = re.fullmatch(r"(int|float)(?:\((-?[\d.]*),(-?[\d.]*)\))?", rule)
    if kind:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if kind[1] == "int":
            ok = ok and isinstance(value, int)
        if ok and kind[2] and value < float(kind[2]):
            ok = False
        if ok and kind[3] and value > float(kind[3]):
            ok = False
        return [] if ok else [f"{path}: {value!r} is not {rule}"]
    if rule.startswith("list("):
        choices = rule[5:-1].split("|")
        return [] if value in choices else [f"{path}: {value!r} not one of {choices}"]
    if rule.startswith("match("):
        return [] if re.fullmatch(rule[6:-1], str(value)) else [f"{path}: {value!r} !~ {rule}"]
    return [f"{path}: unknown schema rule {schema!r}"]


def test_addon_config_follows_the_add_on_rules() -> None:
    cfg = addon_config()
    assert all(key in cfg for key in REQUIRED)
    assert set(cfg["arch"]) <= ARCHES
    assert re.fullmatch(r"[a-z0-9_]+", cfg["slug"])
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert cfg["version"] == version  # the image installs goe-bridge==version
    assert "mqtt:need" in cfg["services"]
    assert check(cfg["schema"], cfg["options"]) == []
    assert check(cfg["schema"], {**cfg["options"], "max_current_a": 40}) != []  # it can fail
    assert "url" not in cfg  # no page to point at (there is no public repository URL)
    dockerfile = (ADDON / "Dockerfile").read_text()
    # the Supervisor passes BUILD_ARCH (supervisor/apps/build.py), which selects the add-on
    assert 'ARG BUILD_ARCH=""' in dockerfile
    assert dockerfile.rstrip().endswith("FROM ${BUILD_ARCH:+addon-}image")
    addon_stage = dockerfile.split("AS addon-image", 1)[1]
    assert 'CMD ["addon-run"]' in addon_stage and "USER root" in addon_stage
    assert not list(ADDON.glob("Dockerfile.*"))  # would take precedence for the Supervisor
    translations = yaml.safe_load((ADDON / "translations" / "en.yaml").read_text())
    assert set(translations["configuration"]) == set(cfg["schema"])
    repository = yaml.safe_load((ROOT / "repository.yaml").read_text())
    assert repository["name"] and "url" not in repository
    # the Supervisor finds add-ons by `**/config.{json,yaml,yml}` (supervisor/store/data.py):
    # only this one may be in the repository
    found = [p for p in ROOT.glob("**/config.*") if p.suffix in (".json", ".yaml", ".yml")
             and not any(part.startswith(".") for part in p.relative_to(ROOT).parts)]  # fmt: skip
    tracked = subprocess.run(["git", "ls-files", "--", *map(str, found)], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert sorted(tracked) == ["config.example.yaml", "config.json"]


def addon_run(
    tmp_path: Path, options: dict[str, Any], mqtt: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "options.json").write_text(json.dumps(options))
    return subprocess.run(
        [*goe_bridge(), "addon-config", "--options", str(tmp_path / "options.json"), "--mqtt", "-"],
        check=False, input=json.dumps(mqtt), capture_output=True, text=True, timeout=30,
    )  # fmt: skip


SUPERVISOR_MQTT = {"host": "core-mosquitto", "port": 1883, "username": "addons",
                   "password": "0123secret", "ssl": False}  # fmt: skip


def test_default_options_and_supervisor_mqtt_become_a_valid_config(tmp_path: Path) -> None:
    result = addon_run(tmp_path, addon_config()["options"], SUPERVISOR_MQTT)
    assert result.returncode == 0, result.stderr
    cfg = config.loads(result.stdout, env={})
    broker = cfg.brokers["homeassistant"]
    assert (broker.host, broker.port, broker.username) == ("core-mosquitto", 1883, "addons")
    assert broker.password is not None and broker.password.reveal() == "0123secret"
    charger = cfg.chargers[0]
    assert charger.key == "garage"
    assert charger.connection.host == "192.168.178.50"  # type: ignore[union-attr]
    assert charger.control.source == "mqtt" and charger.limits.max_current_a == 16
    assert cfg.publish.home_assistant.enabled and cfg.log.format == "console"


def test_per_charger_options_and_tls(tmp_path: Path) -> None:
    options = {**addon_config()["options"], "control": "none", "chargers": [
        {"id": "garage", "host": "192.168.178.50", "api": "v1", "max_current_a": 10},
        {"id": "carport", "host": "goe-carport.lan"},
    ]}  # fmt: skip
    result = addon_run(tmp_path, options, {**SUPERVISOR_MQTT, "ssl": True, "port": 8883})
    assert result.returncode == 0, result.stderr
    cfg = config.loads(result.stdout, env={})
    assert [c.key for c in cfg.chargers] == ["garage", "carport"]
    assert cfg.chargers[0].connection.api == "v1"  # type: ignore[union-attr]
    assert [c.limits.max_current_a for c in cfg.chargers] == [10, 16]
    assert all(c.control.source == "none" for c in cfg.chargers)
    assert cfg.brokers["homeassistant"].tls.enabled


@pytest.mark.parametrize(
    ("charger", "message"),
    [
        ({"id": "garage"}, "chargers[0].host: required"),
        ({"id": "bad/id", "host": "h"}, "chargers[0].id: 'bad/id' must be"),
    ],
)
def test_bad_options_are_reported_in_the_add_ons_words(
    tmp_path: Path, charger: dict[str, Any], message: str
) -> None:
    options = {**addon_config()["options"], "chargers": [charger]}
    result = addon_run(tmp_path, options, SUPERVISOR_MQTT)
    assert result.returncode == 2
    assert message in result.stderr, result.stderr


async def supervisor_standin(mqtt: dict[str, Any] | None, token: str) -> tuple[Any, str]:
    """The Supervisor's `GET /services/mqtt` as supervisor/api/services.py answers it."""
    from aiohttp import web

    async def service(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {token}":
            return web.json_response({"result": "error", "message": "Unauthorized"}, status=401)
        if mqtt is None:
            return web.json_response(
                {"result": "error", "message": "Service not enabled"}, status=400
            )
        return web.json_response({"result": "ok", "data": mqtt})

    app = web.Application()
    app.router.add_get("/services/mqtt", service)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def test_addon_run_takes_the_supervisors_broker(
    tmp_path: Path, mosquitto: Any, base_topic: str
) -> None:
    runner, url = await supervisor_standin(
        {"host": mosquitto.host, "port": mosquitto.port, "ssl": False, "protocol": "3.1.1",
         "username": "addons", "password": "0123secret", "addon": "core_mosquitto"},
        token="sup-token",
    )  # fmt: skip
    options = {**addon_config()["options"], "base_topic": base_topic}
    (tmp_path / "options.json").write_text(json.dumps(options))
    env = {**os.environ, "SUPERVISOR_TOKEN": "sup-token"}
    log = (tmp_path / "addon.log").open("w")
    proc = subprocess.Popen(  # noqa: ASYNC220 - one process, waited for off the loop
        [*goe_bridge(), "addon-run", "--options", str(tmp_path / "options.json"),
         "--supervisor", url], stdout=log, stderr=log, env=env,
    )  # fmt: skip
    try:
        async with Probe(mosquitto.host, mosquitto.port, f"{base_topic}/#") as probe:
            await probe.wait_for(f"{base_topic}/bridge/state", "online", timeout=20)
            # the default option's charger (192.168.178.50) is not here: offline, said so
            await probe.wait_for(f"{base_topic}/garage/availability", "offline")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 20)
        log.close()
        await runner.cleanup()
    assert code == 0
    assert "0123secret" not in (tmp_path / "addon.log").read_text()


async def test_addon_run_without_a_broker_says_what_to_install(tmp_path: Path) -> None:
    runner, url = await supervisor_standin(None, token="sup-token")
    (tmp_path / "options.json").write_text(json.dumps(addon_config()["options"]))
    try:
        result = await asyncio.to_thread(
            subprocess.run,
            [*goe_bridge(), "addon-run", "--options", str(tmp_path / "options.json"),
             "--supervisor", url], capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "SUPERVISOR_TOKEN": "sup-token"},
        )  # fmt: skip
    finally:
        await runner.cleanup()
    assert result.returncode == 2
    assert "Service not enabled" in result.stderr and "Mosquitto broker add-on" in result.stderr


@pytest.mark.xdist_group("pip")  # pip builds and installs: CPU-bound, one at a time
@pytest.mark.timeout(600)  # on a loaded machine pip alone can take minutes
@pytest.mark.slow(30)
def test_the_local_add_on_folder_is_the_sdist_unpacked(tmp_path: Path) -> None:
    out = tmp_path / "addons" / "goe-bridge"
    result = subprocess.run(
        [str(ROOT / "dev"), "addon-folder", str(out)], capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((out / "config.json").read_text()) == addon_config()
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "LICENSE",
                 "DOCS.md", "translations/en.yaml", "bridge/__main__.py", "bridge/status.html"):  # fmt: skip
        assert (out / name).is_file(), name
    (sdist,) = out.glob("goe_bridge-*.tar.gz")
    # what the Dockerfile's build stage copies is there, and installs
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    install = subprocess.run(
        [str(env_dir / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    version = subprocess.run([str(env_dir / "bin" / "goe-bridge"), "--version"],
                             capture_output=True, text=True, check=True)  # fmt: skip
    assert version.stdout.strip() == f"goe-bridge {addon_config()['version']}"
    assert sdist.name == f"goe_bridge-{addon_config()['version']}.tar.gz"
