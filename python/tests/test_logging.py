"""The core's events reach Python's `logging` under the logger `ipcall`
(python/README.md "Logging"), with their fields on the record as
`record.ipcall_<field>`. Records arrive from ipcall's log thread shortly
after the event, so each test waits (bounded) for its record."""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from typing import Callable, List

import pytest

import ipcall

from conftest import require

BOUND = 30.0


def wait_for(caplog: pytest.LogCaptureFixture, match: Callable[[logging.LogRecord], bool]) -> logging.LogRecord:
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        for record in list(caplog.records):
            if match(record):
                return record
        time.sleep(0.01)
    pytest.fail(f"no matching record within {BOUND} s; got {[r.getMessage() for r in caplog.records]}")


def serving(server: ipcall.Server) -> threading.Thread:
    """Answers every request until the server closes."""

    def serve() -> None:
        while True:
            try:
                request = server.recv(timeout=BOUND)
            except (ipcall.Closed, ipcall.Timeout):
                return
            request.reply(request.data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def of(server: ipcall.Server, message: str) -> Callable[[logging.LogRecord], bool]:
    return lambda r: r.getMessage() == message and getattr(r, "ipcall_name", None) == server.name


def test_bad_magic_is_a_warning_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    require("unix")
    caplog.set_level(logging.DEBUG, logger="ipcall")
    server = ipcall.Server.bind_unique("unix")
    thread = serving(server)
    try:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.settimeout(BOUND)
        raw.connect(server.name[len("unix:") :])
        # A hello (docs/PROTOCOL.md §2) with the wrong magic.
        raw.sendall(b"IPCX" + struct.pack("<HHI", 1, 0, 1 << 20) + bytes(4))
        while raw.recv(256):
            pass  # until the server hangs up
        raw.close()
        record = wait_for(caplog, of(server, "connection dropped"))
        assert (record.name, record.levelno, record.levelname) == ("ipcall", logging.WARNING, "WARNING")
        assert record.ipcall_reason == "protocol_violation"  # type: ignore[attr-defined]
        assert record.ipcall_transport == "unix"  # type: ignore[attr-defined]
        assert "not an ipcall peer" in record.ipcall_violation  # type: ignore[attr-defined]
    finally:
        server.close()
        thread.join(timeout=BOUND)


def test_a_client_that_leaves_is_a_debug_drop_with_numbers_as_ints(caplog: pytest.LogCaptureFixture) -> None:
    require("unix")
    caplog.set_level(logging.DEBUG, logger="ipcall")
    server = ipcall.Server.bind_unique("unix")
    thread = serving(server)
    try:
        client = ipcall.connect(server.name, timeout=BOUND)
        assert client.call(b"hi") == b"hi"
        client.close()
        accepted = wait_for(caplog, of(server, "connection accepted"))
        assert accepted.levelno == logging.DEBUG
        assert accepted.ipcall_pid == os.getpid()  # type: ignore[attr-defined]
        dropped = wait_for(caplog, of(server, "connection dropped"))
        assert (dropped.name, dropped.levelno) == ("ipcall", logging.DEBUG)
        assert dropped.ipcall_reason == "client_left"  # type: ignore[attr-defined]
        assert dropped.ipcall_conn == accepted.ipcall_conn  # type: ignore[attr-defined]
    finally:
        server.close()
        thread.join(timeout=BOUND)


def test_a_failed_connect_is_logged_and_a_level_above_filters_it(caplog: pytest.LogCaptureFixture) -> None:
    require("unix")
    caplog.set_level(logging.DEBUG, logger="ipcall")
    name = "unix:/nonexistent/ipcall-logging-test.sock"
    with pytest.raises(ipcall.NotFound):
        ipcall.connect(name)
    record = wait_for(
        caplog, lambda r: r.getMessage() == "connect failed" and getattr(r, "ipcall_name", None) == name
    )
    assert record.levelno == logging.DEBUG
    assert record.ipcall_error_kind == "NotFound"  # type: ignore[attr-defined]

    # With the logger at WARNING, the DEBUG event is not recorded; a WARNING
    # one after it is, so the DEBUG one was filtered rather than late.
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="ipcall")
    with pytest.raises(ipcall.NotFound):
        ipcall.connect(name)
    server = ipcall.Server.bind_unique("unix")
    thread = serving(server)
    try:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.settimeout(BOUND)
        raw.connect(server.name[len("unix:") :])
        raw.sendall(b"IPCX" + struct.pack("<HHI", 1, 0, 1 << 20) + bytes(4))
        while raw.recv(256):
            pass
        raw.close()
        wait_for(caplog, of(server, "connection dropped"))
        seen: List[str] = [r.getMessage() for r in caplog.records]
        assert "connect failed" not in seen, seen
    finally:
        server.close()
        thread.join(timeout=BOUND)
