"""The request/reply contract through the Python face, on every transport."""

from __future__ import annotations

import array
import os
import select
import threading

import pytest
from conftest import EchoThread, fresh_name

import ipcall


def test_the_installed_module_is_the_abi3_wheel() -> None:
    # The tests run against the installed wheel, never the source tree.
    native = ipcall._ipcall.__file__
    assert native is not None and native.endswith(".abi3.so"), native
    assert "site-packages" in native


def test_round_trip(echo: ipcall.Server) -> None:
    with ipcall.connect(echo.name) as client:
        assert client.name == echo.name
        assert client.call(b"ping") == b"ping"
        assert client.call(b"") == b""


def test_any_bytes_like_object_is_accepted(echo: ipcall.Server) -> None:
    with ipcall.connect(echo.name) as client:
        assert client.call(bytearray(b"array")) == b"array"
        assert client.call(memoryview(b"xxviewxx")[2:6]) == b"view"
        assert client.call(array.array("B", [1, 2, 3])) == b"\x01\x02\x03"
        assert client.call(array.array("H", [0x0102])) == array.array("H", [0x0102]).tobytes()
        # A non-contiguous view is flattened, not refused or truncated.
        assert client.call(memoryview(b"abcdef")[::2]) == b"ace"
        for not_bytes in ("text", 42, None, [1, 2]):
            with pytest.raises(TypeError, match="bytes-like"):
                client.call(not_bytes)  # type: ignore[arg-type]


def test_large_message_round_trips_intact(echo: ipcall.Server) -> None:
    payload = os.urandom(3 << 20)
    with ipcall.connect(echo.name) as client:
        assert client.call(payload) == payload


def test_request_carries_data_and_peer(kind: str) -> None:
    with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name) as client:
        pending = client.send(b"who am i")
        request = server.recv(timeout=10)
        assert isinstance(request.data, bytes) and request.data == b"who am i"
        assert request.data is request.data  # built once, not copied per access
        peer = request.peer
        assert peer.pid == os.getpid() and peer.uid == os.getuid() and peer.gid == os.getgid()
        assert peer == request.peer and hash(peer) == hash(request.peer)
        assert "Peer(pid=" in repr(peer)
        assert request.pending
        request.reply(b"you are you")
        assert not request.pending
        assert pending.wait(timeout=10) == b"you are you"


def test_server_iteration_ends_when_closed(kind: str) -> None:
    server = ipcall.Server.bind_unique(kind)
    seen = []

    def consume() -> None:
        for request in server:
            seen.append(request.data)
            request.reply(b"ok")

    thread = threading.Thread(target=consume)
    thread.start()
    with ipcall.connect(server.name) as client:
        for i in range(5):
            assert client.call(b"%d" % i) == b"ok"
    server.close()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert seen == [b"0", b"1", b"2", b"3", b"4"]
    assert server.closed


def test_context_managers_close_everything(kind: str) -> None:
    with ipcall.Server.bind_unique(kind) as server:
        with ipcall.connect(server.name) as client:
            pending = client.send(b"x")
            with server.recv(timeout=10) as request:
                pass  # left unanswered: the caller gets NoReply
            with pytest.raises(ipcall.NoReply):
                pending.wait(timeout=10)
            with client.send(b"y"):
                pass  # abandoned on exit
            server.recv(timeout=10).reply(b"nobody waits for this")
        assert client.closed
        assert not request.pending
    assert server.closed
    with pytest.raises(ipcall.Closed):
        server.recv(timeout=0)


def test_try_recv_and_fileno(kind: str) -> None:
    with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name) as client:
        assert server.try_recv() is None
        fd = server.fileno()
        assert select.select([fd], [], [], 0)[0] == []
        pending = client.send(b"poll me")
        # Readable once a request may be ready (spurious readiness allowed).
        assert select.select([fd], [], [], 10)[0] == [fd]
        request = None
        while request is None:
            request = server.try_recv()
        request.reply(request.data)
        assert pending.wait(timeout=10) == b"poll me"


