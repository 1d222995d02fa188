"""Waiting for a cancel: `await request.wait_cancelled_async()` on an asyncio
server and `request.wait_cancelled(timeout)` on a thread return True when
the caller gives up — its call timed out, its `call_async` task was
cancelled — from another thread or another process, over every transport;
they return False when the request is answered or closed first, and leave
no waiter, bell or watching thread behind."""

from __future__ import annotations

import asyncio
import gc
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List

import pytest

import ipcall
from ipcall import _cancel

# How long a test waits for anything before it fails.
BOUND = 30.0


def cancel_threads() -> List[str]:
    """The threads of this process named `ipcall-cancel` (the core's
    watcher, which runs only while a cancel is awaited)."""
    names = []
    for task in Path("/proc/self/task").iterdir():
        try:
            names.append((task / "comm").read_text().strip())
        except FileNotFoundError:  # ended meanwhile
            continue
    return [n for n in names if n == "ipcall-cancel"]


def assert_no_watcher_left() -> None:
    """Nothing awaits a cancel any more, so the watcher thread ends (it
    looks every 5 ms); bounded wait."""
    gc.collect()
    until = time.monotonic() + BOUND
    while cancel_threads():
        assert time.monotonic() < until, "the ipcall-cancel thread outlived every wait"
        time.sleep(0.01)


def caller_process(name: str, mode: str) -> "subprocess.Popen[str]":
    """Another process that calls `name` and gives up: `timeout` with a
    0.2 s timeout; `task` by cancelling its `call_async` task once it reads
    a line on stdin. It prints what happened, and keeps its connection until
    stdin ends, so that what the server learns is its cancel (a caller that
    closes at once cancels its calls too, by hanging up: test_cancel.py)."""
    script = f"""
import asyncio, sys, ipcall
client = ipcall.connect({name!r}, timeout={BOUND})
if {mode!r} == "timeout":
    try:
        client.call(b"slow", timeout=0.2)
    except ipcall.Timeout:
        print("timed out", flush=True)
else:
    async def main():
        task = asyncio.ensure_future(client.call_async(b"slow"))
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            print("cancelled", flush=True)
    asyncio.run(main())
sys.stdin.read()
"""
    return subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Not python/, whose ipcall/ is the package's source without its
        # compiled module (`-c` puts the working directory on the path).
        cwd=Path(__file__).resolve().parent.parent.parent,
    )


async def race_cancel_against_work(request: ipcall.Request) -> bool:
    """The handler's pattern: the work (here, a sleep far past the bound)
    raced against the cancel; True if the cancel won (the work is then
    abandoned)."""
    work = asyncio.ensure_future(asyncio.sleep(BOUND * 2))
    cancel = asyncio.ensure_future(request.wait_cancelled_async())
    done, _ = await asyncio.wait({work, cancel}, timeout=BOUND, return_when=asyncio.FIRST_COMPLETED)
    work.cancel()
    try:
        await work
    except asyncio.CancelledError:
        pass
    if cancel not in done:
        cancel.cancel()
        return False
    return cancel.result()


def test_an_asyncio_server_learns_a_timed_out_call_from_another_process(process_kind: str) -> None:
    async def main() -> None:
        async with ipcall.Server.bind_unique(process_kind) as server:
            caller = caller_process(server.name, "timeout")
            try:
                request = await asyncio.wait_for(server.recv_async(), BOUND)
                assert await race_cancel_against_work(request) is True
                assert request.cancelled and request.pending
                request.reply(b"late")  # harmless
                out, err = caller.communicate(input="", timeout=BOUND)
                assert out == "timed out\n", err
            finally:
                if caller.poll() is None:
                    caller.kill()
                    caller.communicate()
        assert loop_bells_gone()

    asyncio.run(main())
    assert_no_watcher_left()


def test_an_asyncio_server_learns_a_cancelled_call_async_task_from_another_process(process_kind: str) -> None:
    async def main() -> None:
        async with ipcall.Server.bind_unique(process_kind) as server:
            caller = caller_process(server.name, "task")
            try:
                request = await asyncio.wait_for(server.recv_async(), BOUND)
                waiting = asyncio.ensure_future(request.wait_cancelled_async())
                await asyncio.sleep(0)
                assert not waiting.done(), "decided before the caller gave up"
                assert caller.stdin is not None
                caller.stdin.write("go\n")
                caller.stdin.flush()
                assert await asyncio.wait_for(waiting, BOUND) is True
                request.close()
                out, err = caller.communicate(input="", timeout=BOUND)
                assert out == "cancelled\n", err
            finally:
                if caller.poll() is None:
                    caller.kill()
                    caller.communicate()

    asyncio.run(main())
    assert_no_watcher_left()


