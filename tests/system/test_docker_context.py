"""What the real `docker` client sends as the build context, with the Docker guide's working
folders (config/, secrets/) in the checkout.

No Docker engine runs here, so the client talks to a stand-in for the engine's API on a Unix
socket that answers `/_ping` and keeps the tar the client POSTs to `/build` (the classic
builder's request: the client applies .dockerignore itself and sends the result)."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import ROOT

DOCKER = shutil.which("docker")


async def build_context(checkout: Path, sock: Path) -> list[str]:
    """The file names the docker client sends for `docker build` in `checkout`."""
    received: list[list[str]] = []

    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="OK", headers={"API-Version": "1.47", "OSType": "linux"})

    async def build(request: web.Request) -> web.Response:
        body = await request.read()
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            received.append(tar.getnames())
        return web.Response(
            text='{"stream":"Successfully built 0123456789ab\\n"}\n',
            content_type="application/json",
        )

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", r"/{version:(v[0-9.]+/)?}_ping", ping)
    app.router.add_post(r"/{version:(v[0-9.]+/)?}build", build)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, str(sock)).start()
    try:
        env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_BUILDKIT": "0",
               "DOCKER_CONFIG": str(sock.parent / "docker-config")}  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            DOCKER or "docker", "build", "-q", "-t", "goe-bridge", ".", cwd=checkout, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
    finally:
        await runner.cleanup()
    assert len(received) == 1
    return received[0]


@pytest.mark.skipif(DOCKER is None, reason="needs the docker client (no engine needed)")
async def test_the_build_context_holds_only_the_package(tmp_path: Path) -> None:
    checkout = tmp_path / "goe-bridge"
    clone = ["git", "clone", "-q", str(ROOT), str(checkout)]
    await asyncio.to_thread(subprocess.run, clone, check=True)
    for name in (".dockerignore", "Dockerfile"):  # the working tree's, committed or not
        shutil.copy(ROOT / name, checkout / name)
    # the Docker guide's steps 2 and 3 in the checkout, the secret unreadable for others
    (checkout / "secrets").mkdir()
    secret = checkout / "secrets" / "mqtt_password"
    secret.write_text("0123secret")
    secret.chmod(0o400)
    (checkout / "config").mkdir()
    shutil.copy(ROOT / "config.example.yaml", checkout / "config" / "config.yaml")
    (checkout / ".venv").mkdir()
    (checkout / ".venv" / "pyvenv.cfg").write_text("")
    names = await build_context(checkout, tmp_path / "docker.sock")
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "LICENSE",
                    "bridge"}, tops  # fmt: skip
    assert "bridge/__main__.py" in names and "bridge/status.html" in names
    assert not any("__pycache__" in name for name in names)
    # what the Dockerfile copies is all there
    dockerfile = (ROOT / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert source in tops, line
