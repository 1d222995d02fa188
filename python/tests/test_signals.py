"""Ctrl+C interrupts blocking waits: a child Python process blocked in
recv() or call() gets SIGINT and raises KeyboardInterrupt.

Every wait here is unbounded (no timeout, or an hour), so a child that
raises KeyboardInterrupt at all proves the wait looks for signals (it
wakes every 50 ms to do so); without that it would stay blocked for good.
How soon it does is not asserted: that is scheduling latency, which a
loaded machine stretches without limit (a 0.5 s bound here failed under a
CPU hog). The test's own waits are bounded by a watchdog that kills the
child after WATCHDOG seconds.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

CHILD = r"""
import signal, sys
import ipcall
# Python's own Ctrl+C handling, even if SIGINT was ignored when we started
# (as it is for background jobs of a non-interactive shell).
signal.signal(signal.SIGINT, signal.default_int_handler)
what, kind = sys.argv[1], sys.argv[2]
server = ipcall.Server.bind_unique(kind)
client = ipcall.connect(server.name)
try:
    # Inside the try: a SIGINT that comes before the wait (a loaded machine
    # may run the parent first) is caught too, not a traceback.
    print("blocking", flush=True)
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
    print("KeyboardInterrupt", flush=True)
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


# Bounds every wait of the test: the child is killed after this long, which
# ends the test's reads with EOF (and the test with a failure).
WATCHDOG = 60.0


# `call` also over the transports whose blocking call reads its own answer
# (`Client.call_sliced` in the core, the connection borrowed).
@pytest.mark.parametrize(
    ("what", "kind"),
    [("recv", "mem"), ("call", "mem"), ("call", "unix"), ("call", "shm"), ("wait", "mem"), ("accept", "mem"), ("connect", "mem")],
)
def test_sigint_interrupts_a_blocking_wait(what: str, kind: str, tmp_path: Path) -> None:
    # cwd: not python/, whose ipcall/ is the source without the compiled module.
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, what, kind],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    watchdog = threading.Timer(WATCHDOG, child.kill)
    watchdog.start()
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "blocking\n"
        time.sleep(0.2)  # most likely in the wait by now; if not, the interrupt comes before it
        child.send_signal(signal.SIGINT)
        line = child.stdout.readline()
        assert line.startswith("KeyboardInterrupt"), (line, child.stderr.read() if child.stderr else "")
        assert child.stdout.readline() == "usable\n"
        assert child.wait(timeout=WATCHDOG) == 0
    finally:
        watchdog.cancel()
        child.kill()
        child.communicate()
