"""Every error kind, triggered through the real API and asserted by class."""

from __future__ import annotations

import errno
import os
import pickle
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import EchoThread, fresh_name, require

import ipcall

KINDS = {
    "Disconnected": "DISCONNECTED",
    "NoReply": "NO_REPLY",
    "RemoteError": "REMOTE",
    "Timeout": "TIMEOUT",
    "Closed": "CLOSED",
    "TooLarge": "TOO_LARGE",
    "AddrInUse": "ADDR_IN_USE",
    "NotFound": "NOT_FOUND",
    "PermissionDenied": "PERMISSION_DENIED",
    "InvalidName": "INVALID_NAME",
    "ProtocolError": "PROTOCOL",
    "IoError": "IO",
}


def test_one_class_per_kind_under_error() -> None:
    for class_name, code in KINDS.items():
        cls = getattr(ipcall, class_name)
        assert issubclass(cls, ipcall.Error) and cls is not ipcall.Error
        assert cls.code == code
        assert class_name in ipcall.__all__
    assert issubclass(ipcall.Timeout, TimeoutError)
    assert issubclass(ipcall.IoError, OSError)
    assert issubclass(ipcall.InvalidName, ValueError)
    assert issubclass(ipcall.Error, Exception)


def test_the_classes_are_exactly_the_core_error_kinds() -> None:
    # The core's table (ErrorKind::all) is the source: every kind has its
    # class, with the core's code, and no class exists for a kind the core
    # does not have.
    from ipcall import _ipcall

    kinds = _ipcall.error_kinds()
    assert [number for _, _, number in kinds] == list(range(1, len(kinds) + 1))
    for class_name, code, _ in kinds:
        cls = getattr(ipcall, class_name)
        assert issubclass(cls, ipcall.Error) and cls.code == code
    defined = {c.__name__ for c in vars(ipcall).values() if isinstance(c, type) and issubclass(c, ipcall.Error)}
    assert defined - {"Error"} == {name for name, _, _ in kinds}
    assert KINDS == {name: code for name, code, _ in kinds}


def test_disconnected_when_the_server_goes_away(kind: str) -> None:
    server = ipcall.Server.bind_unique(kind)
    client = ipcall.connect(server.name)
    queued = client.send(b"never received")
    server.close()
    with pytest.raises(ipcall.Disconnected) as caught:
        queued.wait(timeout=10)
    assert caught.value.name == server.name
    with pytest.raises(ipcall.Disconnected):
        client.call(b"after close", timeout=10)
    client.close()


def test_no_reply_when_the_request_is_dropped(echo: ipcall.Server) -> None:
    with ipcall.connect(echo.name) as client:
        with pytest.raises(ipcall.NoReply) as caught:
            client.call(b"noreply", timeout=10)
        assert caught.value.code == "NO_REPLY"
        assert client.call(b"still usable") == b"still usable"


def test_no_reply_when_the_request_is_garbage_collected(kind: str) -> None:
    with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name) as client:
        pending = client.send(b"forgotten")
        server.recv(timeout=10)  # the request object is dropped at once
        with pytest.raises(ipcall.NoReply):
            pending.wait(timeout=10)


def test_remote_error_carries_the_payload(echo: ipcall.Server) -> None:
    with ipcall.connect(echo.name) as client:
        for payload in (b"boom", b"", bytes(range(256))):
            with pytest.raises(ipcall.RemoteError) as caught:
                client.call(b"fail:" + payload, timeout=10)
            assert caught.value.payload == payload
            assert caught.value.name == echo.name


def test_timeouts_and_late_replies_are_discarded(kind: str) -> None:
    with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name) as client:
        with pytest.raises(ipcall.Timeout) as caught:
            server.recv(timeout=0.02)
        assert isinstance(caught.value, TimeoutError)
        with pytest.raises(ipcall.Timeout):
            client.call(b"first", timeout=0.05)
        # The abandoned call's request still arrives; its reply goes nowhere.
        late = server.recv(timeout=10)
        assert late.data == b"first"
        late.reply(b"late reply")
        pending = client.send(b"second")
        server.recv(timeout=10).reply(b"second reply")
        assert pending.wait(timeout=10) == b"second reply"
        # Pending.wait(timeout) abandons the call too.
        pending = client.send(b"third")
        with pytest.raises(ipcall.Timeout):
            pending.wait(timeout=0.02)
        with pytest.raises(ipcall.Closed):
            pending.wait()
        server.recv(timeout=10).reply(b"nobody listens")


def test_connect_not_found_after_waiting_for_a_server_that_never_appears(kind: str) -> None:
    name = fresh_name(kind)
    with pytest.raises(ipcall.NotFound) as caught:
        ipcall.connect(name, timeout=0.1)
    assert caught.value.name == name


def test_connect_with_timeout_waits_for_the_server(kind: str) -> None:
    name = fresh_name(kind)
    servers = []
    timer = threading.Timer(0.2, lambda: servers.append(ipcall.Server.bind(name)))
    timer.start()
    client = ipcall.connect(name, timeout=10)
    timer.join()
    client.close()
    servers[0].close()


def test_closed(kind: str) -> None:
    server = ipcall.Server.bind_unique(kind)
    client = ipcall.connect(server.name)
    pending = client.send(b"x")
    request = server.recv(timeout=10)
    request.reply(b"once")
    with pytest.raises(ipcall.Closed, match="already answered"):
        request.reply(b"twice")
    with pytest.raises(ipcall.Closed):
        request.fail(b"twice")
    assert pending.wait(timeout=10) == b"once"
    client.close()
    with pytest.raises(ipcall.Closed, match="client is closed"):
        client.call(b"closed client")
    with pytest.raises(ipcall.Closed):
        client.send(b"closed client")
    server.close()
    with pytest.raises(ipcall.Closed) as caught:
        server.recv()
    assert caught.value.name == server.name
    assert list(server) == []


