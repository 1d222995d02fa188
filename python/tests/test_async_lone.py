"""`call_async`'s lone-call path: a call with no other `call_async` in
flight on its connection is sent at once and its reply looked for before
the loop is involved (over ``shm:`` with the core's brief spin,
`Client::progress_spin`); only a call not answered then gets a Future on
the running loop. These tests check the outcomes, never the timing: lone
calls in a row and calls that go through the loop, against a Rust server in
another process over every transport and ``shm:`` wait mode; a lone call
that must go to the loop when none runs; and errors on the lone path."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

import pytest
from conftest import EchoThread, require, spawn_peer

import ipcall

WAIT_MODES = ["adaptive", "spin", "block"]


def run(coroutine: "asyncio.Future[object] | object", timeout: float = 120) -> object:
    return asyncio.run(asyncio.wait_for(coroutine, timeout=timeout))  # type: ignore[arg-type]


@contextmanager
def rust_server(peer_binary: Path, kind: str) -> Iterator[str]:
    """A Rust echo server (`peer serve`) of `kind` in another process."""
    peer = spawn_peer(peer_binary, "serve", "--unique", kind)
    name = ""
    try:
        assert peer.stdout is not None
        name = peer.stdout.readline().strip()
        yield name
    finally:
        peer.kill()
        peer.communicate(timeout=30)
        # A killed server cannot remove its endpoint: the test does.
        path = name.split(":", 1)[1] if name else ""
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif path and os.path.exists(path):
            os.unlink(path)


def against_rust(peer_binary: Path, kind: str, wait_mode: Optional[str]) -> None:
    with rust_server(peer_binary, kind) as name:

        async def main() -> None:
            async with ipcall.connect(name, timeout=10, wait_mode=wait_mode) as client:  # type: ignore[arg-type]
                await lone_then_gathered(client, kind.encode())
                assert client._native._async_len() == 0
                # The blocking face on the same connection still works after it.
                assert client.call(b"sync") == b"sync"

        run(main())


async def lone_then_gathered(client: ipcall.Client, tag: bytes) -> None:
    """Lone calls one after another, then a burst through the loop, then lone again."""
    for i in range(300):
        data = b"%s lone %d" % (tag, i)
        assert await client.call_async(data) == data
    burst = [b"%s burst %d" % (tag, i) for i in range(64)]
    assert await asyncio.gather(*(client.call_async(d) for d in burst)) == burst
    for i in range(300):
        data = b"%s again %d" % (tag, i)
        assert await client.call_async(bytearray(data)) == data
    with pytest.raises(ipcall.RemoteError) as failed:
        await client.call_async(b"fail:lone")
    assert failed.value.payload == b"lone"
    with pytest.raises(ipcall.NoReply):
        await client.call_async(b"noreply")


def test_lone_and_gathered_calls_against_a_rust_server(process_kind: str, peer_binary: Path) -> None:
    against_rust(peer_binary, process_kind, None)


@pytest.mark.parametrize("wait_mode", WAIT_MODES)
def test_every_shm_wait_mode(peer_binary: Path, wait_mode: str) -> None:
    """`spin` spins wherever the server runs, `block` never does."""
    require("shm")
    against_rust(peer_binary, "shm", wait_mode)


def test_lone_calls_in_process(kind: str) -> None:
    """The same against a Python server thread of this process (`mem:` too)."""
    server = ipcall.Server.bind_unique(kind)
    thread = EchoThread(server)
    try:

        async def main() -> None:
            async with ipcall.connect(server.name) as client:
                await lone_then_gathered(client, kind.encode())
                assert client._native._async_len() == 0

        run(main())
    finally:
        thread.stop()


def test_a_call_that_needs_the_loop_without_one_raises_and_is_abandoned(kind: str) -> None:
    """Driven without a running loop, a call whose reply is not there at
    once raises RuntimeError (as asyncio does); it is abandoned, so its late
    reply never reaches the next call."""
    server = ipcall.Server.bind_unique(kind)
    release = threading.Event()

    def hold_first(request: ipcall.Request) -> None:
        if request.data == b"held":
            assert release.wait(60), "never released"
        request.reply(request.data)

    thread = EchoThread(server, hold_first)
    try:
        with ipcall.connect(server.name) as client:
            coroutine = client.call_async(b"held")
            with pytest.raises(RuntimeError):
                coroutine.send(None)
            coroutine.close()
            assert client._native._async_len() == 0
            release.set()
            assert client.call(b"next", timeout=30) == b"next"

            async def main() -> None:
                assert await client.call_async(b"on a loop") == b"on a loop"

            run(main())
    finally:
        release.set()
        thread.stop()


def test_lone_call_errors_keep_the_client_usable(kind: str) -> None:
    """TooLarge is raised on the lone path before anything is sent; a
    closed client raises Closed."""
    server = ipcall.Server.bind_unique(kind)
    thread = EchoThread(server)
    try:

        async def main() -> None:
            client = ipcall.connect(server.name, max_message_size=1024)
            with pytest.raises(ipcall.TooLarge):
                await client.call_async(b"x" * 1025)
            assert await client.call_async(b"fits") == b"fits"
            client.close()
            with pytest.raises(ipcall.Closed):
                await client.call_async(b"closed")

        run(main())
    finally:
        thread.stop()
