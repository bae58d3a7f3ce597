"""The bridge's record on local disk, beside the one it keeps on the broker.

The broker is the bridge's memory (lifecycle.py), but a broker that restores an older database
after a power cut (mosquitto saves every `autosave_interval`, 30 minutes by default) forgets
what happened since: the bridge's own record rolls back with it, and a command the bridge
handled after the save comes back (the one that was on its way, with the DUP flag). When the
bridge and the broker lose power together (Home Assistant OS with the mosquitto add-on, a Pi),
the only copy that went on is this file: every record carries a sequence number, and at start
the newer of the two is taken. With it the bridge also knows the packet identifiers of the
commands it handled (mqtt/link.py) and drops their re-deliveries after its own restart.

Written atomically (a temporary file, fsync, rename), at most every SAVE_DELAY_S; a file that
cannot be read is logged and ignored. Optional: without `state_file` (and no systemd
STATE_DIRECTORY) the broker's record alone is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import jsontext, logs

__all__ = ["StateFile", "default_path"]

log = logs.get("goe_bridge.state")

VERSION = 1
# a burst of changes (a command and its effects) is written once
SAVE_DELAY_S = 0.2


def default_path(configured: str | None, env: Mapping[str, str]) -> str | None:
    """The configured file, else state.json in systemd's StateDirectory= (the unit sets
    STATE_DIRECTORY to /var/lib/goe-bridge)."""
    if configured:
        return configured
    state_dir = env.get("STATE_DIRECTORY", "").split(":")[0]
    return str(Path(state_dir) / "state.json") if state_dir else None


class StateFile:
    def __init__(self, path: str, collect: Callable[[], dict[str, Any]]) -> None:
        self.path = Path(path)
        self.collect = collect
        self._scheduled = False
        self.failed = False
        self.saved = 0

    def load(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text("utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("state.unreadable", path=str(self.path), error=str(exc))
            return None
        try:
            data = jsontext.loads(text)
        except ValueError:  # not JSON, or nested too deeply
            log.warning("state.unreadable", path=str(self.path), error="not JSON")
            return None
        if not isinstance(data, dict) or data.get("v") != VERSION:
            return None
        return data

    def schedule(self) -> None:
        """Save soon (once for a burst of changes)."""
        if self._scheduled:
            return
        self._scheduled = True
        with contextlib.suppress(RuntimeError):  # no loop (tests of pure parts)
            asyncio.get_running_loop().call_later(SAVE_DELAY_S, self._save_now)
            return
        self._scheduled = False

    def _save_now(self) -> None:
        self._scheduled = False
        self.save()

    def save(self) -> None:
        data = {"v": VERSION, **self.collect()}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w", encoding="utf-8") as fh:
                json.dump(data, fh, separators=(",", ":"))
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(self.path)
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)  # the rename itself survives a power cut
            finally:
                os.close(fd)
        except OSError as exc:
            if not self.failed:
                log.warning("state.not_saved", path=str(self.path), error=str(exc),
                            message="the record for the next start is kept on the broker "
                            "only")  # fmt: skip
            self.failed = True
            return
        if self.failed:
            log.info("state.saved_again", path=str(self.path))
        self.failed = False
        self.saved += 1
