"""Shared fixtures: the transports this build has, and the Rust peer binary.

Tests that take the `kind` fixture run once per transport kind that binds in
this build; a kind that is not available yet is skipped with the reason the
library gives, so a transport is tested the moment it lands.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import threading
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import pytest

import ipcall

REPO = Path(__file__).resolve().parents[2]
ALL_KINDS = ["mem", "unix", "pipe", "shm"]
_counter = itertools.count()


def _probe(kind: str) -> Optional[str]:
    """None if `kind` binds in this build, else why not."""
    try:
        server = ipcall.Server.bind_unique(kind)
    except ipcall.InvalidName as error:
        return f"{kind}: not in this build ({error.reason})"
    server.close()
    return None


UNAVAILABLE: Dict[str, Optional[str]] = {kind: _probe(kind) for kind in ALL_KINDS}
AVAILABLE: List[str] = [kind for kind, why in UNAVAILABLE.items() if why is None]


def pytest_report_header() -> List[str]:
    lines = [f"ipcall transports available: {', '.join(AVAILABLE)}"]
    lines += [f"  skipped: {why}" for why in UNAVAILABLE.values() if why]
    return lines


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per distinct skip reason (instead of one per skipped test)."""
    reasons: Dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items()):
        terminalreporter.write_line(f"skipped {count}: {reason}")


def require(kind: str) -> None:
    """Skips the calling test (with the reason) if `kind` is not available."""
    why = UNAVAILABLE[kind]
    if why is not None:
        pytest.skip(why)


@pytest.fixture(params=ALL_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Every transport kind; skipped where this build does not have it."""
    require(request.param)
    return str(request.param)


@pytest.fixture(params=[k for k in ALL_KINDS if k != "mem"])
def process_kind(request: pytest.FixtureRequest) -> str:
    """Every kind that reaches another process; skipped where unavailable."""
    require(request.param)
    return str(request.param)


def fresh_name(kind: str) -> str:
    """A name for `kind` that no other test uses."""
    if kind == "mem":
        return f"mem:pytest-{os.getpid()}-{next(_counter)}"
    return ipcall.Server.bind_unique(kind).name  # closed at once: the name is free


class EchoThread:
    """A server thread that answers like the Rust peer: echo, "fail:<x>"
    -> fail(x), "noreply" -> dropped. Stops when the server is closed."""

    def __init__(self, server: ipcall.Server, handler: Optional[Callable[[ipcall.Request], None]] = None) -> None:
        self.server = server
        self.handler = handler or peer_script
        self.errors: List[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for request in self.server:
                self.handler(request)
        except BaseException as error:  # reported by stop()
            self.errors.append(error)

    def stop(self) -> None:
        self.server.close()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the server thread did not stop"
        assert not self.errors, self.errors


def peer_script(request: ipcall.Request) -> None:
    data = request.data
    if data.startswith(b"fail:"):
        request.fail(data[len(b"fail:"):])
    elif data == b"noreply":
        request.close()
    else:
        request.reply(data)


@pytest.fixture
def echo(kind: str) -> Iterator[ipcall.Server]:
    """A server of `kind` answering with `peer_script` on a thread."""
    server = ipcall.Server.bind_unique(kind)
    thread = EchoThread(server)
    yield server
    thread.stop()


@pytest.fixture(scope="session")
def peer_binary() -> Path:
    """The Rust peer (`cargo build --example peer`); skipped if not built."""
    path = Path(os.environ.get("IPCALL_PEER", REPO / "target" / "debug" / "examples" / "peer"))
    if not path.exists():
        pytest.skip(f"the Rust peer is not built ({path}); run `cargo build --example peer`")
    return path


def spawn_peer(peer: Path, *args: str, env: Optional[Dict[str, str]] = None) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [str(peer), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
