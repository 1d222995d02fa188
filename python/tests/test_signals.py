"""Ctrl+C interrupts blocking waits: a child Python process blocked in
recv() or call() gets SIGINT and raises KeyboardInterrupt promptly.

The 0.5 s bound is a functional check (waits wake every 50 ms to look for
signals; without that the child would stay blocked for good), not a
benchmark: it is ten times the slice.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHILD = r"""
import signal, sys, time
import ipcall
# Python's own Ctrl+C handling, even if SIGINT was ignored when we started
# (as it is for background jobs of a non-interactive shell).
signal.signal(signal.SIGINT, signal.default_int_handler)
what = sys.argv[1]
server = ipcall.Server.bind_unique("mem")
client = ipcall.connect(server.name)
print("blocking", flush=True)
try:
    if what == "recv":
        server.recv()
    elif what == "call":
        client.call(b"nobody will answer")
    elif what == "wait":
        client.send(b"nobody will answer").wait()
    elif what == "accept":
        ipcall.Server.bind_unique("mem", one_shot=True).accept()
    elif what == "connect":
        ipcall.connect("mem:never-bound", timeout=3600)
except KeyboardInterrupt:
    print("KeyboardInterrupt", time.monotonic(), flush=True)
    # Nothing was abandoned by the slices before the interrupt, and the
    # objects are still usable after it.
    pending = client.send(b"after")
    while True:
        request = server.recv(timeout=5)
        if request.data == b"after":
            request.reply(b"fine")
            break
        request.close()  # the interrupted call's request: its caller is gone
    assert pending.wait(timeout=5) == b"fine"
    print("usable", flush=True)
    sys.exit(0)
print("returned without an interrupt", flush=True)
sys.exit(1)
"""


@pytest.mark.parametrize("what", ["recv", "call", "wait", "accept", "connect"])
def test_sigint_interrupts_a_blocking_wait(what: str, tmp_path: Path) -> None:
    # cwd: not python/, whose ipcall/ is the source without the compiled module.
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, what], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "blocking\n"
        time.sleep(0.2)  # let it get into the wait
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        line = child.stdout.readline()
        assert line.startswith("KeyboardInterrupt"), (line, child.stderr.read() if child.stderr else "")
        interrupted = float(line.split()[1])
        assert interrupted - sent < 0.5, f"KeyboardInterrupt took {interrupted - sent:.3f} s"
        assert child.stdout.readline() == "usable\n"
        assert child.wait(timeout=30) == 0
    finally:
        child.kill()
        child.communicate()
