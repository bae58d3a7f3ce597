"""The one choke point for the charger's HTTP requests (local API and cloud): one request in
flight at a time, an explicit timeout, aiohttp's errors translated into ChargerUnavailable."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator, Mapping

import aiohttp
from yarl import URL

from ..model import ChargerUnavailable

_SSL_NOTE = re.compile(r" ssl:\S+")


class HttpClient:
    def __init__(
        self,
        base_url: str,
        timeout_s: float,
        session: aiohttp.ClientSession | None = None,
        *,
        label: str = "GET",
        hide_error_text: bool = False,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.label = label
        # Cloud URLs carry the token: their errors name the exception type, not its text.
        self.hide_error_text = hide_error_text
        self._session = session
        self._own_session = session is None
        self.lock = asyncio.Lock()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    def url(self, path: str, params: Mapping[str, str]) -> URL:
        """The URL of a request made again and again (a poll), to build once: `get_bytes`."""
        return URL(self.base_url + path).extend_query(params)

    async def get(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        raw_query: str | None = None,
    ) -> tuple[int, str, Mapping[str, str]]:
        """`raw_query` goes on the wire exactly as given (no percent-encoding): the v1
        charger's `/mqtt?payload=amx=16` (see HttpTransport._write_v1)."""
        url: str | URL = self.base_url + path
        if raw_query is not None:
            url = URL(f"{self.base_url}{path}?{raw_query}", encoded=True)
        async with self.lock:
            with self._errors(path):
                async with self._get_session().get(
                    url, params=params, headers=headers, timeout=self.timeout
                ) as response:
                    return response.status, await response.text(), response.headers

    async def get_bytes(self, url: URL, path: str) -> tuple[int, bytes]:
        """A request to a URL built once (`url()`), its body as bytes: a poll skips
        aiohttp's query building and charset detection, and `json.loads` takes the bytes
        as they are (bench/floor.py profile: ~5 % of a poll)."""
        async with self.lock:
            with self._errors(path):
                async with self._get_session().get(url, timeout=self.timeout) as response:
                    return response.status, await response.read()

    @contextlib.contextmanager
    def _errors(self, path: str) -> Iterator[None]:
        try:
            yield
        except TimeoutError:
            raise ChargerUnavailable(
                f"{self.label} {path}: no answer within {self.timeout.total:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            text = type(exc).__name__ if self.hide_error_text else str(exc) or type(exc).__name__
            # aiohttp names the TLS context it would have used even for http:// ("Cannot
            # connect to host 192.168.178.50:80 ssl:default [Connection refused]")
            text = _SSL_NOTE.sub("", text)
            raise ChargerUnavailable(f"{self.label} {path}: {text}") from None

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None
