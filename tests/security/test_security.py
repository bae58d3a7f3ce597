"""Security: TLS with certificates made here, passwords from files, an ACL that grants only
what the bridge needs, no secret in any payload or log line, no topic injection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge import config
from bridge.config import BrokerConfig, Secret, TlsConfig
from bridge.goe.model import ApiVersion
from bridge.mqtt.link import BrokerLink
from bridge.simulator.charger import SimCharger
from bridge.simulator.cloud import CloudFrontend, CloudState
from bridge.simulator.http import HttpFrontend
from tests.conftest import free_port
from tests.mqtt_helpers import Probe, run_mosquitto, until
from tests.system.test_cli import goe_bridge
from tests.system.test_openwb import bridge_process


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@contextlib.contextmanager
def broker_dir() -> Iterator[Path]:
    """Files mosquitto reads: it drops root privileges, so they must be world-readable
    (pytest's tmp_path is private to root)."""
    with tempfile.TemporaryDirectory(prefix="goe-broker-files-") as d:
        os.chmod(d, 0o755)
        yield Path(d)


@pytest.fixture(scope="module")
def pki() -> Iterator[Path]:
    """A CA, a server certificate for 'localhost', a client certificate, and a stranger CA."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make test certificates")
    with broker_dir() as d:
        yield _make_pki(d)


def _make_pki(d: Path) -> Path:
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={ca}",
                "-keyout", f"{ca}.key", "-out", f"{ca}.crt", cwd=d)  # fmt: skip
    (d / "san.cnf").write_text("subjectAltName=DNS:localhost\n")
    for name, cn in (("server", "localhost"), ("client", "goe-bridge")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", cwd=d)  # fmt: skip
        extra = ["-extfile", "san.cnf"] if name == "server" else []
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-out", f"{name}.crt", *extra, cwd=d)  # fmt: skip
    for f in d.iterdir():
        f.chmod(0o644)  # mosquitto drops privileges when run as root
    return d


@contextlib.asynccontextmanager
async def running_link(cfg: BrokerConfig) -> AsyncIterator[BrokerLink]:
    link = BrokerLink("t", cfg, state_topic="sec/bridge/state")
    task = asyncio.create_task(link.run())
    try:
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def tls_broker_conf(pki: Path) -> str:
    return (
        f"cafile {pki / 'ca.crt'}\ncertfile {pki / 'server.crt'}\nkeyfile {pki / 'server.key'}\n"
        "require_certificate true\nallow_anonymous true\n"
    )


async def test_tls_verified_connection_works(pki: Path) -> None:
    with run_mosquitto(tls_broker_conf(pki)) as broker:
        tls = TlsConfig(enabled=True, ca_file=str(pki / "ca.crt"), cert_file=str(pki / "client.crt"),
                        key_file=str(pki / "client.key"))  # fmt: skip
        async with running_link(BrokerConfig(host="localhost", port=broker.port, tls=tls)) as link:
            async with asyncio.timeout(15):
                await link.connected.wait()
            link.publish("sec/x", "over tls", retain=True)
            await until(lambda: link.published >= 1)


@pytest.mark.parametrize(
    ("case", "host", "ca", "error"),
    [
        ("wrong CA", "localhost", "other-ca.crt", "CERTIFICATE_VERIFY_FAILED"),
        ("wrong hostname", "127.0.0.1", "ca.crt", "IP address mismatch"),
    ],
)
async def test_tls_failures_are_clear_and_never_fall_back(
    pki: Path, case: str, host: str, ca: str, error: str
) -> None:
    with run_mosquitto(tls_broker_conf(pki)) as broker:
        # a plain listener on another port, to show it is never tried
        plain_port = free_port()
        conf = broker.conf.read_text() + f"listener {plain_port} 127.0.0.1\nallow_anonymous true\n"
        broker.conf.write_text(conf)
        broker.stop()
        broker.start()
        tls = TlsConfig(enabled=True, ca_file=str(pki / ca), cert_file=str(pki / "client.crt"),
                        key_file=str(pki / "client.key"))  # fmt: skip
        async with running_link(BrokerConfig(host=host, port=broker.port, tls=tls)) as link:
            await until(lambda: link.last_error is not None, timeout=15, what=f"{case} reported")
            await asyncio.sleep(1.5)
            assert not link.connected.is_set()
            assert link.connects == 0
            assert error in (link.last_error or ""), link.last_error
        async with Probe("127.0.0.1", plain_port, "sec/#") as probe:
            await asyncio.sleep(0.3)
            assert probe.messages == []  # nothing ever went out in plain text


def password_conf(tmp: Path, users: dict[str, str], acl: str | None = None) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="goe-broker-auth-"))
    tmp.chmod(0o755)
    pwfile = tmp / "passwd"
    pwfile.write_text("")
    for user, password in users.items():
        subprocess.run(
            ["mosquitto_passwd", "-b", str(pwfile), user, password], check=True, capture_output=True
        )
    pwfile.chmod(0o644)
    conf = f"allow_anonymous false\npassword_file {pwfile}\n"
    if acl is not None:
        aclfile = tmp / "acl"
        aclfile.write_text(acl)
        aclfile.chmod(0o644)
        conf += f"acl_file {aclfile}\n"
    return conf


async def test_password_file_and_wrong_password_backs_off(tmp_path: Path) -> None:
    with run_mosquitto(password_conf(tmp_path, {"goe": "right-horse-battery"})) as broker:
        pw = tmp_path / "pw"
        pw.write_text("right-horse-battery\n")
        cfg = config.loads(
            f"brokers: {{b: {{host: 127.0.0.1, port: {broker.port}, username: goe, password_file: {pw}}}}}"
        )
        async with running_link(cfg.brokers["b"]) as link:
            async with asyncio.timeout(15):
                await link.connected.wait()
        wrong = BrokerConfig(
            host="127.0.0.1", port=broker.port, username="goe", password=Secret("wrong")
        )
        started = time.monotonic()
        async with running_link(wrong) as link:
            await until(lambda: link.backoff.failures >= 3, what="three refused attempts")
            assert not link.connected.is_set()
            assert (
                "authoriz" in (link.last_error or "").lower()
                or "password" in (link.last_error or "").lower()
            ), link.last_error
            # retried with backoff, not in a tight loop: at least 0.5 s, then 1 s, between the
            # attempts (a busy machine only makes them later)
            assert time.monotonic() - started >= 1.5


@pytest.fixture
async def sim() -> AsyncIterator[tuple[SimCharger, int]]:
    charger = SimCharger(api=ApiVersion.V2, alw_delay_s=0.05)
    charger.plug()
    async with HttpFrontend(charger) as fe:
        yield charger, fe.port


def bridge_config(path: Path, broker: Any, base: str, sim_port: int, **extra: Any) -> Path:
    data = {
        "log": {"level": "debug", "format": "json"},
        "brokers": {"home": {"host": broker.host, "port": broker.port, **extra.pop("broker_auth", {})}},
        "publish": {"base_topic": base, "raw": True},
        "chargers": [{"id": "c", "connection": {"type": "http", "host": "127.0.0.1", "port": sim_port, "poll_interval_s": 0.3},
                      "control": {"source": "mqtt", "min_command_interval_s": 0}}, *extra.pop("chargers", [])],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return path


async def test_least_privilege_acl(tmp_path: Path, sim: tuple[SimCharger, int]) -> None:
    charger, port = sim
    acl = (
        "user goe\ntopic readwrite goe/#\ntopic readwrite homeassistant/#\n\n"
        "user ctl\ntopic readwrite goe/#\n"
    )
    with run_mosquitto(
        password_conf(tmp_path, {"goe": "bridge-pass", "ctl": "ctl-pass"}, acl)
    ) as broker:
        pw = tmp_path / "pw"
        pw.write_text("bridge-pass")
        cfg = bridge_config(tmp_path / "c.yaml", broker, "goe", port,
                            broker_auth={"username": "goe", "password_file": str(pw)})  # fmt: skip
        with bridge_process(cfg):
            import aiomqtt

            async with aiomqtt.Client(
                broker.host, broker.port, username="ctl", password="ctl-pass"
            ) as ctl:
                await ctl.subscribe("goe/#")
                seen: set[str] = set()
                async with asyncio.timeout(20):
                    async for m in ctl.messages:
                        seen.add(m.topic.value)
                        if m.topic.value == "goe/c/availability" and m.payload == b"online":
                            break
                await ctl.publish(
                    "goe/c/set", '{"allow_charging": true, "current_limit_a": 9}', qos=1
                )
                await until(
                    lambda: charger.amp == 9 and charger.frc == 2,
                    timeout=20,
                    what="command through the ACL",
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2):
                        async for m in ctl.messages:
                            seen.add(m.topic.value)
                assert {
                    "goe/bridge/state",
                    "goe/c/power_w",
                    "goe/c/availability",
                    "goe/c/result",
                } <= seen


async def test_no_secret_leaks(tmp_path: Path, sim: tuple[SimCharger, int]) -> None:
    _, port = sim
    password, token = "very-secret-broker-pw", "cloud-token-4711"
    with run_mosquitto(password_conf(tmp_path, {"goe": password, "spy": "spy"})) as broker:
        pw = tmp_path / "pw"
        pw.write_text(password)
        token_file = tmp_path / "token"
        token_file.write_text(token)
        cloud_sim = SimCharger(api=ApiVersion.V2, serial="000777")
        async with CloudFrontend(CloudState(cloud_sim, token)) as cloud:
            cloud_charger = {"id": "cloud", "connection": {"type": "cloud", "api": "v2", "serial": "000777",
                             "token_file": str(token_file), "base_url": cloud.url, "poll_interval_s": 1}}  # fmt: skip
            cfg = bridge_config(tmp_path / "c.yaml", broker, "goe", port,
                                broker_auth={"username": "goe", "password_file": str(pw)}, chargers=[cloud_charger])  # fmt: skip
            import aiomqtt

            payloads: list[str] = []
            with bridge_process(cfg):
                async with aiomqtt.Client(
                    broker.host, broker.port, username="spy", password="spy"
                ) as spy:
                    await spy.subscribe("#")
                    async with asyncio.timeout(20):
                        async for m in spy.messages:
                            payloads.append(f"{m.topic.value} {m.payload!r}")
                            if m.topic.value == "goe/cloud/availability" and m.payload == b"online":
                                break
                    await spy.publish("goe/c/set", '{"allow_charging": true, "current_limit_a": 8}')
                    await spy.publish("goe/c/current_limit_a/set", "99")
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(4):
                            async for m in spy.messages:
                                payloads.append(f"{m.topic.value} {m.payload!r}")
        logs = cfg.with_suffix(".log").read_text()
    assert any("goe/c/raw/" in p for p in payloads)  # the raw mirror was on
    assert any("goe/cloud/power_w" in p for p in payloads)
    for secret in (password, token, "simulated-wifi-key", "simulated-cloud-key"):
        assert not [p for p in payloads if secret in p], secret
        assert secret not in logs, secret
    for key in ("wke", "wak", "cak", "mck"):
        assert not [p for p in payloads if f"/raw/{key} " in p], key


def test_readable_config_with_secrets_warns_at_start(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "brokers: {home: {username: u, password: hunter2}}\n"
        "chargers: [{id: c, connection: {type: http, host: 192.0.2.1}}]\n"
    )
    path.chmod(0o644)
    result = subprocess.run(
        [*goe_bridge(), "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "readable by other users; run: chmod 600" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize("bad", ["a+b", "a#", "a/b", "a\x00b", "+", "#"])
def test_topic_injection_is_rejected_at_config_load(bad: str) -> None:
    for text in (
        f"chargers: [{{id: {json.dumps(bad)}, connection: {{type: http, host: h}}}}]",
        f"publish: {{base_topic: {json.dumps(bad)}}}",
        f"publish: {{home_assistant: {{prefix: {json.dumps(bad)}}}}}",
        f"brokers: {{{json.dumps(bad)}: {{}}}}",
    ):
        if (bad == "a/b" and "base_topic" in text) or (bad == "a/b" and "prefix" in text):
            continue  # multi-level prefixes are allowed; each level is checked
        with pytest.raises(config.ConfigError):
            config.loads(text)
    for prefix in ("go-e+", "#", "a\x00"):
        with pytest.raises(config.ConfigError):
            config.loads(
                f"chargers: [{{connection: {{type: mqtt, serial: '1', prefix: {json.dumps(prefix)}}}}}]"
            )