def test_a_thread_caller_that_times_out_wakes_every_kind_of_waiter(kind: str) -> None:
    """A caller on another thread; the server awaits on a loop and blocks a
    thread on the same request: both learn the cancel."""

    async def main() -> None:
        async with ipcall.Server.bind_unique(kind) as server:
            outcome: queue.Queue[str] = queue.Queue()
            finished = threading.Event()

            def call() -> None:
                with ipcall.connect(server.name) as client:
                    try:
                        client.call(b"slow", timeout=0.2)
                        outcome.put("answered")
                    except ipcall.Timeout:
                        outcome.put("timed out")
                    # The connection stays until the server has seen the
                    # cancel: a cancel record still in a `shm:` ring when
                    # its client closes is never read (the server works on
                    # for nothing, as for an unsent cancel).
                    finished.wait(BOUND)

            caller = threading.Thread(target=call, daemon=True)
            caller.start()
            request = await asyncio.wait_for(server.recv_async(), BOUND)
            loop = asyncio.get_running_loop()
            blocked = loop.run_in_executor(None, request.wait_cancelled, BOUND)
            assert await asyncio.wait_for(request.wait_cancelled_async(), BOUND) is True
            assert await asyncio.wait_for(blocked, BOUND) is True
            finished.set()
            caller.join(BOUND)
            assert outcome.get(timeout=BOUND) == "timed out"
            # Decided: later waits return at once, before and after the answer.
            assert await request.wait_cancelled_async() is True
            assert request.wait_cancelled(0) is True
            request.reply(b"late")
            assert await request.wait_cancelled_async() is True
            assert request.wait_cancelled() is True

    asyncio.run(main())
    assert_no_watcher_left()


def test_an_answer_first_ends_the_waits_with_false_and_leaves_nothing_behind(kind: str) -> None:
    async def main() -> None:
        async with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name) as client:
            loop = asyncio.get_running_loop()
            call = asyncio.ensure_future(client.call_async(b"x", timeout=BOUND))
            request = await asyncio.wait_for(server.recv_async(), BOUND)
            waits = [asyncio.ensure_future(request.wait_cancelled_async()) for _ in range(3)]
            blocked = loop.run_in_executor(None, request.wait_cancelled, BOUND)
            await asyncio.sleep(0.05)
            assert not any(w.done() for w in waits)
            assert _cancel._bells.get(loop) is not None, "the loop watches its bell while waits are pending"
            request.reply(b"y")
            assert await asyncio.wait_for(asyncio.gather(*waits), BOUND) == [False, False, False]
            assert await asyncio.wait_for(blocked, BOUND) is False
            assert await call == b"y"
            assert _cancel._bells.get(loop) is None, "the bell goes with the last wait"
            # Answered: a new wait is decided at once.
            assert await request.wait_cancelled_async() is False
            assert request.wait_cancelled() is False

    asyncio.run(main())
    assert_no_watcher_left()


def test_closing_the_request_ends_the_waits_with_false(kind: str) -> None:
    server = ipcall.Server.bind_unique(kind)
    with ipcall.connect(server.name) as client:
        pending = client.send(b"x")
        request = server.recv(timeout=BOUND)
        woke: queue.Queue[bool] = queue.Queue()
        waiter = threading.Thread(target=lambda: woke.put(request.wait_cancelled()), daemon=True)
        waiter.start()
        time.sleep(0.05)
        assert woke.empty()
        request.close()
        assert woke.get(timeout=BOUND) is False
        waiter.join(BOUND)
        with pytest.raises(ipcall.NoReply):
            pending.wait(timeout=BOUND)
    server.close()
    assert_no_watcher_left()


def test_a_cancelled_wait_leaves_the_request_answerable_and_unwatched(kind: str) -> None:
    async def main() -> None:
        async with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name) as client:
            loop = asyncio.get_running_loop()
            call = asyncio.ensure_future(client.call_async(b"x", timeout=BOUND))
            request = await asyncio.wait_for(server.recv_async(), BOUND)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(request.wait_cancelled_async(), 0.05)
            assert _cancel._bells.get(loop) is None, "a cancelled wait takes its bell away"
            assert request.pending and not request.cancelled
            request.reply(b"y")
            assert await call == b"y"

    asyncio.run(main())
    assert_no_watcher_left()


def test_a_sync_wait_times_out_false_and_rejects_a_bad_timeout(kind: str) -> None:
    server = ipcall.Server.bind_unique(kind)
    with ipcall.connect(server.name) as client:
        pending = client.send(b"x")
        request = server.recv(timeout=BOUND)
        assert request.wait_cancelled(0) is False
        assert request.wait_cancelled(0.05) is False
        for bad in (-1.0, float("nan")):
            with pytest.raises(ValueError):
                request.wait_cancelled(bad)
        request.reply(b"y")
        assert pending.wait(timeout=BOUND) == b"y"
    server.close()
    assert_no_watcher_left()


def loop_bells_gone() -> bool:
    """No loop of this thread still watches a bell."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return True
    return loop not in _cancel._bells
