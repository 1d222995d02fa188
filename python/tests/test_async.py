"""asyncio: recv_async and call_async run on the event loop, no thread per call."""

from __future__ import annotations

import asyncio
import select
import threading
import time
from typing import List

import pytest
from conftest import EchoThread

import ipcall


def run(coroutine: "asyncio.Future[object] | object") -> object:
    return asyncio.run(asyncio.wait_for(coroutine, timeout=30))  # type: ignore[arg-type]


def test_call_async(echo: ipcall.Server) -> None:
    async def main() -> None:
        async with ipcall.connect(echo.name) as client:
            assert await client.call_async(b"hello") == b"hello"
            assert await client.call_async(bytearray(b"array")) == b"array"
            with pytest.raises(ipcall.RemoteError) as caught:
                await client.call_async(b"fail:async")
            assert caught.value.payload == b"async"
            with pytest.raises(ipcall.NoReply):
                await client.call_async(b"noreply")

    run(main())


def test_a_thousand_concurrent_calls_on_one_client(echo: ipcall.Server) -> None:
    threads_before = threading.active_count()

    async def main() -> None:
        client = ipcall.connect(echo.name)
        calls = [client.call_async(b"call %d" % i) for i in range(1000)]
        replies = await asyncio.gather(*calls)
        assert replies == [b"call %d" % i for i in range(1000)]
        # No thread was started per call.
        assert threading.active_count() == threads_before
        client.close()

    run(main())


def test_cancelling_a_call_leaves_the_client_usable(kind: str) -> None:
    async def main() -> None:
        with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name) as client:
            task = asyncio.ensure_future(client.call_async(b"slow"))
            request = await server.recv_async()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The late reply is discarded, never given to the next call.
            request.reply(b"late")
            follow_up = asyncio.ensure_future(client.call_async(b"next"))
            request = await server.recv_async()
            assert request.data == b"next"
            request.reply(b"next reply")
            assert await follow_up == b"next reply"
            # wait_for's timeout cancels the same way.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.call_async(b"too slow"), timeout=0.05)
            (await server.recv_async()).reply(b"too late")
            assert client._native._async_len() == 0

    run(main())


def test_recv_async_and_async_iteration(kind: str) -> None:
    async def main() -> None:
        server = ipcall.Server.bind_unique(kind)
        client = ipcall.connect(server.name)
        seen: List[bytes] = []

        async def serve() -> None:
            async for request in server:
                seen.append(request.data)
                request.reply(request.data[::-1])

        serving = asyncio.ensure_future(serve())
        replies = await asyncio.gather(*(client.call_async(b"ab%d" % i) for i in range(50)))
        assert replies == [(b"ab%d" % i)[::-1] for i in range(50)]
        server.close()  # ends the async for
        await serving
        assert sorted(seen) == sorted(b"ab%d" % i for i in range(50))
        client.close()

    run(main())


def test_many_receivers_and_closing_wakes_them(kind: str) -> None:
    async def main() -> None:
        server = ipcall.Server.bind_unique(kind)
        receivers = [asyncio.ensure_future(server.recv_async()) for _ in range(5)]
        await asyncio.sleep(0.01)
        client = ipcall.connect(server.name)
        pendings = [client.send(b"%d" % i) for i in range(3)]
        done, _ = await asyncio.wait(receivers, return_when=asyncio.FIRST_COMPLETED)
        while sum(r.done() for r in receivers) < 3:
            await asyncio.sleep(0.001)
        got = sorted(r.result().data for r in receivers if r.done())
        assert got == [b"0", b"1", b"2"]
        for r in receivers:
            if r.done():
                r.result().reply(b"ok")
        assert [p.wait(timeout=10) for p in pendings] == [b"ok"] * 3
        server.close()
        for r in receivers:
            if not r.done():
                with pytest.raises(ipcall.Closed):
                    await r
        with pytest.raises(ipcall.Closed):
            await server.recv_async()
        client.close()

    run(main())


