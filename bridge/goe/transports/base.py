"""The interface every charger transport offers (local HTTP, cloud, go-e's own MQTT).

A transport moves bytes and translates failures into `ChargerUnavailable` /
`WriteRejected`; decoding happens in the pure codecs.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any

from .. import codec_v1, codec_v2
from ..model import ApiVersion, ChargerStatus, WireValue


def decode(api: ApiVersion, payload: Mapping[str, Any]) -> ChargerStatus:
    return codec_v1.decode(payload) if api is ApiVersion.V1 else codec_v2.decode(payload)


class StatusDecoder:
    """`decode()` for one charger's statuses in turn: API v2 decodes only what changed
    since the last status (codec_v2.Decoder)."""

    __slots__ = ("_v2",)

    def __init__(self) -> None:
        self._v2 = codec_v2.Decoder()

    def __call__(self, api: ApiVersion, payload: Mapping[str, Any]) -> ChargerStatus:
        return codec_v1.decode(payload) if api is ApiVersion.V1 else self._v2.decode(payload)


class Transport(abc.ABC):
    """One charger. Implementations allow one request in flight at a time."""

    #: Short name for logs and `bridge/info`: "http", "cloud", "mqtt".
    kind: str = "?"
    #: Known once the charger has answered (`api: auto` detects it).
    api: ApiVersion | None = None
    #: Firmware string from the first full status, for feature checks (amx needs ≥ 040).
    firmware: str | None = None
    #: True when the transport pushes statuses (go-e MQTT) instead of being polled.
    push: bool = False

    @abc.abstractmethod
    async def read_status(self) -> ChargerStatus:
        """The charger's current status; raises ChargerUnavailable."""

    @abc.abstractmethod
    async def write(self, changes: Mapping[str, WireValue]) -> None:
        """Send go-e keys and verify the charger took them; raises WriteRejected (the
        charger said no, with its text) or ChargerUnavailable (no answer)."""

    async def run(
        self,
        on_status: Callable[[ChargerStatus], None],
        on_unavailable: Callable[[str], None],
    ) -> None:
        """Push transports deliver statuses here instead of being polled."""
        raise NotImplementedError(f"{self.kind} transports are polled")

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, "api": self.api.value if self.api else None}
