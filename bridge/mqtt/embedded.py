"""A local MQTT broker for the demo and the test suite: mosquitto when it is installed
(a subprocess on a loopback port), otherwise amqtt in-process (the `demo` extra)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for_port(host: str, port: int, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        except OSError:
            if loop.time() > deadline:
                raise TimeoutError(f"no broker listening on {host}:{port}") from None
            await asyncio.sleep(0.05)


class EmbeddedBroker:
    def __init__(
        self, port: int | None = None, *, extra_config: str = "", kind: str = "auto"
    ) -> None:
        if kind not in ("auto", "mosquitto", "amqtt"):
            raise ValueError(f"unknown broker kind {kind!r}: auto, mosquitto or amqtt")
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.extra_config = extra_config
        self.wanted = kind
        self.kind = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._amqtt: Any = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    async def start(self) -> EmbeddedBroker:
        binary = find_mosquitto() if self.wanted != "amqtt" else None
        if self.wanted == "mosquitto" and binary is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        if binary:
            self.kind = "mosquitto"
            self._dir = tempfile.TemporaryDirectory(prefix="goe-bridge-broker-")
            conf = Path(self._dir.name) / "mosquitto.conf"
            conf.write_text(
                f"listener {self.port} {self.host}\nallow_anonymous true\n"
                f"persistence false\nlog_dest none\n{self.extra_config}"
            )
            self._proc = await asyncio.create_subprocess_exec(
                binary,
                "-c",
                str(conf),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                # its own session: Ctrl-C in a terminal signals the whole foreground process
                # group, and the broker must outlive the bridge's orderly `offline`
                start_new_session=True,
            )
            # mosquitto takes a moment to listen; a bare connect is harmless to it
            await wait_for_port(self.host, self.port)
        else:
            try:
                from amqtt.broker import Broker  # noqa: PLC0415 - optional (demo extra)
            except ImportError:
                raise RuntimeError(
                    "no MQTT broker available: install mosquitto (apt-get install mosquitto) "
                    "or the demo extra (pip install 'goe-bridge[demo]')"
                ) from None
            self.kind = "amqtt"
            self._amqtt = Broker(
                {
                    "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                    "plugins": {
                        "amqtt.plugins.authentication.AnonymousAuthPlugin": {
                            "allow_anonymous": True
                        }
                    },
                }
            )
            # listening once start() returns; a probe connection without a CONNECT packet
            # would be logged by amqtt as an error
            await self._amqtt.start()
        return self

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 5)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        self._proc = None
        if self._amqtt is not None:
            await self._amqtt.shutdown()
            self._amqtt = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    async def __aenter__(self) -> EmbeddedBroker:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