def test_cancelled_receiver_loses_no_request(kind: str) -> None:
    async def main() -> None:
        with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name) as client:
            first = asyncio.ensure_future(server.recv_async())
            second = asyncio.ensure_future(server.recv_async())
            for _ in range(3):
                await asyncio.sleep(0)  # both are now waiting
            pending = client.send(b"precious")
            select.select([server.fileno()], [], [], 10)
            # Hand the request to `first` (as the reader callback would), then
            # cancel `first` before it resumes: the request must go to the next
            # receiver, not be dropped (which would give the caller NoReply).
            server._dispatch(asyncio.get_running_loop())
            first.cancel()
            results = await asyncio.gather(first, second, return_exceptions=True)
            assert isinstance(results[0], asyncio.CancelledError)
            assert isinstance(results[1], ipcall.Request) and results[1].data == b"precious"
            results[1].reply(b"kept")
            assert pending.wait(timeout=10) == b"kept"

    run(main())


def test_a_handed_back_request_reaches_a_thread_blocked_in_recv(kind: str) -> None:
    # What a cancelled receiver does (`_push_back`), seen from `recv`: the
    # request goes to a thread blocked there (it looks once per slice; the
    # pause below lets it start waiting first, and the request must reach
    # it either way), and one handed back to a server that then closes
    # answers NoReply.
    with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name) as client:
        pending = client.send(b"handed back")
        taken = server.recv(timeout=10)
        got: List[ipcall.Request] = []
        receiver = threading.Thread(target=lambda: got.append(server.recv(timeout=10)))
        receiver.start()
        time.sleep(0.2)
        server._native._push_back(taken)
        receiver.join(timeout=20)
        assert not receiver.is_alive() and got[0] is taken
        got[0].reply(b"kept")
        assert pending.wait(timeout=10) == b"kept"

        second = client.send(b"dropped at close")
        server._native._push_back(server.recv(timeout=10))
        server.close()
        with pytest.raises(ipcall.NoReply):
            second.wait(timeout=10)


def test_recv_async_with_a_thread_server_and_sync_clients(kind: str) -> None:
    async def main() -> None:
        with ipcall.Server.bind_unique(kind) as server:
            def client_thread() -> None:
                with ipcall.connect(server.name) as client:
                    assert client.call(b"from a thread", timeout=30) == b"thread ok"

            thread = threading.Thread(target=client_thread)
            thread.start()
            request = await server.recv_async()
            assert request.data == b"from a thread"
            request.reply(b"thread ok")
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 30)

    run(main())


def test_call_async_errors_before_sending(kind: str) -> None:
    async def main() -> None:
        with ipcall.Server.bind_unique(kind, max_message_size=8) as server:
            thread = EchoThread(server)
            async with ipcall.connect(server.name) as client:
                with pytest.raises(ipcall.TooLarge):
                    await client.call_async(b"123456789")
                with pytest.raises(TypeError):
                    await client.call_async("text")  # type: ignore[arg-type]
                assert await client.call_async(b"fits") == b"fits"
            thread.stop()
            with pytest.raises(ipcall.Closed):
                await client.call_async(b"closed client")

    run(main())


def test_call_async_disconnected_when_the_server_goes_away(kind: str) -> None:
    async def main() -> None:
        server = ipcall.Server.bind_unique(kind)
        client = ipcall.connect(server.name)
        call = asyncio.ensure_future(client.call_async(b"orphan"))
        await asyncio.sleep(0.01)
        server.close()
        with pytest.raises(ipcall.Disconnected):
            await call
        client.close()

    run(main())


def test_one_client_on_two_event_loops(echo: ipcall.Server) -> None:
    client = ipcall.connect(echo.name)
    results: List[object] = []

    def in_thread(tag: bytes) -> None:
        async def main() -> List[bytes]:
            return list(await asyncio.gather(*(client.call_async(tag + b"%d" % i) for i in range(200))))

        results.append(asyncio.run(main()))

    threads = [threading.Thread(target=in_thread, args=(tag,)) for tag in (b"a", b"b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(map(repr, results)) == sorted(
        repr([tag + b"%d" % i for i in range(200)]) for tag in (b"a", b"b")
    )
    client.close()
