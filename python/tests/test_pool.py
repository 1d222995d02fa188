"""Worker pools (`Server.bind(name, pool=True)`): Python worker processes
behind one name, a client spreading its calls over them (blocking and
asyncio), a worker killed with SIGKILL, and the names' exclusivity."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Set

import pytest

import ipcall
from conftest import fresh_name

WORKER = r"""
import os
import sys
import ipcall
server = ipcall.Server.bind(sys.argv[1], pool=True)
print("ready", flush=True)
prefix = str(os.getpid()).encode() + b":"
for request in server:
    request.reply(prefix + request.data)
"""


def worker_of(reply: bytes) -> int:
    return int(reply.split(b":", 1)[0])


@pytest.fixture
def pool(process_kind: str, tmp_path: Path) -> Iterator[tuple[str, List[subprocess.Popen[str]]]]:
    """Three Python worker processes serving one pool name."""
    name = fresh_name(process_kind)
    workers: List[subprocess.Popen[str]] = []
    try:
        for _ in range(3):
            child = subprocess.Popen(
                [sys.executable, "-c", WORKER, name], stdout=subprocess.PIPE, text=True, cwd=tmp_path
            )
            workers.append(child)
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        yield name, workers
    finally:
        for child in workers:
            child.send_signal(signal.SIGTERM)
        for child in workers:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()
        # Killed workers leave their entries; a listing removes them.
        ipcall.Server.bind(name).close()


def test_calls_spread_over_the_workers(pool: tuple[str, List[subprocess.Popen[str]]]) -> None:
    name, workers = pool
    pids = {child.pid for child in workers}
    seen: Set[int] = set()
    with ipcall.connect(name, timeout=10) as client:
        for i in range(300):
            reply = client.call(b"call %d" % i, timeout=30)
            assert reply.endswith(b":call %d" % i)
            seen.add(worker_of(reply))
    assert seen == pids


def test_asyncio_calls_over_a_pool(pool: tuple[str, List[subprocess.Popen[str]]]) -> None:
    name, workers = pool

    async def main() -> List[bytes]:
        with ipcall.connect(name, timeout=10) as client:
            calls = [client.call_async(b"async %d" % i, timeout=30) for i in range(60)]
            return await asyncio.wait_for(asyncio.gather(*calls), 60)

    replies = asyncio.run(main())
    assert [r.split(b":", 1)[1] for r in replies] == [b"async %d" % i for i in range(60)]
    assert {worker_of(r) for r in replies} == {child.pid for child in workers}


def test_a_killed_worker_leaves_the_others_serving(pool: tuple[str, List[subprocess.Popen[str]]]) -> None:
    name, workers = pool
    with ipcall.connect(name, timeout=10) as client:
        assert client.call(b"before", timeout=30).endswith(b":before")
        victim = workers[1]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        survivors = {workers[0].pid, workers[2].pid}
        seen: Set[int] = set()
        for i in range(100):
            # Nothing was in flight on the victim: no call fails.
            seen.add(worker_of(client.call(b"after %d" % i, timeout=30)))
        assert seen == survivors


def test_pool_and_plain_servers_do_not_share_a_name(process_kind: str) -> None:
    name = fresh_name(process_kind)
    with ipcall.Server.bind(name, pool=True) as member:
        with pytest.raises(ipcall.AddrInUse):
            ipcall.Server.bind(name)
        with ipcall.Server.bind(name, pool=True) as second:
            assert second.name == member.name == name
    with ipcall.Server.bind(name) as plain:
        with pytest.raises(ipcall.AddrInUse):
            ipcall.Server.bind(plain.name, pool=True)


def test_pool_refused_for_mem_names() -> None:
    with pytest.raises(ipcall.InvalidName):
        ipcall.Server.bind(fresh_name("mem"), pool=True)
