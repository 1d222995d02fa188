"""Threads: blocking waits release the GIL; one client shared by many threads."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import EchoThread

import ipcall


def test_sixteen_threads_share_one_client(echo: ipcall.Server) -> None:
    client = ipcall.connect(echo.name)
    failures = []
    barrier = threading.Barrier(16)

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            for i in range(200):
                data = b"%d:%d:" % (index, i) + bytes([index]) * (i % 97)
                if i % 10 == 0:
                    pending = client.send(data)
                    assert pending.wait(timeout=30) == data
                else:
                    assert client.call(data, timeout=30) == data
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    assert failures == []
    client.close()


def test_several_threads_receive_from_one_server(kind: str) -> None:
    server = ipcall.Server.bind_unique(kind)
    served = []
    lock = threading.Lock()

    def serve() -> None:
        for request in server:
            with lock:
                served.append(threading.get_ident())
            request.reply(request.data)

    receivers = [threading.Thread(target=serve) for _ in range(4)]
    for thread in receivers:
        thread.start()
    with ipcall.connect(server.name) as client:
        pendings = [client.send(b"%d" % i) for i in range(400)]
        assert [p.wait(timeout=30) for p in pendings] == [b"%d" % i for i in range(400)]
    # close() from this thread wakes every blocked receiver with Closed.
    server.close()
    for thread in receivers:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in receivers)
    assert len(served) == 400


def test_blocking_recv_releases_the_gil(kind: str) -> None:
    # The receiver blocks in recv() with no request in sight; if it held the
    # GIL, this thread could not run Python code (and the test would time out).
    with ipcall.Server.bind_unique(kind) as server:
        received = []
        receiver = threading.Thread(target=lambda: received.append(server.recv(timeout=30)))
        receiver.start()
        deadline = time.monotonic() + 0.3
        spins = 0
        while time.monotonic() < deadline:
            spins += 1
        assert spins > 1000
        with ipcall.connect(server.name) as client:
            pending = client.send(b"wake up")
            receiver.join(timeout=30)
            received[0].reply(b"awake")
            assert pending.wait(timeout=30) == b"awake"


def test_blocking_call_releases_the_gil(kind: str) -> None:
    # The server here is Python code on another thread: a call() that held
    # the GIL while waiting would deadlock with it.
    server = ipcall.Server.bind_unique(kind)
    thread = EchoThread(server, handler=lambda request: (time.sleep(0.01), request.reply(request.data)))
    with ipcall.connect(server.name) as client:
        for i in range(20):
            assert client.call(b"%d" % i, timeout=30) == b"%d" % i
    thread.stop()


@pytest.mark.parametrize("size", [0, 1, 4096, 1 << 20])
def test_data_integrity_across_threads(echo: ipcall.Server, size: int) -> None:
    with ipcall.connect(echo.name) as client:
        payload = bytes((i * 7 + size) % 251 for i in range(size))
        assert client.call(payload, timeout=30) == payload
