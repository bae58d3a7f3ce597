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
