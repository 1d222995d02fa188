"""Python and Rust in separate processes, over every transport that reaches
another process (`unix:`, `pipe:`, `shm:` as they land; each is skipped with
its reason until then). The Rust side is `target/debug/examples/peer`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from conftest import EchoThread, spawn_peer

import ipcall


@pytest.fixture
def rust_server(peer_binary: Path, process_kind: str) -> Iterator[str]:
    """A Rust `peer serve --unique KIND` process; yields its name."""
    child = spawn_peer(peer_binary, "serve", "--unique", process_kind)
    try:
        assert child.stdout is not None
        name = child.stdout.readline().strip()
        assert name.startswith(process_kind + ":"), (name, child.stderr.read() if child.stderr else "")
        yield name
    finally:
        child.kill()
        child.communicate()


def test_python_server_rust_client(peer_binary: Path, process_kind: str) -> None:
    server = ipcall.Server.bind_unique(process_kind)
    thread = EchoThread(server)
    child = spawn_peer(peer_binary, "client", server.name, "--calls", "200")
    out, err = child.communicate(timeout=120)
    thread.stop()
    assert child.returncode == 0, err
    assert out.strip() == "ok 200"


def test_python_server_rust_client_name_through_the_environment(peer_binary: Path, process_kind: str) -> None:
    server = ipcall.Server.bind_unique(process_kind)
    peers = []

    def handler(request: ipcall.Request) -> None:
        peers.append(request.peer)
        if request.data.startswith(b"fail:"):
            request.fail(request.data[5:])
        elif request.data == b"noreply":
            request.close()
        else:
            request.reply(request.data)

    thread = EchoThread(server, handler)
    child = spawn_peer(peer_binary, "client", "--calls", "5", env={"IPCALL_SERVER": server.name})
    out, err = child.communicate(timeout=120)
    thread.stop()
    assert child.returncode == 0, err
    assert out.strip() == "ok 5"
    # The peer's identity is the other process's.
    assert {p.pid for p in peers} == {child.pid}
    assert {p.uid for p in peers} == {os.getuid()}


def test_python_client_rust_server(rust_server: str) -> None:
    with ipcall.connect(rust_server, timeout=10) as client:
        for size in (0, 1, 100, 65536, 1 << 20):
            payload = os.urandom(size)
            assert client.call(payload, timeout=30) == payload
        with pytest.raises(ipcall.RemoteError) as caught:
            client.call(b"fail:boom", timeout=30)
        assert caught.value.payload == b"boom"
        with pytest.raises(ipcall.NoReply):
            client.call(b"noreply", timeout=30)
        pendings = [client.send(b"pipelined %d" % i) for i in range(100)]
        assert [p.wait(timeout=30) for p in pendings] == [b"pipelined %d" % i for i in range(100)]


def test_python_client_rust_server_asyncio(rust_server: str) -> None:
    async def main() -> None:
        async with ipcall.connect(rust_server, timeout=10) as client:
            replies = await asyncio.gather(*(client.call_async(b"async %d" % i) for i in range(1000)))
            assert replies == [b"async %d" % i for i in range(1000)]
            with pytest.raises(ipcall.RemoteError):
                await client.call_async(b"fail:x")

    asyncio.run(asyncio.wait_for(main(), timeout=60))


def test_rust_server_killed_gives_disconnected(peer_binary: Path, process_kind: str) -> None:
    child = spawn_peer(peer_binary, "serve", "--unique", process_kind)
    try:
        assert child.stdout is not None
        name = child.stdout.readline().strip()
        client = ipcall.connect(name, timeout=10)
        assert client.call(b"alive", timeout=30) == b"alive"
        pending = client.send(b"noreply")  # dropped by the peer... or not: it dies first
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        with pytest.raises((ipcall.Disconnected, ipcall.NoReply)):
            pending.wait(timeout=30)
        with pytest.raises(ipcall.Disconnected):
            client.call(b"anyone?", timeout=30)
        client.close()
    finally:
        child.kill()
        child.communicate()


PY_SERVER = r"""
import sys
import ipcall
server = ipcall.Server.bind_unique(sys.argv[1])
print(server.name, flush=True)
for request in server:
    if request.data == b"stop":
        request.reply(b"stopping")
        break
    request.reply(request.data + b" from python")
"""


def test_python_client_python_server(process_kind: str, tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", PY_SERVER, process_kind],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert child.stdout is not None
        name = child.stdout.readline().strip()
        with ipcall.connect(name, timeout=10) as client:
            assert client.call(b"hello", timeout=30) == b"hello from python"
            assert client.call(b"stop", timeout=30) == b"stopping"
        assert child.wait(timeout=30) == 0
    finally:
        child.kill()
        child.communicate()


def test_peer_harness_smoke(peer_binary: Path) -> None:
    # Proves the harness while only mem: exists: the peer starts, binds a
    # name of the asked kind in its own process, and prints it on one line.
    child = spawn_peer(peer_binary, "serve", "--unique", "mem")
    try:
        assert child.stdout is not None
        assert child.stdout.readline().startswith("mem:unique-")
    finally:
        child.kill()
        child.communicate()
