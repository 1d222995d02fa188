"""`nats:` from Python against a real nats-server this test starts on a free
loopback port: Python server and client, Python against the Rust peer in
another process, asyncio, errors, and credentials that never show."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional

import pytest
from conftest import REPO, EchoThread, peer_script, spawn_peer

import ipcall

_subjects = itertools.count()


def nats_server_binary() -> str:
    """$IPCALL_NATS_SERVER, the repository's .venv, or PATH; never a skip."""
    candidates = [os.environ.get("IPCALL_NATS_SERVER"), str(REPO / ".venv" / "bin" / "nats-server"), shutil.which("nats-server")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("nats-server not found: run `make nats-server` or set IPCALL_NATS_SERVER")


class NatsNode:
    """One nats-server on 127.0.0.1, port chosen by the server itself."""

    def __init__(self, *extra: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="ipcall-nats-py-")
        self.process = subprocess.Popen(
            [nats_server_binary(), "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", self.dir, *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ports = Path(self.dir) / f"nats-server_{self.process.pid}.ports"
        deadline = time.monotonic() + 20
        while True:
            if ports.exists():
                try:
                    self.addr = json.loads(ports.read_text())["nats"][0].split("://", 1)[1]
                    break
                except (ValueError, KeyError, IndexError):
                    pass
            assert self.process.poll() is None, "nats-server exited at start"
            assert time.monotonic() < deadline, "nats-server did not start within 20 s"
            time.sleep(0.02)

    def name(self, tag: str) -> str:
        return f"nats://{self.addr}/test.py.{tag}.{os.getpid()}.{next(_subjects)}"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def nats() -> Iterator[NatsNode]:
    node = NatsNode()
    yield node
    node.stop()


def test_python_server_and_client(nats: NatsNode) -> None:
    server = ipcall.Server.bind(nats.name("basic"))
    thread = EchoThread(server)
    with ipcall.connect(server.name) as client:
        assert client.call(b"hello") == b"hello"
        big = bytes(range(256)) * (12 * 1024)  # 3 MiB: in chunks
        assert client.call(big) == big
        with pytest.raises(ipcall.RemoteError) as failed:
            client.call(b"fail:boom")
        assert failed.value.payload == b"boom"
        with pytest.raises(ipcall.NoReply):
            client.call(b"noreply")
    thread.stop()


def test_ping_and_stats_over_nats(nats: NatsNode) -> None:
    server = ipcall.Server.bind(nats.name("stats"))
    with ipcall.connect(server.name) as client:
        # Nobody receives yet: the server's NATS task answers.
        assert client.ping(timeout=20) > 0
        assert client.server_stats(timeout=20).calls == 0
        thread = EchoThread(server)
        assert client.call(b"hello") == b"hello"
        stats = client.server_stats(timeout=20)
        assert (stats.calls, stats.replies, stats.bytes_in, stats.bytes_out, stats.connections) == (1, 1, 5, 5, 0)
        thread.stop()
        with pytest.raises(ipcall.Disconnected):
            client.ping(timeout=20)


def test_asyncio_over_nats(nats: NatsNode) -> None:
    server = ipcall.Server.bind(nats.name("async"))

    async def main() -> bytes:
        async def serve_one() -> None:
            request = await server.recv_async()
            request.reply(request.data + b"!")

        client = ipcall.connect(server.name)
        serving = asyncio.ensure_future(serve_one())
        reply = await client.call_async(b"async")
        await serving
        client.close()
        return reply

    assert asyncio.run(main()) == b"async!"
    server.close()


def test_a_thousand_concurrent_async_calls_over_nats(nats: NatsNode) -> None:
    """call_async over nats: on the loop thread (the NATS runtime completes
    the calls and rings the client's descriptor), all matched, no thread per
    call; a server in the same loop; cancelled and timed-out calls lose
    nothing."""
    server = ipcall.Server.bind(nats.name("async1000"))

    async def main() -> None:
        async def serve() -> None:
            async for request in server:
                if request.data != b"unanswered":
                    request.reply(b"re:" + request.data)

        serving = asyncio.ensure_future(serve())
        async with ipcall.connect(server.name, timeout=10) as client:
            assert await client.call_async(b"warm-up", timeout=30) == b"re:warm-up"
            threads_before = threading.active_count()
            replies = await asyncio.gather(*(client.call_async(b"%d" % i, timeout=60) for i in range(1000)))
            assert replies == [b"re:%d" % i for i in range(1000)]
            assert threading.active_count() <= threads_before
            with pytest.raises(ipcall.Timeout):
                await client.call_async(b"unanswered", timeout=0.2)
            cancelled = asyncio.ensure_future(client.call_async(b"cancelled"))
            await asyncio.sleep(0)
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            assert await client.call_async(b"after", timeout=30) == b"re:after"
            assert client._native._async_len() == 0
        server.close()
        await serving

    asyncio.run(asyncio.wait_for(main(), timeout=60))


def test_a_timed_call_carries_its_deadline_over_nats(nats: NatsNode) -> None:
    from test_deadline import judge

    server = ipcall.Server.bind(nats.name("deadline"))
    thread = EchoThread(server, judge)
    with ipcall.connect(server.name) as client:
        assert client.call(b"60", timeout=60) == b"ok"
        assert client.call(b"-") == b"none"
        assert client.call(b"max", timeout=float("inf")) == b"ok"

        async def main() -> None:
            assert await client.call_async(b"60", timeout=60) == b"ok"
            assert await client.call_async(b"-") == b"none"

        asyncio.run(main())
    thread.stop()


def test_not_found_and_disconnected(nats: NatsNode) -> None:
    with pytest.raises(ipcall.NotFound):
        ipcall.connect(nats.name("nobody"))
    server = ipcall.Server.bind(nats.name("gone"))
    client = ipcall.connect(server.name)
    server.close()
    with pytest.raises(ipcall.Disconnected):
        client.call(b"anyone?", timeout=30)


@pytest.mark.parametrize("direction", ["rust-server", "rust-client"])
def test_python_and_rust_processes(nats: NatsNode, peer_binary: Path, direction: str) -> None:
    name = nats.name("cross")
    if direction == "rust-server":
        child = spawn_peer(peer_binary, "serve", name)
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == name
            client = ipcall.connect(name, timeout=10)
            for size in (0, 1, 100_000, 2_000_000):
                data = os.urandom(size)
                assert client.call(data) == data
            with pytest.raises(ipcall.RemoteError):
                client.call(b"fail:x")
        finally:
            child.kill()
            child.communicate()
    else:
        server = ipcall.Server.bind(name)
        thread = EchoThread(server)
        child = spawn_peer(peer_binary, "client", name, "--calls", "100")
        out, err = child.communicate(timeout=120)
        thread.stop()
        assert child.returncode == 0, err
        assert out.strip() == "ok 100"


def test_peer_is_the_callers_nats_connection(nats: NatsNode) -> None:
    server = ipcall.Server.bind(nats.name("peer"))
    peers: List[ipcall.Peer] = []

    def record(request: ipcall.Request) -> None:
        peers.append(request.peer)
        request.reply(b"")

    thread = EchoThread(server, record)
    with ipcall.connect(server.name) as a, ipcall.connect(server.name) as b:
        for client in (a, b, a):
            client.call(b"who")
    thread.stop()
    me = f"ipcall client (pid {os.getpid()})"
    for peer in peers:
        # NATS tells nothing of the sender's process or user.
        assert (peer.pid, peer.uid, peer.gid) == (None, None, None)
        assert isinstance(peer.nats_client_id, int) and peer.name == me
        assert f"name={me!r}".replace("'", '"') in repr(peer)
    # One id per connection.
    assert peers[0].nats_client_id == peers[2].nats_client_id != peers[1].nats_client_id
    assert peers[0] == peers[2] and hash(peers[0]) == hash(peers[2]) and peers[0] != peers[1]


def test_peer_from_a_rust_process(nats: NatsNode, peer_binary: Path) -> None:
    server = ipcall.Server.bind(nats.name("peer-rust"))
    peers: List[ipcall.Peer] = []

    def record(request: ipcall.Request) -> None:
        peers.append(request.peer)
        peer_script(request)

    thread = EchoThread(server, record)
    child = spawn_peer(peer_binary, "client", server.name, "--calls", "3")
    out, err = child.communicate(timeout=120)
    thread.stop()
    assert child.returncode == 0, err
    assert peers and {p.name for p in peers} == {f"ipcall client (pid {child.pid})"}
    assert len({p.nats_client_id for p in peers}) == 1 and peers[0].nats_client_id is not None


def test_a_chosen_connection_name_reaches_a_rust_server(nats: NatsNode, peer_binary: Path) -> None:
    """Python client -> Rust server in another process: the Rust server's
    `peer_name()` is the name the Python client chose."""
    name = nats.name("conn-name-to-rust")
    child = spawn_peer(peer_binary, "serve", name)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == name
        with ipcall.connect(name, timeout=10, connection_name="python billing ✓") as client:
            assert client.call(b"peer-name", timeout=60).decode() == "python billing ✓"
        with ipcall.connect(name, timeout=10) as client:
            assert client.call(b"peer-name", timeout=60).decode() == f"ipcall client (pid {os.getpid()})"
    finally:
        child.kill()
        child.communicate()


def test_a_rust_clients_chosen_name_reaches_a_python_server(nats: NatsNode, peer_binary: Path) -> None:
    server = ipcall.Server.bind(nats.name("conn-name-from-rust"), connection_name="python server")
    names: List[Optional[str]] = []

    def record(request: ipcall.Request) -> None:
        names.append(request.peer.name)
        peer_script(request)

    thread = EchoThread(server, record)
    child = spawn_peer(peer_binary, "client", server.name, "--calls", "2", "--connection-name", "rust worker 7")
    out, err = child.communicate(timeout=120)
    thread.stop()
    assert child.returncode == 0, err
    assert names and set(names) == {"rust worker 7"}


def test_other_transports_tell_no_nats_identity() -> None:
    for kind in ("unix", "mem"):
        with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name) as client:
            pending = client.send(b"x")
            request = server.recv(timeout=10)
            assert request.peer.nats_client_id is None and request.peer.name is None
            assert request.peer.pid == os.getpid()
            request.reply(b"")
            pending.wait(timeout=10)


def test_credentials_never_show() -> None:
    node = NatsNode("--user", "py", "--pass", "tiger-pw")
    try:
        subject = f"test.py.creds.{os.getpid()}"
        name = f"nats://py:tiger-pw@{node.addr}/{subject}"
        server = ipcall.Server.bind(name)
        assert server.name == f"nats://{node.addr}/{subject}"
        thread = EchoThread(server)
        client = ipcall.connect(name)
        assert client.call(b"x") == b"x"
        assert "tiger" not in repr(client) + client.name
        errors: List[Optional[BaseException]] = []
        for bad in (f"nats://py:wrong-pw@{node.addr}/{subject}", "nats://py:tiger-pw@h:0/x"):
            with pytest.raises(ipcall.Error) as caught:
                ipcall.connect(bad)
            errors.append(caught.value)
        for error in errors:
            assert "tiger" not in str(error) and "wrong-pw" not in str(error), str(error)
        assert isinstance(errors[0], ipcall.PermissionDenied)
        assert isinstance(errors[1], ipcall.InvalidName)
        client.close()
        thread.stop()
    finally:
        node.stop()


def test_a_cancelled_call_async_task_cancels_its_acknowledged_request_over_nats(nats: NatsNode) -> None:
    # Only a call its server acknowledged can be cancelled over nats (the
    # ack, 10 ms after arrival, names the instance): the task is cancelled
    # once that may have happened; an attempt whose ack had not arrived yet
    # cannot cancel, so the wait grows and the attempt repeats (bounded).
    server = ipcall.Server.bind(nats.name("cancel"))
    got: "queue.Queue[None]" = queue.Queue()
    verdicts: "queue.Queue[bool]" = queue.Queue()

    def serve() -> None:
        for request in server:
            if request.data == b"done":
                request.reply(b"bye")
                return
            got.put(None)
            until = time.monotonic() + 2
            while not request.cancelled and time.monotonic() < until:
                time.sleep(0.001)
            verdicts.put(request.cancelled)
            request.reply(b"late")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def main() -> bool:
        async with ipcall.connect(server.name) as client:
            loop = asyncio.get_running_loop()
            for attempt in range(1, 11):
                task = asyncio.ensure_future(client.call_async(b"slow"))
                await loop.run_in_executor(None, lambda: got.get(timeout=30))
                await asyncio.sleep(0.1 * attempt)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                if await loop.run_in_executor(None, lambda: verdicts.get(timeout=30)):
                    assert await client.call_async(b"done", timeout=30) == b"bye"
                    return True
            return False

    assert asyncio.run(main()), "no attempt's cancel reached the server"
    thread.join(30)
    server.close()
