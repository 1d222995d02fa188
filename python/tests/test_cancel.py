"""Cancellation that reaches the server (`Request.cancelled`): a caller that
gives up — its `call_async` task cancelled, its timeout passed, its call
dropped, its process killed — makes the server's request cancelled, over
every local transport; a caller that waits does not; answering a cancelled
request is harmless."""

from __future__ import annotations

import asyncio
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import ipcall

# How long a test waits for anything before it fails.
BOUND = 30.0


def poll_cancelled(request: ipcall.Request) -> bool:
    """Polls `request.cancelled` until it is True (False after BOUND s)."""
    until = time.monotonic() + BOUND
    while time.monotonic() < until:
        if request.cancelled:
            return True
        time.sleep(0.001)
    return False


class OneCancelled(threading.Thread):
    """Serves one request its caller gives up on: tells `got` when it holds
    it, polls `cancelled`, answers anyway, tells `verdicts` what it saw;
    then serves one more call and reports whether that one was cancelled."""

    def __init__(self, server: ipcall.Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.got: queue.Queue[bool] = queue.Queue()
        self.verdicts: queue.Queue[bool] = queue.Queue()
        self.start()

    def run(self) -> None:
        request = self.server.recv(timeout=BOUND)
        self.got.put(request.cancelled)
        cancelled = poll_cancelled(request)
        # Harmless: the caller discards the answer.
        request.reply(b"late")
        # Still cancelled after the answer.
        self.verdicts.put(cancelled and request.cancelled)
        live = self.server.recv(timeout=BOUND)
        self.verdicts.put(live.cancelled)
        live.reply(b"next")


def test_a_cancelled_call_async_task_cancels_the_request(kind: str) -> None:
    server = ipcall.Server.bind_unique(kind)
    serving = OneCancelled(server)

    async def main() -> None:
        async with ipcall.connect(server.name) as client:
            task = asyncio.ensure_future(client.call_async(b"slow"))
            # Cancelled once the server holds the request.
            await asyncio.get_running_loop().run_in_executor(None, lambda: serving.got.get(timeout=BOUND))
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            else:
                raise AssertionError("the task was answered, not cancelled")
            assert await asyncio.get_running_loop().run_in_executor(None, lambda: serving.verdicts.get(timeout=BOUND))
            assert await client.call_async(b"x", timeout=BOUND) == b"next"

    asyncio.run(main())
    assert serving.verdicts.get(timeout=BOUND) is False, "a waiting caller's request is not cancelled"
    serving.join(BOUND)
    server.close()


def test_a_timed_out_call_cancels_the_request(kind: str) -> None:
    server = ipcall.Server.bind_unique(kind)
    serving = OneCancelled(server)
    with ipcall.connect(server.name) as client:
        try:
            client.call(b"slow", timeout=0.02)
        except ipcall.Timeout:
            pass
        else:
            raise AssertionError("answered within 20 ms while the server never answers in time")
        assert serving.got.get(timeout=BOUND) is not None
        assert serving.verdicts.get(timeout=BOUND) is True
        assert client.call(b"x", timeout=BOUND) == b"next"
    assert serving.verdicts.get(timeout=BOUND) is False
    serving.join(BOUND)
    server.close()


def test_an_answered_request_was_never_cancelled(kind: str) -> None:
    server = ipcall.Server.bind_unique(kind)
    with ipcall.connect(server.name) as client:
        pending = client.send(b"x")
        request = server.recv(timeout=BOUND)
        assert request.cancelled is False
        request.reply(b"y")
        assert pending.wait(timeout=BOUND) == b"y"
        assert request.cancelled is False
    server.close()


def test_a_caller_process_killed_mid_call_cancels_its_request(process_kind: str) -> None:
    """A caller that is gone gave up on its calls: killed with SIGKILL while
    its call is in flight (it sends no cancel), its connection ends, and
    the server's request is cancelled."""
    server = ipcall.Server.bind_unique(process_kind)
    script = f"import ipcall\nipcall.connect({server.name!r}, timeout={BOUND}).call(b'slow', timeout={BOUND * 2})\n"
    # Not from python/, whose ipcall/ is the package's source without its
    # compiled module (`-c` puts the working directory on the path).
    caller = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2])
    try:
        request = server.recv(timeout=BOUND)
        assert request.cancelled is False, "the caller still waits"
        caller.kill()
        caller.wait(BOUND)
        assert request.wait_cancelled(BOUND) is True
        assert request.cancelled is True
        request.reply(b"late")  # harmless: nobody reads it
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
        server.close()
