"""asyncio helpers."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, seconds: float | None) -> bool:
    """Wait for `event` at most `seconds`; True if it was set.

    Not `asyncio.wait_for(event.wait(), timeout)`: on Python 3.11 that can swallow a
    cancellation arriving just as the event is set (CPython gh-86296), and a loop built on
    it then never stops. `asyncio.timeout()` tells its own timeout from a cancellation.
    """
    if seconds is None:
        await event.wait()
        return True
    try:
        async with asyncio.timeout(max(0.0, seconds)):
            await event.wait()
    except TimeoutError:
        return False
    return True


class Wakeup:
    """Wakes one waiting task: `set()` ends the current wait, or the next one at once until
    `clear()`. Per wait one future and one timer, what `asyncio.sleep` costs; an Event
    under `asyncio.timeout()` costs about twice that, and its waiter is woken only after
    everything scheduled before it (bench/floor.py and command_latency.py profiles).
    Cancellation-safe: a cancelled wait raises CancelledError and leaves no timer behind."""

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._set = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    async def wait(self, seconds: float | None) -> bool:
        """Until set, at most `seconds` (None: no limit); True if it was set."""
        if self._set:
            return True
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if seconds is None else loop.call_later(max(0.0, seconds), _release, waiter)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter = None
        return self._set


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library swallowed.

    aiomqtt awaits its operations through `asyncio.wait_for`, which on Python 3.11 loses a
    cancellation that arrives as the operation completes (CPython gh-86296, fixed in 3.12).
    The task's cancel request count survives, so loops calling aiomqtt check it after each
    call; without this a shutdown can hang forever in a sender loop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
