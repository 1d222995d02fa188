"""`Server.drain`: graceful close through the Python face, on every transport."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import ipcall

LIMIT = 30.0


def wait_unbound(name: str) -> None:
    deadline = time.monotonic() + LIMIT
    while True:
        try:
            ipcall.connect(name).close()
        except ipcall.NotFound:
            return
        except ipcall.Disconnected:
            pass  # raced with the close in progress
        assert time.monotonic() < deadline, f"{name} still bound after drain began"
        time.sleep(0.01)


def test_drain_answers_what_was_taken_and_refuses_the_rest(kind: str) -> None:
    server = ipcall.Server.bind_unique(kind)
    with ipcall.connect(server.name) as client:
        owed = client.send(b"taken")
        request = server.recv(timeout=LIMIT)
        result: list[bool] = []
        drainer = threading.Thread(target=lambda: result.append(server.drain()))
        drainer.start()
        wait_unbound(server.name)
        assert drainer.is_alive(), "drain returned while a request was unanswered"
        with pytest.raises(ipcall.Disconnected):
            client.call(b"after drain began", timeout=LIMIT)
        with pytest.raises(ipcall.Closed):
            server.recv(timeout=LIMIT)
        request.reply(b"answered")
        assert owed.wait(timeout=LIMIT) == b"answered"
        drainer.join(LIMIT)
        assert result == [True]
        assert server.closed


def test_drain_times_out_on_a_request_never_answered(kind: str) -> None:
    server = ipcall.Server.bind_unique(kind)
    with ipcall.connect(server.name) as client:
        owed = client.send(b"held")
        request = server.recv(timeout=LIMIT)
        assert server.drain(timeout=0.1) is False
        request.close()
        with pytest.raises(ipcall.NoReply):
            owed.wait(timeout=LIMIT)
    with pytest.raises(ValueError):
        server.drain(timeout=-1)


def test_drain_on_an_idle_server_is_clean_at_once(kind: str) -> None:
    server = ipcall.Server.bind_unique(kind)
    assert server.drain(timeout=0) is True
    with pytest.raises(ipcall.NotFound):
        ipcall.connect(server.name)


def test_drain_async_lets_the_loop_answer(kind: str) -> None:
    async def main() -> None:
        server = ipcall.Server.bind_unique(kind)
        with ipcall.connect(server.name) as client:
            owed = client.send(b"taken")
            request = await server.recv_async()
            draining = asyncio.ensure_future(server.drain_async(timeout=LIMIT))
            await asyncio.sleep(0)
            request.reply(b"answered on the loop")
            assert await asyncio.wait_for(draining, LIMIT) is True
            assert owed.wait(timeout=LIMIT) == b"answered on the loop"

    asyncio.run(main())
