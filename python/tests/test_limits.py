"""The server limits as keywords of `Server.bind` / `Server.bind_unique`:
a client over `max_connections` is refused at connect, a client that never
reads is dropped alone once its replies pass `max_queued_reply_bytes`, and
every invalid value raises ValueError. (The timeouts' effects are tested in
rust/ipcall/tests/slow_peer.rs and hostile.rs; here that Python passes them.)
"""

from __future__ import annotations

import math
import time
from typing import Any, Dict, List

import pytest
from conftest import EchoThread, require

import ipcall

# Every wait is bounded by this (a loaded 2-CPU machine).
BOUND = 60.0
CROSS_PROCESS_KINDS = ["unix", "pipe", "shm"]


def repeat_1024(request: ipcall.Request) -> None:
    """Answers with the request repeated 1024 times (1 KiB in, 1 MiB out)."""
    try:
        request.reply(request.data * 1024)
    except ipcall.Error:
        pass  # the client may have been dropped: that is what is tested


@pytest.mark.parametrize("kind", CROSS_PROCESS_KINDS)
def test_a_client_over_max_connections_is_refused_with_io_error(kind: str) -> None:
    require(kind)
    server = ipcall.Server.bind_unique(kind, max_connections=1)
    thread = EchoThread(server)
    try:
        with ipcall.connect(server.name, timeout=BOUND) as first:
            assert first.call(b"one", timeout=BOUND) == b"one"
            with pytest.raises(ipcall.IoError, match="maximum number of connections"):
                ipcall.connect(server.name)
        # Once the server has seen the first one leave, a new client gets in.
        deadline = time.monotonic() + BOUND
        while True:
            try:
                second = ipcall.connect(server.name)
                break
            except ipcall.IoError:
                assert time.monotonic() < deadline, "no slot freed after a client left"
                time.sleep(0.05)
        with second:
            assert second.call(b"two", timeout=BOUND) == b"two"
    finally:
        thread.stop()


@pytest.mark.parametrize("kind", CROSS_PROCESS_KINDS)
def test_a_client_that_never_reads_is_dropped_alone_past_its_reply_budget(kind: str) -> None:
    require(kind)
    server = ipcall.Server.bind_unique(kind, max_queued_reply_bytes=2 << 20)
    threads = [EchoThread(server, repeat_1024), EchoThread(server, repeat_1024)]
    try:
        bad = ipcall.connect(server.name, timeout=BOUND)
        unread: List[ipcall.Pending] = []
        for _ in range(32):
            try:
                unread.append(bad.send(bytes([2]) * 1024))
            except ipcall.Disconnected:
                break
        assert unread
        # While the bad client sits on its answers, another one is served.
        with ipcall.connect(server.name, timeout=BOUND) as good:
            assert good.call(b"ok", timeout=BOUND) == b"ok" * 1024
        # 32 answers of 1 MiB queue far past 2 MiB: the bad client is dropped,
        # so some of its waits raise Disconnected; any answer that did come is
        # whole and unaltered.
        disconnected = 0
        for pending in unread:
            try:
                assert pending.wait(BOUND) == bytes([2]) * (1 << 20)
            except ipcall.Disconnected:
                disconnected += 1
        assert disconnected > 0, "the client over its reply budget was never dropped"
        bad.close()
        with ipcall.connect(server.name, timeout=BOUND) as after:
            assert after.call(b"still", timeout=BOUND) == b"still" * 1024
    finally:
        for thread in threads:
            thread.server.close()
        for thread in threads:
            thread.stop()


def test_every_limit_passes_through_bind_and_bind_unique() -> None:
    require("unix")
    limits: Dict[str, Any] = dict(
        max_queued_reply_bytes=1 << 20, reply_timeout=2.5, max_connections=8, frame_timeout=0.5
    )
    server = ipcall.Server.bind_unique("unix", **limits)
    name = server.name
    server.close()
    server = ipcall.Server.bind(name, **limits)
    thread = EchoThread(server)
    try:
        with ipcall.connect(server.name, timeout=BOUND) as client:
            assert client.call(b"limits", timeout=BOUND) == b"limits"
    finally:
        thread.stop()


INVALID = [
    ("max_queued_reply_bytes", 0),
    ("max_queued_reply_bytes", -1),
    ("max_queued_reply_bytes", 1 << 64),
    ("max_connections", 0),
    ("max_connections", -5),
    ("reply_timeout", -1.0),
    ("reply_timeout", math.nan),
    ("reply_timeout", math.inf),
    ("frame_timeout", -0.5),
    ("frame_timeout", math.nan),
]


@pytest.mark.parametrize("keyword,value", INVALID)
def test_an_invalid_limit_raises_value_error(keyword: str, value: Any) -> None:
    with pytest.raises(ValueError, match=keyword):
        ipcall.Server.bind_unique("mem", **{keyword: value})
    with pytest.raises(ValueError, match=keyword):
        ipcall.Server.bind("mem:pytest-invalid-limit", **{keyword: value})
