"""asyncio on the loop thread itself: `recv_async` and `call_async` watch the
server's and the client's descriptors with ``loop.add_reader`` and read there,
with no thread per call and no thread hop; cancellation loses nothing."""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import List, Optional

import pytest
from conftest import EchoThread, fresh_name, spawn_peer

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
def test_server_and_client_in_one_loop(kind: str) -> None:
    threads_before = threading.active_count()

    async def main() -> None:
        async with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name) as client:

            async def serve() -> int:
                served = 0
                async for request in server:
                    request.reply(b"re:" + request.data)
                    served += 1
                return served

            serving = asyncio.ensure_future(serve())
            replies = await asyncio.gather(*(client.call_async(b"%d" % i) for i in range(1000)))
            assert replies == [b"re:%d" % i for i in range(1000)]
            assert threading.active_count() <= threads_before
            server.close()
            assert await serving == 1000

    run(main())




def test_a_thousand_concurrent_calls_all_matched(echo: ipcall.Server) -> None:
    async def main() -> None:
        async with ipcall.connect(echo.name) as client:
            assert await client.call_async(b"warm-up") == b"warm-up"
            threads_before = threading.active_count()
            replies = await asyncio.gather(*(client.call_async(b"call %d" % i) for i in range(1000)))
            assert replies == [b"call %d" % i for i in range(1000)]
            # No thread was started per call (nor any at all).
            assert threading.active_count() <= threads_before
            assert client._native._async_len() == 0

    run(main())


def test_large_requests_wait_on_the_loop_for_room(kind: str) -> None:
    """More bytes than the socket, pipe or ring holds, from one loop that also
    serves them: requests that find no room wait on the loop, in order."""

    async def main() -> None:
        async with ipcall.Server.bind_unique(kind, ring_size=64 * 1024) as server, ipcall.connect(server.name) as client:

            async def serve() -> None:
                async for request in server:
                    request.reply(request.data[:8])

            serving = asyncio.ensure_future(serve())
            blobs = [bytes([i]) * (256 * 1024) for i in range(40)]
            replies = await asyncio.gather(*(client.call_async(blob) for blob in blobs))
            assert replies == [blob[:8] for blob in blobs]
            server.close()
            await serving

    run(main())


def test_call_async_timeout(kind: str) -> None:
    async def main() -> None:
        async with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name) as client:
            with pytest.raises(ipcall.Timeout):
                await client.call_async(b"unanswered", timeout=0.05)
            late = await server.recv_async()
            late.reply(b"late")  # discarded, never given to the next call
            following = asyncio.ensure_future(client.call_async(b"next", timeout=30))
            request = await server.recv_async()
            request.reply(b"next reply")
            assert await following == b"next reply"
            with pytest.raises(ValueError):
                await client.call_async(b"x", timeout=-1)
            assert client._native._async_len() == 0

    run(main())


def test_cancelling_calls_loses_nothing(kind: str) -> None:
    """Every other call is cancelled in flight: the server still gets every
    request, the others get their own replies, and late replies go nowhere."""

    async def main() -> None:
        async with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name) as client:
            calls = [asyncio.ensure_future(client.call_async(b"%d" % i)) for i in range(200)]
            await asyncio.sleep(0)  # all sent
            for call in calls[::2]:
                call.cancel()
            received = []
            for _ in range(200):
                request = await server.recv_async()
                received.append(request.data)
                request.reply(b"re:" + request.data)
            assert sorted(received) == sorted(b"%d" % i for i in range(200))
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            for i, outcome in enumerate(outcomes):
                if i % 2 == 0:
                    assert isinstance(outcome, asyncio.CancelledError)
                else:
                    assert outcome == b"re:%d" % i
            following = asyncio.ensure_future(client.call_async(b"after"))
            request = await server.recv_async()
            assert request.data == b"after"
            request.reply(b"after reply")
            assert await following == b"after reply"
            assert client._native._async_len() == 0

    run(main())


def test_server_killed_mid_call_raises_disconnected(process_kind: str, peer_binary: Path) -> None:
    peer = spawn_peer(peer_binary, "serve", "--unique", process_kind)
    try:
        assert peer.stdout is not None
        name = peer.stdout.readline().strip()

        async def main() -> None:
            async with ipcall.connect(name, timeout=10) as client:
                assert await client.call_async(b"alive") == b"alive"
                os.kill(peer.pid, signal.SIGSTOP)  # it cannot answer what follows
                calls = [asyncio.ensure_future(client.call_async(b"%d" % i)) for i in range(10)]
                await asyncio.sleep(0.01)
                os.kill(peer.pid, signal.SIGKILL)
                for outcome in await asyncio.gather(*calls, return_exceptions=True):
                    assert isinstance(outcome, ipcall.Disconnected), outcome
                with pytest.raises(ipcall.Disconnected):
                    await client.call_async(b"after")

        run(main())
    finally:
        peer.kill()
        peer.communicate()
        # A killed server cannot remove its endpoint: the test does.
        path = name.split(":", 1)[1] if "name" in locals() else ""
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif path and os.path.exists(path):
            os.unlink(path)


def test_one_client_many_loops_clones_and_threads(echo: ipcall.Server) -> None:
    """Four loops on four threads, a clone on each, and a thread making
    blocking calls, all on one connection: every reply reaches its caller."""
    client = ipcall.connect(echo.name)
    results: List[object] = []

    def on_a_loop(tag: bytes) -> None:
        async def main() -> List[bytes]:
            mine = client.clone()
            half = [client.call_async(tag + b"%d" % i) for i in range(150)]
            other = [mine.call_async(tag + b"c%d" % i) for i in range(150)]
            replies = list(await asyncio.gather(*half, *other))
            mine.close()
            return replies

        results.append(asyncio.run(asyncio.wait_for(main(), timeout=30)))

    def blocking() -> None:
        results.append([client.call(b"sync %d" % i, timeout=30) for i in range(100)])

    threads = [threading.Thread(target=on_a_loop, args=(tag,)) for tag in (b"a", b"b", b"c", b"d")]
    threads.append(threading.Thread(target=blocking))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(map(repr, results)) == sorted(
        [repr([bytes([t]) + b"%d" % i for i in range(150)] + [bytes([t]) + b"c%d" % i for i in range(150)]) for t in b"abcd"]
        + [repr([b"sync %d" % i for i in range(100)])]
    )
    assert client._native._async_len() == 0
    client.close()


def test_pending_done_on_a_connection_an_event_loop_drives(echo: ipcall.Server) -> None:
    async def main() -> None:
        async with ipcall.connect(echo.name) as client:
            assert await client.call_async(b"evented now") == b"evented now"
            pending = client.send(b"polled")
            deadline = time.monotonic() + 30
            while not pending.done():
                assert time.monotonic() < deadline, "done() never became true"
                await asyncio.sleep(0.001)
            assert pending.wait(timeout=1) == b"polled"

    run(main())


def test_closing_an_async_client_disconnects_at_once(kind: str) -> None:
    """The loop's reader holds the connection only while calls are in
    flight: a one-shot server sees its client leave as soon as it closes."""

    async def main() -> None:
        name = fresh_name(kind)
        with ipcall.Server.bind(name, one_shot=True) as server:
            thread = EchoThread(server)
            client = ipcall.connect(name)
            assert await client.call_async(b"one") == b"one"
            client.close()  # no loop turn in between
            thread.thread.join(timeout=30)
            assert not thread.thread.is_alive(), "the server did not see its client leave"
            assert not thread.errors, thread.errors

    run(main())