def test_too_large_is_refused_by_the_sender(kind: str) -> None:
    with ipcall.Server.bind_unique(kind, max_message_size=1000) as server:
        thread = EchoThread(server)
        with ipcall.connect(server.name) as client:
            with pytest.raises(ipcall.TooLarge) as caught:
                client.call(b"x" * 1001)
            assert (caught.value.size, caught.value.max) == (1001, 1000)
            assert client.call(b"x" * 1000) == b"x" * 1000
        with ipcall.connect(server.name, max_message_size=10) as small:
            with pytest.raises(ipcall.TooLarge) as caught:
                small.send(b"y" * 11)
            assert (caught.value.size, caught.value.max) == (11, 10)
        thread.stop()


def test_reply_too_large_for_the_caller(kind: str) -> None:
    with ipcall.Server.bind_unique(kind) as server:
        with ipcall.connect(server.name, max_message_size=10) as client:
            pending = client.send(b"small")
            request = server.recv(timeout=10)
            with pytest.raises(ipcall.TooLarge) as caught:
                request.reply(b"z" * 11)
            assert (caught.value.size, caught.value.max) == (11, 10)
            # Nothing truncated: the caller learns there was no reply.
            with pytest.raises(ipcall.NoReply):
                pending.wait(timeout=10)


def test_addr_in_use(kind: str) -> None:
    with ipcall.Server.bind_unique(kind) as server:
        with pytest.raises(ipcall.AddrInUse) as caught:
            ipcall.Server.bind(server.name)
        assert caught.value.name == server.name
    # Free again once closed.
    ipcall.Server.bind(server.name).close()


def test_not_found(kind: str) -> None:
    name = fresh_name(kind)
    with pytest.raises(ipcall.NotFound) as caught:
        ipcall.connect(name)
    assert caught.value.name == name


@pytest.mark.parametrize(
    "name",
    ["", "no-kind", "bogus:x", "mem:", "unix:", "unix:/" + "x" * 200, "mem:a\x00b", "mem:tab\there", "pipe:@x"],
)
def test_invalid_name(name: str) -> None:
    with pytest.raises(ipcall.InvalidName) as caught:
        ipcall.Server.bind(name)
    assert caught.value.reason
    assert isinstance(caught.value, ValueError)
    with pytest.raises(ipcall.InvalidName):
        ipcall.connect(name)


def test_invalid_kind() -> None:
    with pytest.raises(ipcall.InvalidName, match="unknown transport kind"):
        ipcall.Server.bind_unique("carrier-pigeon")


def test_permission_denied_for_a_runtime_dir_others_can_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Generated names live in $XDG_RUNTIME_DIR/ipcall, which must be private:
    # a directory other users could write to is refused, never used.
    (tmp_path / "ipcall").mkdir(mode=0o755)
    os.chmod(tmp_path / "ipcall", 0o755)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with pytest.raises(ipcall.PermissionDenied, match="permission denied") as caught:
        ipcall.Server.bind_unique("unix")
    assert caught.value.name == "unix"


def test_io_error_when_out_of_descriptors(tmp_path: Path) -> None:
    # In a child, so that exhausting descriptors cannot disturb the tests.
    script = """
import asyncio, errno, os, resource
import ipcall
server = ipcall.Server.bind_unique("mem")
client = ipcall.connect(server.name)
loop = asyncio.new_event_loop()
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = []
try:
    while True:
        held.append(os.open("/dev/null", os.O_RDONLY))
except OSError as error:
    assert error.errno == errno.EMFILE
try:
    ipcall.Server.bind_unique("mem")
except ipcall.IoError as error:
    assert isinstance(error, OSError) and error.errno == errno.EMFILE, error
    assert error.code == "IO" and error.name and error.name in str(error), str(error)
    print("IoError", error.errno)
try:
    # The client's descriptor for event loops is made by the first call_async.
    loop.run_until_complete(client.call_async(b"x"))
except ipcall.IoError as error:
    assert error.errno == errno.EMFILE, error
    print("OSError", error.errno)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["IoError", str(errno.EMFILE), "OSError", str(errno.EMFILE)]


def test_protocol_error_from_a_server_that_speaks_garbage(tmp_path: Path) -> None:
    require("unix")
    path = str(tmp_path / "garbage.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def speak_garbage() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.sendall(b"this is not the ipcall handshake, not at all" * 4)
            connection.recv(1 << 16)  # until the client hangs up

    thread = threading.Thread(target=speak_garbage, daemon=True)
    thread.start()
    with pytest.raises(ipcall.ProtocolError) as caught:
        ipcall.connect(f"unix:{path}", timeout=10)
    assert caught.value.reason
    thread.join(timeout=30)
    listener.close()


def test_errors_show_their_public_names(tmp_path: Path) -> None:
    for class_name in ["Error", *KINDS]:
        cls = getattr(ipcall, class_name)
        assert f"{cls.__module__}.{cls.__qualname__}" == f"ipcall.{class_name}"
        # Pickle finds a class by that name too.
        assert pickle.loads(pickle.dumps(cls("x"))).__class__ is cls
    # An uncaught error's traceback ends with the public name.
    missing = f"unix:{tmp_path / 'nobody.sock'}"
    result = subprocess.run(
        [sys.executable, "-c", f"import ipcall; ipcall.connect({missing!r})"],
        cwd=tmp_path,  # not python/, whose ipcall/ has no compiled module
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("ipcall.NotFound: "), result.stderr
