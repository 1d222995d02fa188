"""asyncio on the loop thread itself: `recv_async` and `call_async` watch the
server's and the client's descriptors with ``loop.add_reader`` and read there,
with no thread per call and no thread hop; cancellation loses nothing."""

from __future__ import annotations

import asyncio
import select
import threading
import time
from typing import List, Optional

import pytest

import ipcall


def run(coroutine: "asyncio.Future[object] | object", timeout: float = 60) -> object:
    return asyncio.run(asyncio.wait_for(coroutine, timeout=timeout))  # type: ignore[arg-type]


async def hand_to_cancelled_receiver(server: ipcall.Server, client: ipcall.Client, data: bytes) -> ipcall.Pending:
    """Sends `data`, hands the request to a receiver (as the reader callback
    would) and leaves that receiver cancelled before it resumed: the request
    is then back with the server. Returns the call in flight."""
    loop = asyncio.get_running_loop()
    first = asyncio.ensure_future(server.recv_async())
    for _ in range(3):
        await asyncio.sleep(0)  # `first` is now waiting
    pending = client.send(data)
    assert select.select([server.fileno()], [], [], 10)[0], "the request did not arrive"
    server._dispatch(loop)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    return pending


def test_handed_back_request_reaches_a_thread_blocked_in_recv(kind: str) -> None:
    async def main() -> None:
        with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name) as client:
            got: List[ipcall.Request] = []
            errors: List[BaseException] = []
            started = threading.Event()

            def receive() -> None:
                started.set()
                try:
                    got.append(server.recv(timeout=30))
                except BaseException as error:  # reported below
                    errors.append(error)

            loop = asyncio.get_running_loop()
            first = asyncio.ensure_future(server.recv_async())
            for _ in range(3):
                await asyncio.sleep(0)
            pending = client.send(b"precious")
            assert select.select([server.fileno()], [], [], 10)[0]
            server._dispatch(loop)  # the request is now `first`'s...
            first.cancel()  # ...which is cancelled before it resumes
            thread = threading.Thread(target=receive)
            thread.start()
            # Blocks the loop (so `first` cannot resume yet) until the thread
            # is most likely blocked in recv.
            started.wait(10)
            time.sleep(0.05)
            with pytest.raises(asyncio.CancelledError):  # hands the request back
                await first
            await loop.run_in_executor(None, thread.join, 30)
            assert not errors, errors
            assert [r.data for r in got] == [b"precious"]
            got[0].reply(b"kept")
            assert pending.wait(timeout=10) == b"kept"

    run(main())


def test_handed_back_request_reaches_a_receiver_on_another_loop(kind: str) -> None:
    async def main() -> None:
        with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name) as client:
            got: List[bytes] = []
            other_loop: Optional[asyncio.AbstractEventLoop] = None
            waiting = threading.Event()

            def other() -> None:
                async def receive() -> None:
                    nonlocal other_loop
                    other_loop = asyncio.get_running_loop()
                    receiving = asyncio.ensure_future(server.recv_async())
                    await asyncio.sleep(0)
                    waiting.set()
                    request = await receiving
                    got.append(request.data)
                    request.reply(b"from the other loop")

                asyncio.run(asyncio.wait_for(receive(), timeout=30))

            loop = asyncio.get_running_loop()
            first = asyncio.ensure_future(server.recv_async())
            for _ in range(3):
                await asyncio.sleep(0)
            pending = client.send(b"precious")
            assert select.select([server.fileno()], [], [], 10)[0]
            server._dispatch(loop)  # the request is now `first`'s...
            first.cancel()  # ...which is cancelled before it resumes
            thread = threading.Thread(target=other)
            thread.start()
            # Blocks this loop (so `first` cannot resume yet) until the other
            # loop's receiver waits.
            assert waiting.wait(10)
            with pytest.raises(asyncio.CancelledError):  # hands the request back
                await first
            await loop.run_in_executor(None, thread.join, 30)
            assert got == [b"precious"]
            assert pending.wait(timeout=10) == b"from the other loop"

    run(main())


def test_handed_back_request_is_the_next_recv(kind: str) -> None:
    async def main() -> None:
        with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name) as client:
            pending = await hand_to_cancelled_receiver(server, client, b"again")
            request = server.try_recv()
            assert request is not None and request.data == b"again"
            request.reply(b"answered once")
            assert pending.wait(timeout=10) == b"answered once"
            assert server.try_recv() is None

    run(main())


def test_cancelling_receivers_loses_no_request(kind: str) -> None:
    """Receivers are cancelled at random points while requests stream in:
    every request is still received exactly once and answered."""

    async def main() -> None:
        async with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name) as client:
            count = 300
            pendings: List[ipcall.Pending] = []

            def send_all() -> None:
                # From a thread: a send may block until this loop reads.
                pendings.extend(client.send(b"%d" % i) for i in range(count))

            sender = threading.Thread(target=send_all)
            sender.start()
            seen: List[bytes] = []
            deadline = time.monotonic() + 30
            while len(seen) < count and time.monotonic() < deadline:
                receivers = [asyncio.ensure_future(server.recv_async()) for _ in range(4)]
                await asyncio.sleep(0)
                receivers[0].cancel()
                receivers[2].cancel()
                await asyncio.sleep(0)
                for receiver in receivers:
                    receiver.cancel()
                for outcome in await asyncio.gather(*receivers, return_exceptions=True):
                    if isinstance(outcome, ipcall.Request):
                        seen.append(outcome.data)
                        outcome.reply(outcome.data)
                    else:
                        assert isinstance(outcome, asyncio.CancelledError)
            sender.join(timeout=30)
            assert sorted(seen) == sorted(b"%d" % i for i in range(count))
            assert [p.wait(timeout=10) for p in pendings] == [b"%d" % i for i in range(count)]

    run(main())
