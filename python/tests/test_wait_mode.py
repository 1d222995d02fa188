"""The `wait_mode` and `connection_name` options: every server wait mode
with every client wait mode carries calls over ``shm:``; the mode reaches
the core (a spinning caller burns CPU while it waits, a blocking one does
not); bad values raise ValueError. What a ``nats:`` server sees of a
connection name is tested in test_nats.py."""

from __future__ import annotations

import threading
import time
from typing import List

import pytest
from conftest import EchoThread, require

import ipcall

MODES: List[str] = ["adaptive", "spin", "block"]  # as ipcall spells them


@pytest.mark.parametrize("server_mode", MODES)
def test_every_server_mode_with_every_client_mode_over_shm(server_mode: str) -> None:
    require("shm")
    server = ipcall.Server.bind_unique("shm", wait_mode=server_mode)
    thread = EchoThread(server)
    for client_mode in MODES:
        with ipcall.connect(server.name, wait_mode=client_mode) as client:
            for size in (0, 1, 100_000, 3_000_000):  # the last one is larger than the ring
                data = bytes([size % 251]) * size
                assert client.call(data, timeout=60) == data, (server_mode, client_mode, size)
    thread.stop()


def test_other_transports_accept_and_ignore_a_wait_mode() -> None:
    server = ipcall.Server.bind_unique("unix", wait_mode="spin")
    thread = EchoThread(server)
    with ipcall.connect(server.name, wait_mode="block") as client:
        assert client.call(b"x", timeout=60) == b"x"
    thread.stop()


def _cpu_of(thread_id: int) -> float:
    """CPU seconds used so far by the thread `thread_id` (Linux)."""
    return time.clock_gettime(time.pthread_getcpuclockid(thread_id))


def _held_call(mode: str, hold_until_cpu: bool) -> tuple:
    """One shm: call whose reply the server holds: until the caller's
    thread has used 0.2 s of CPU (at most 60 s), or for 1 s. Returns (the
    caller's CPU seconds during the call, whether the CPU mark was reached)."""
    server = ipcall.Server.bind_unique("shm", wait_mode="block")
    caller = threading.get_ident()
    outcome: list = []

    def hold() -> None:
        request = server.recv(timeout=60)
        start, reached = _cpu_of(caller), False
        deadline = time.monotonic() + (60 if hold_until_cpu else 1)
        while time.monotonic() < deadline:
            if hold_until_cpu and _cpu_of(caller) - start >= 0.2:
                reached = True
                break
            time.sleep(0.01)
        outcome.append(reached)
        request.reply(b"done")

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    with ipcall.connect(server.name, wait_mode=mode) as client:
        before = time.thread_time()
        assert client.call(b"hold", timeout=120) == b"done"
        used = time.thread_time() - before
    holder.join(timeout=60)
    server.close()
    return used, outcome[0]


def test_the_mode_reaches_the_core_spin_burns_cpu_block_does_not() -> None:
    """A resource bound, not a timing: a caller that spins accumulates CPU
    while its reply is held (the server waits for 0.2 s of it, however
    loaded the machine); one that blocks uses well under that in a second."""
    require("shm")
    used, reached = _held_call("spin", hold_until_cpu=True)
    assert reached, f"a spinning caller used only {used:.3f} s of CPU in 60 s"
    used, _ = _held_call("block", hold_until_cpu=False)
    assert used < 0.2, f"a blocking caller used {used:.3f} s of CPU waiting 1 s"


@pytest.mark.parametrize("bad", ["", "Spin", "busy", "spin "])
def test_a_bad_wait_mode_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match="wait_mode"):
        ipcall.Server.bind_unique("mem", wait_mode=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="wait_mode"):
        ipcall.connect("mem:nobody-needed", wait_mode=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ipcall.connect("mem:nobody-needed", wait_mode=1)  # type: ignore[arg-type]


def test_connection_names_are_checked_and_ignored_by_local_transports() -> None:
    server = ipcall.Server.bind_unique("unix", connection_name="local server")
    seen: list = []

    def record(request: ipcall.Request) -> None:
        seen.append(request.peer.name)
        request.reply(b"ok")

    thread = EchoThread(server, record)
    with ipcall.connect(server.name, connection_name="n" * 256) as client:
        assert client.call(b"x", timeout=60) == b"ok"
    thread.stop()
    assert seen == [None]
    for bad in ["", "n" * 257, "tab\there", "nul\0"]:
        with pytest.raises(ValueError, match="connection_name"):
            ipcall.connect("mem:nobody-needed", connection_name=bad)
        with pytest.raises(ValueError, match="connection_name"):
            ipcall.Server.bind_unique("mem", connection_name=bad)