def test_pending_wait_done_and_close(kind: str) -> None:
    with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name) as client:
        first, second, third = client.send(b"1"), client.send(b"2"), client.send(b"3")
        assert not first.done()
        requests = [server.recv(timeout=10) for _ in range(3)]
        for request in reversed(requests):  # answered out of order
            request.reply(request.data * 2)
        third.close()  # abandoned: its reply is discarded
        assert second.wait(timeout=10) == b"22"
        while not first.done():
            pass
        assert first.done()
        assert first.wait() == b"11"
        with pytest.raises(ipcall.Closed):
            first.wait()
        with pytest.raises(ipcall.Closed):
            third.wait()
        assert first.name == server.name


def test_slices_never_abandon_a_slow_call(kind: str) -> None:
    # Waits run in 50 ms slices; a reply that takes several still arrives.
    with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name) as client:
        pending = client.send(b"slow")
        request = server.recv(timeout=10)
        timer = threading.Timer(0.3, request.reply, args=(b"worth the wait",))
        timer.start()
        assert pending.wait() == b"worth the wait"
        timer.join()

        timer = threading.Timer(0.3, lambda: server.recv(timeout=10).reply(b"slow call"))
        timer.start()
        assert client.call(b"x") == b"slow call"
        timer.join()


def test_clone_is_independent(echo: ipcall.Server) -> None:
    client = ipcall.connect(echo.name)
    twin = client.clone()
    client.close()
    assert client.closed and not twin.closed
    assert twin.call(b"still here") == b"still here"
    with pytest.raises(ipcall.Closed):
        client.call(b"closed")
    with pytest.raises(ipcall.Closed):
        client.clone()
    twin.close()


def test_request_answered_after_its_server_is_gone(kind: str) -> None:
    server = ipcall.Server.bind_unique(kind)
    client = ipcall.connect(server.name)
    pending = client.send(b"late")
    request = server.recv(timeout=10)
    server.close()
    del server
    request.reply(b"answered anyway")
    assert pending.wait(timeout=10) == b"answered anyway"
    client.close()


def test_accept_and_one_shot(kind: str) -> None:
    name = fresh_name(kind)
    with ipcall.Server.bind(name, one_shot=True) as server:
        with pytest.raises(ipcall.Timeout):
            server.accept(timeout=0.02)
        client = ipcall.connect(name)
        server.accept(timeout=10)
        # The name was removed at once: nobody else can connect.
        with pytest.raises(ipcall.NotFound):
            ipcall.connect(name)
        pending = client.send(b"only one")
        server.recv(timeout=10).reply(b"yes")
        assert pending.wait(timeout=10) == b"yes"
        client.close()
        # The one client left: the server is finished.
        with pytest.raises(ipcall.Closed):
            server.recv(timeout=10)


def test_bind_options_are_accepted(kind: str) -> None:
    access: dict[str, object] = {"allow_uids": (os.getuid(),), "allow_gids": [os.getgid()], "allow_any_uid": False}
    if kind == "pipe":
        # pipe: serves its own uid only (a 0700 directory, FIFOs carry no
        # credentials): allow-lists are refused, never silently ignored.
        with pytest.raises(ipcall.PermissionDenied):
            ipcall.Server.bind_unique(kind, **access)  # type: ignore[arg-type]
        access = {}
    with ipcall.Server.bind_unique(
        kind,
        max_message_size=1 << 16,
        handshake_timeout=2.5,
        ring_size=1 << 16,
        **access,  # type: ignore[arg-type]
    ) as server:
        thread = EchoThread(server)
        with ipcall.connect(server.name, max_message_size=1 << 16) as client:
            assert client.call(b"options") == b"options"
    thread.stop()
    with pytest.raises(ValueError):
        ipcall.Server.bind_unique(kind, handshake_timeout=-1)
    with pytest.raises(OverflowError):
        ipcall.Server.bind_unique(kind, max_message_size=1 << 32)


def test_timeouts_are_validated(echo: ipcall.Server) -> None:
    with ipcall.connect(echo.name) as client:
        for bad in (-1.0, float("nan")):
            with pytest.raises(ValueError, match="timeout"):
                client.call(b"x", timeout=bad)
        assert client.call(b"inf", timeout=float("inf")) == b"inf"


def test_repr_names_the_endpoint(kind: str) -> None:
    with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name) as client:
        assert server.name in repr(server) and server.name in repr(client)
        pending = client.send(b"abc")
        request = server.recv(timeout=10)
        assert "3 bytes" in repr(request)
        assert "waiting" in repr(pending)
        request.reply(b"")
        pending.wait(timeout=10)
    assert "closed" in repr(server) and "closed" in repr(client)
