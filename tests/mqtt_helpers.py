"""A real mosquitto for the suite, and a subscriber that records what it sees."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge.mqtt.embedded import find_mosquitto, free_port


@dataclass
class Mosquitto:
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    conf: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def save(self) -> None:
        """Write the persistence database now (mosquitto's SIGUSR1)."""
        import signal

        self.proc.send_signal(signal.SIGUSR1)

    def start(self) -> None:
        self.proc = _spawn(self.conf)
        _wait_port(self.host, self.port)


def _spawn(conf: Path) -> subprocess.Popen[bytes]:
    binary = find_mosquitto()
    if binary is None:
        pytest.fail(
            "mosquitto is not installed: apt-get install mosquitto (./dev test does it as root)"
        )
    return subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _wait_port(host: str, port: int, timeout: float = 10) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return
        time.sleep(0.05)
    pytest.fail(f"mosquitto did not start on {host}:{port}")


@contextlib.contextmanager
def run_mosquitto(
    extra: str = "", port: int | None = None, *, persistence: bool = False
) -> Iterator[Mosquitto]:
    """A mosquitto on a free port. `persistence=True` is the Debian package's and the Home
    Assistant add-on's default: sessions, queued QoS 1 messages and retained messages
    survive a restart (saved on shutdown, on SIGUSR1, and every autosave_interval)."""
    with tempfile.TemporaryDirectory(prefix="goe-mosq-") as tmp:
        port = port or free_port()
        conf = Path(tmp) / "mosquitto.conf"
        persist = (
            f"persistence true\npersistence_location {tmp}/\nautosave_interval 3600\n"
            if persistence
            else "persistence false\n"
        )
        if persistence:
            # mosquitto started as root drops to its own user, which must write the database
            Path(tmp).chmod(0o777)
        conf.write_text(
            f"listener {port} 127.0.0.1\n{persist}log_dest stderr\n"
            + (extra or "allow_anonymous true\n")
        )
        broker = Mosquitto("127.0.0.1", port, _spawn(conf), conf)
        _wait_port("127.0.0.1", port)
        try:
            yield broker
        finally:
            broker.stop()


@dataclass
class Seen:
    topic: str
    payload: str
    retain: bool
    at: float


class Probe:
    """Subscribes to filters and records every message (with its retain flag)."""

    def __init__(
        self, host: str, port: int, *filters: str, username: str | None = None,
        password: str | None = None, retain_as_published: bool = False,
    ) -> None:  # fmt: skip
        """`retain_as_published`: MQTT 5 with Retain As Published (§3.8.3.1), so a retained
        message published while subscribed keeps its retain flag (the broker clears it
        otherwise) and tells a retained publisher from one that publishes without."""
        self.host, self.port, self.filters = host, port, filters
        self.username, self.password = username, password
        self.retain_as_published = retain_as_published
        self.messages: list[Seen] = []
        self._task: asyncio.Task[None] | None = None
        self._new = asyncio.Event()
        self._ready = asyncio.Event()
        self.client: aiomqtt.Client | None = None

    async def __aenter__(self) -> Probe:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.host, self.port, identifier=f"probe-{uuid.uuid4().hex[:8]}",
                    username=self.username, password=self.password,
                    protocol=aiomqtt.ProtocolVersion.V5 if self.retain_as_published else None,
                ) as client:  # fmt: skip
                    self.client = client
                    for f in self.filters:
                        if self.retain_as_published:
                            await client.subscribe(
                                f, options=SubscribeOptions(qos=1, retainAsPublished=True)
                            )
                        else:
                            await client.subscribe(f, qos=1)
                    self._ready.set()
                    async for m in client.messages:
                        payload = (
                            m.payload.decode("utf-8", "replace")
                            if isinstance(m.payload, bytes)
                            else str(m.payload or "")
                        )
                        self.messages.append(
                            Seen(m.topic.value, payload, bool(m.retain), time.monotonic())
                        )
                        self._new.set()
            except aiomqtt.MqttError:
                self.client = None
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from None
                await asyncio.sleep(0.2)

    async def publish(self, topic: str, payload: str | bytes, retain: bool = False) -> None:
        deadline = time.monotonic() + 10
        while self.client is None:
            if time.monotonic() > deadline:
                raise TimeoutError("probe not connected")
            await asyncio.sleep(0.05)
        await self.client.publish(topic, payload, qos=1, retain=retain)

    def last(self, topic: str) -> Seen | None:
        for m in reversed(self.messages):
            if m.topic == topic:
                return m
        return None

    def values(self, topic: str) -> list[str]:
        return [m.payload for m in self.messages if m.topic == topic]

    async def wait_for(
        self, topic: str, predicate: Callable[[str], bool] | str | None = None,
        timeout: float = 15, since: int = 0,
    ) -> Seen:  # fmt: skip
        if isinstance(predicate, str):
            expected = predicate
            predicate = lambda p: p == expected  # noqa: E731
        deadline = time.monotonic() + timeout
        while True:
            for m in self.messages[since:]:
                if m.topic == topic and (predicate is None or predicate(m.payload)):
                    return m
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = self.values(topic)[-5:]
                raise AssertionError(
                    f"no matching message on {topic} within {timeout} s; last: {seen}"
                )
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), remaining)

    def mark(self) -> int:
        return len(self.messages)


async def until(check: Callable[[], Any], timeout: float = 15, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class TcpProxy:
    """A TCP hop between a client and the broker that can fail the way a WiFi link does:
    `blackhole()` keeps the connections open but drops what the broker sends (a half-dead
    link: the broker believes it delivered, the client never gets it), `cut()` closes every
    connection (the client reconnects through the proxy)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = 0
        self.downstream_open = True
        self.refusing = False  # new connections are closed at once (the broker unreachable)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()

    def blackhole(self) -> None:
        self.downstream_open = False

    def cut(self) -> None:
        """Close every connection, and let the next ones through in both directions."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self.downstream_open = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, down: bool) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    if down and not self.downstream_open:
                        continue  # lost on the way
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))
