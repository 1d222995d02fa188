"""The caller's deadline on the request (`Request.deadline`): a call with a
timeout carries it, as a `time.monotonic()` value on the server's side, over
every local transport, from `call`, `call_async` (also when its request
waits for room) and threads alike; a plain call has None."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Iterator

import pytest
from conftest import EchoThread

import ipcall

HUNDRED_YEARS = 100 * 365 * 24 * 60 * 60


def judge(request: ipcall.Request) -> None:
    """Replies whether the request's deadline is what its data says its
    caller's timeout was: ``-`` none, ``max`` a "forever" one (clamped to
    100 years), else that many seconds (the data may go on after a space)."""
    expected = request.data.split(b" ")[0].decode()
    deadline = request.deadline
    now = time.monotonic()
    if deadline is None:
        verdict = "none" if expected == "-" else "missing"
    elif expected == "-":
        verdict = f"unexpected, {deadline - now} s away"
    elif expected == "max":
        ok = HUNDRED_YEARS - 3600 < deadline - now <= HUNDRED_YEARS
        verdict = "ok" if ok else f"{deadline - now} s away, not clamped to 100 years"
    else:
        # The caller's remaining time counts from the request's arrival, before `now`.
        ok = now <= deadline <= now + float(expected)
        verdict = "ok" if ok else f"{deadline - now} s away, timeout {expected} s"
    # Kept after the answer: the deadline is still there.
    request.reply(verdict.encode())
    assert request.deadline == deadline


@pytest.fixture
def judging(kind: str) -> Iterator[ipcall.Server]:
    server = ipcall.Server.bind_unique(kind)
    thread = EchoThread(server, judge)
    yield server
    thread.stop()


def test_a_timed_call_carries_its_deadline_and_a_plain_call_none(judging: ipcall.Server) -> None:
    with ipcall.connect(judging.name) as client:
        assert client.call(b"60", timeout=60) == b"ok"
        assert client.call(b"-") == b"none"
        # A send followed by a timed wait has none: the wait is decided later.
        assert client.send(b"-").wait(timeout=60) == b"none"


@pytest.mark.parametrize("forever", [math.inf, 1e300, 2.0**64])
def test_a_timeout_too_long_for_a_duration_is_clamped_not_an_error(judging: ipcall.Server, forever: float) -> None:
    with ipcall.connect(judging.name) as client:
        assert client.call(b"max", timeout=forever) == b"ok"

        async def main() -> bytes:
            return await client.call_async(b"max", timeout=forever)

        assert asyncio.run(main()) == b"ok"


@pytest.mark.parametrize("bad", [-1.0, math.nan])
def test_a_bad_timeout_is_a_value_error_and_sends_nothing(judging: ipcall.Server, bad: float) -> None:
    with ipcall.connect(judging.name) as client:
        with pytest.raises(ValueError, match="timeout"):
            client.call(b"60", timeout=bad)

        async def main() -> bytes:
            return await client.call_async(b"60", timeout=bad)

        with pytest.raises(ValueError, match="timeout"):
            asyncio.run(main())
        # Nothing went out: the next request is answered as itself.
        assert client.call(b"-") == b"none"


def test_call_async_carries_its_deadline_and_a_plain_one_none(judging: ipcall.Server) -> None:
    async def main() -> None:
        async with ipcall.connect(judging.name) as client:
            # Alone (sent and caught on this thread)...
            assert await client.call_async(b"60", timeout=60) == b"ok"
            assert await client.call_async(b"-") == b"none"
            # ...and many at once (through the loop), timed or not.
            datas = [b"60 %d" % i if i % 2 else b"- %d" % i for i in range(40)]
            replies = await asyncio.gather(
                *(client.call_async(data, timeout=60 if i % 2 else None) for i, data in enumerate(datas))
            )
            assert replies == [b"ok" if i % 2 else b"none" for i in range(40)]

    asyncio.run(main())


def test_call_async_requests_that_wait_for_room_keep_their_deadline() -> None:
    # A 4 KiB request ring takes two of these at a time: the others wait in
    # the loop's queue and go out when the server frees room.
    server = ipcall.Server.bind_unique("shm", ring_size=4096)
    thread = EchoThread(server, judge)
    padding = b" " + b"x" * 1500

    async def main() -> None:
        async with ipcall.connect(server.name) as client:
            calls = [
                client.call_async((b"60" if i % 2 else b"-") + padding, timeout=60 if i % 2 else None) for i in range(30)
            ]
            replies = await asyncio.gather(*calls)
            assert replies == [b"ok" if i % 2 else b"none" for i in range(30)]

    asyncio.run(main())
    thread.stop()
