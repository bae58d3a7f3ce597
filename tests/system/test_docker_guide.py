"""The Docker guide's simple case, word for word minus Docker: the bridge configured from the
environment alone (the `docker run -e` lines of docs/docker.md) against a mosquitto that wants
a user name and password, the password read from a file as a Docker secret."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path

from bridge.goe.model import ApiVersion
from bridge.simulator.charger import SimCharger
from bridge.simulator.http import HttpFrontend
from tests.conftest import ROOT
from tests.mqtt_helpers import Probe, run_mosquitto
from tests.security.test_security import password_conf
from tests.system.test_cli import goe_bridge


def guide_environment() -> dict[str, str]:
    """The -e NAME=value pairs of the guide's first `docker run`."""
    text = (ROOT / "docs" / "docker.md").read_text()
    first_run = text[text.index("docker run") : text.index("docker logs")]
    return dict(re.findall(r"-e (GOE_BRIDGE__\w+)=(\S+)", first_run))


async def test_the_guides_environment_alone_runs_against_a_password_protected_broker(
    tmp_path: Path,
) -> None:
    env = guide_environment()
    assert {"GOE_BRIDGE__BROKERS__HOME__USERNAME", "GOE_BRIDGE__BROKERS__HOME__PASSWORD_FILE",
            "GOE_BRIDGE__CHARGERS__0__CONNECTION__HOST"} <= set(env)  # fmt: skip
    secret = tmp_path / "mqtt_password"
    secret.write_text("0123secret\n")
    secret.chmod(0o400)
    sim = SimCharger(api=ApiVersion.V2)
    with run_mosquitto(
        password_conf(tmp_path, {env["GOE_BRIDGE__BROKERS__HOME__USERNAME"]: "0123secret"})
    ) as broker:
        async with HttpFrontend(sim) as fe:
            env.update({
                "GOE_BRIDGE__BROKERS__HOME__HOST": broker.host,
                "GOE_BRIDGE__BROKERS__HOME__PORT": str(broker.port),
                "GOE_BRIDGE__BROKERS__HOME__PASSWORD_FILE": str(secret),
                "GOE_BRIDGE__CHARGERS__0__CONNECTION__HOST": "127.0.0.1",
                "GOE_BRIDGE__CHARGERS__0__CONNECTION__PORT": str(fe.port),
            })  # fmt: skip
            log = (tmp_path / "bridge.log").open("w")
            proc = subprocess.Popen(  # noqa: ASYNC220 - started once, waited for off the loop
                [*goe_bridge(), "run", "-c", str(tmp_path / "absent.yaml")],
                stdout=log, stderr=log, env={**os.environ, **env},
            )  # fmt: skip
            try:
                async with Probe(broker.host, broker.port, "goe/#", username="goe",
                                 password="0123secret") as probe:  # fmt: skip
                    charger = env["GOE_BRIDGE__CHARGERS__0__ID"]
                    await probe.wait_for(f"goe/{charger}/availability", "online", timeout=20)
                    await probe.wait_for("goe/bridge/state", "online")
                assert proc.poll() is None
            finally:
                proc.terminate()
                await asyncio.to_thread(proc.wait, 15)
                log.close()
    text = (tmp_path / "bridge.log").read_text()
    assert "the config comes from the environment" in text
    assert "0123secret" not in text
