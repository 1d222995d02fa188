"""`Request.wait_cancelled_async`: waiting for a caller to give up, on an
asyncio loop, with no thread and no polling.

Each loop with waits pending watches one bell (`_ipcall._CancelBell`, a
socket pair) with ``loop.add_reader``. A wait hands the request the bell and
a token; when the request is decided — its caller gave up, or it was
answered or closed — the library rings the bell with that token from
whatever thread learnt it, without the GIL, and the loop settles the wait's
Future. A loop's bell goes (its reader removed, its sockets closed) once no
wait is pending there.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Dict

from . import _ipcall


class _LoopBell:
    """The bell one loop watches, and the Futures of the waits on it."""

    __slots__ = ("native", "futures")

    def __init__(self) -> None:
        self.native = _ipcall._CancelBell()
        self.futures: Dict[int, asyncio.Future[None]] = {}

    def rung(self) -> None:
        """On the loop: settles the waits whose requests were decided."""
        for token in self.native.take():
            future = self.futures.pop(token, None)
            if future is not None and not future.done():
                future.set_result(None)


# The bell of each loop with waits pending (only that loop's thread touches
# its entry).
_bells: Dict[asyncio.AbstractEventLoop, _LoopBell] = {}
_tokens = itertools.count(1)


async def wait_cancelled(request: _ipcall.Request) -> bool:
    """Returns True once `request`'s caller gave up, False once the request
    was answered or closed first (at once if either happened already).
    Cancelling the wait leaves the request as it was."""
    loop = asyncio.get_running_loop()
    if not request.pending:
        return request.cancelled
    bell = _bells.get(loop)
    if bell is None:
        bell = _bells[loop] = _LoopBell()
        loop.add_reader(bell.native.fileno(), bell.rung)
    token = next(_tokens)
    try:
        decided = request._ring_when_settled(bell.native, token)
        if decided is not None:
            return decided
        future: asyncio.Future[None] = loop.create_future()
        bell.futures[token] = future
        try:
            await future
        finally:
            if bell.futures.pop(token, None) is not None:
                # Not rung: this wait was cancelled. The request keeps no
                # trace of it.
                request._forget_bell(bell.native, token)
    finally:
        if not bell.futures and _bells.get(loop) is bell:
            del _bells[loop]
            if not loop.is_closed():
                loop.remove_reader(bell.native.fileno())
    return request.cancelled
