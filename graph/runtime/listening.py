"""Following a PostgreSQL notification channel for ever: one listener task per process.

A lost connection is reopened with a growing pause (0.5 s doubling up to 30 s); after each
reconnection `caught_up` runs, since notifications sent while nobody listened are not replayed.
A failing handler is logged and the listening goes on.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from persistence import PersistenceError, notifications

log = logging.getLogger("failcast.listening")

MAX_PAUSE_SECONDS = 30.0


async def follow(
    heard: Callable[[], AsyncIterator[str]],
    what: str,
    on_notice: Callable[[str], Awaitable[None]],
    caught_up: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Call `on_notice(payload)` for each notification `heard()` yields, reconnecting for ever."""
    pause = 0.5
    while True:
        notices = heard()
        try:
            async for payload in notices:
                pause = 0.5
                await _logged(on_notice(payload), what)
        except PersistenceError as error:
            log.warning("%s listener lost (%s); reconnecting in %.1f s", what, error, pause)
        finally:
            await notifications.close_quietly(notices)
        await asyncio.sleep(pause)
        pause = min(MAX_PAUSE_SECONDS, pause * 2)
        if caught_up is not None:
            await _logged(caught_up(), what)


async def _logged(work: Awaitable[None], what: str) -> None:
    try:
        await work
    except PersistenceError as error:
        log.warning("%s: %s", what, error)
    except Exception:  # a bug must not end the listening: log it and go on
        log.exception("%s failed unexpectedly", what)
