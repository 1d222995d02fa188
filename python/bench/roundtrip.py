"""Round-trip time of one small call, Python next to Rust, per transport.

Not a test: `make bench-python` runs it and prints a table. For each
transport this build has, it measures (64 B request, 64 B reply, medians
and p99 of many calls; lower is better):

- Rust -> Rust:     a Rust client loop (no Python, no GIL on its path)
                    against a Rust echo server;
- Python -> Rust:   `client.call()` from Python against the same server;
- Rust -> Python:   the Rust client loop against a Python echo server;
- Python -> Python: both ends in Python.

With pyzmq installed (`make bench-python` installs the pinned version of
python/requirements-bench.txt), a pyzmq REQ client against a pyzmq REP
server in a child Python process over ipc:// joins, with its ratio to
Python -> Rust over shm: and unix:. With IPCALL_BENCH_RESULTS set, the
medians also go to $IPCALL_BENCH_RESULTS/python.tsv (`make bench`).

Each pair runs in 3 interleaved rounds. For `mem:` both ends are threads
of this process; for the other kinds the
Rust server is the `peer serve` process and the Python server a child
Python process, so every pair crosses a process boundary.

A second table puts `await client.call_async()` (on an asyncio loop, one
call at a time) next to `client.call()`, both against the Rust server, with
the two processes pinned to one CPU ("same CPU") and to two different CPUs
("cross CPU"), on a machine with at least two CPUs. The issue's goal:
`call_async` p50 <= 1.5x `call` p50. IPCALL_BENCH_ONLY=async prints only
this table; IPCALL_BENCH_ASYNC_KINDS=unix,shm picks its transports.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import ipcall
from ipcall import _ipcall

REPO = Path(__file__).resolve().parents[2]
PEER = Path(os.environ.get("IPCALL_PEER", REPO / "target" / "release" / "examples" / "peer")).resolve()
SIZE = 64
ITERATIONS = int(os.environ.get("IPCALL_BENCH_ITERATIONS", "10000"))
ROUNDS = 3

ZMQ_ECHO = r"""
import sys
import zmq
socket = zmq.Context().socket(zmq.REP)
socket.bind(sys.argv[1])
print("ready", flush=True)
while True:
    socket.send(socket.recv())
"""

PY_ECHO = r"""
import sys
import ipcall
server = ipcall.Server.bind_unique(sys.argv[1])
print(server.name, flush=True)
for request in server:
    request.reply(request.data)
"""


def available(kind: str) -> Optional[str]:
    try:
        ipcall.Server.bind_unique(kind).close()
    except ipcall.InvalidName as error:
        return error.reason
    return None


@contextmanager
def child_server(command: List[str]) -> Iterator[str]:
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd="/")
    try:
        assert child.stdout is not None
        yield child.stdout.readline().strip()
    finally:
        child.kill()
        child.communicate()


@contextmanager
def rust_server(kind: str, cpu: Optional[int] = None) -> Iterator[str]:
    if kind == "mem":
        server = _ipcall._BenchEchoServer(ipcall.Server.bind_unique("mem").name)
        try:
            yield server.name
        finally:
            server.close()
    else:
        pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
        with child_server([*pin, str(PEER), "serve", "--unique", kind]) as name:
            yield name


@contextmanager
def python_server(kind: str) -> Iterator[str]:
    if kind == "mem":
        server = ipcall.Server.bind_unique("mem")

        def serve() -> None:
            for request in server:
                request.reply(request.data)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield server.name
        finally:
            server.close()
            thread.join()
    else:
        with child_server([sys.executable, "-c", PY_ECHO, kind]) as name:
            yield name


def python_client(name: str) -> List[int]:
    client = ipcall.connect(name, timeout=10)
    payload = b"x" * SIZE
    call = client.call
    for _ in range(ITERATIONS // 10):
        call(payload)
    samples = []
    clock = time.perf_counter_ns
    for _ in range(ITERATIONS):
        start = clock()
        call(payload)
        samples.append(clock() - start)
    client.close()
    return samples


def python_async_client(name: str) -> List[int]:
    """`await client.call_async()` one at a time on a fresh event loop."""
    client = ipcall.connect(name, timeout=10)
    payload = b"x" * SIZE

    async def run() -> List[int]:
        call = client.call_async
        for _ in range(ITERATIONS // 10):
            await call(payload)
        samples = []
        clock = time.perf_counter_ns
        for _ in range(ITERATIONS):
            start = clock()
            await call(payload)
            samples.append(clock() - start)
        return samples

    try:
        return asyncio.run(run())
    finally:
        client.close()


def rust_client(name: str) -> List[int]:
    ipcall.connect(name, timeout=10).close()  # wait until it is up
    return _ipcall._bench_rust_client(name, SIZE, ITERATIONS)


def summary(samples: List[int]) -> str:
    samples = sorted(samples)
    p99 = samples[int(len(samples) * 0.99)]
    return f"{statistics.median(samples) / 1000:9.2f} µs (p99 {p99 / 1000:8.2f})"


PAIRS = ["Rust -> Rust", "Python -> Rust", "Rust -> Python", "Python -> Python"]


def pyzmq_client() -> Optional[List[int]]:
    """pyzmq REQ -> REP (a child Python process) over ipc://; None without pyzmq."""
    try:
        import zmq  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / f"bench-pyzmq-{os.getpid()}"
    address = f"ipc://{path}"
    try:
        with child_server([sys.executable, "-c", ZMQ_ECHO, address]) as ready:
            if ready != "ready":
                raise RuntimeError(f"the pyzmq server said {ready!r}")
            socket = zmq.Context.instance().socket(zmq.REQ)
            socket.connect(address)
            payload = b"x" * SIZE
            for _ in range(ITERATIONS // 10):
                socket.send(payload)
                socket.recv()
            samples = []
            clock = time.perf_counter_ns
            for _ in range(ITERATIONS):
                start = clock()
                socket.send(payload)
                socket.recv()
                samples.append(clock() - start)
            socket.close(linger=0)
            return samples
    finally:
        path.unlink(missing_ok=True)


def write_results(records: List[List[str]]) -> None:
    results = os.environ.get("IPCALL_BENCH_RESULTS")
    if results:
        Path(results).mkdir(parents=True, exist_ok=True)
        lines = "".join("\t".join(record) + "\n" for record in records)
        (Path(results) / "python.tsv").write_text(lines)


def main() -> None:
    if not PEER.exists():
        sys.exit(f"the Rust peer is not built: {PEER} (cargo build --release -p ipcall --example peer)")
    print(f"ipcall round trip, {SIZE} B request + {SIZE} B reply: {ROUNDS} interleaved rounds of")
    print(f"{ITERATIONS} calls per pair, all samples pooled (median, p99; lower is better)")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    print(f"{'transport':<10} {'pair':<18} {'round trip':>34} {'vs Rust->Rust':>14}")
    records: List[List[str]] = []
    python_to_rust: Dict[str, float] = {}
    for kind in ["mem", "unix", "pipe", "shm"]:
        why = available(kind)
        if why:
            print(f"{kind:<10} skipped: {why}")
            continue
        samples: Dict[str, List[int]] = {pair: [] for pair in PAIRS}
        with rust_server(kind) as rust_name, python_server(kind) as python_name:
            # Interleaved, so that a burst of load from elsewhere on the
            # machine does not land on one pair only.
            for _ in range(ROUNDS):
                samples["Rust -> Rust"] += rust_client(rust_name)
                samples["Python -> Rust"] += python_client(rust_name)
                samples["Rust -> Python"] += rust_client(python_name)
                samples["Python -> Python"] += python_client(python_name)
        base = statistics.median(samples["Rust -> Rust"])
        python_to_rust[kind] = statistics.median(samples["Python -> Rust"])
        for pair in PAIRS:
            median = statistics.median(samples[pair])
            ratio = median / base
            print(f"{kind:<10} {pair:<18} {summary(samples[pair]):>34} {ratio:13.2f}x")
            floor, shown = ("", "") if pair == "Rust -> Rust" else (f"{kind}: Rust -> Rust", str(ratio))
            records.append(["python", "unpinned", f"{kind}: {pair}", "64 B p50 µs", str(median / 1000), floor, shown])
    zmq_samples = pyzmq_client()
    if zmq_samples is None:
        print("pyzmq      skipped: not installed (`make bench-python` installs it)")
    else:
        import zmq  # type: ignore[import-not-found]

        median = statistics.median(zmq_samples)
        print(f"pyzmq {zmq.__version__} REQ -> REP (Python process), ipc://: {summary(zmq_samples)}")
        recorded = False
        for kind in ["shm", "unix"]:
            if kind in python_to_rust:
                ratio = median / python_to_rust[kind]
                print(f"  pyzmq / Python -> Rust over {kind}: {ratio:.2f}x")
                if not recorded:
                    floor = f"{kind}: Python -> Rust"
                    records.append(["python", "unpinned", "pyzmq REQ -> REP (Python process), ipc://",
                                    "64 B p50 µs", str(median / 1000), floor, str(ratio)])
                    recorded = True
    write_results(records)


ASYNC_KINDS = os.environ.get("IPCALL_BENCH_ASYNC_KINDS", "unix,shm,pipe").split(",")


def async_table() -> None:
    """`await call_async()` next to `call()`, per transport and placement."""
    cpus = sorted(os.sched_getaffinity(0))
    placements = [("same CPU", cpus[0], cpus[0])]
    if len(cpus) >= 2:
        placements.append(("cross CPU", cpus[0], cpus[1]))
    print(f"\nawait call_async() vs call(), Python -> Rust server, {ITERATIONS} calls x {ROUNDS} rounds")
    print(f"{'transport':<10} {'placement':<10} {'call() p50':>12} {'call_async p50':>15} {'ratio':>7}")
    saved = os.sched_getaffinity(0)
    try:
        for kind in ASYNC_KINDS:
            why = available(kind)
            if why:
                print(f"{kind:<10} skipped: {why}")
                continue
            for placement, client_cpu, server_cpu in placements:
                # Threads this process starts from now on inherit the CPU.
                os.sched_setaffinity(0, {client_cpu})
                sync: List[int] = []
                asynchronous: List[int] = []
                with rust_server(kind, server_cpu) as name:
                    for _ in range(ROUNDS):
                        sync += python_client(name)
                        asynchronous += python_async_client(name)
                os.sched_setaffinity(0, saved)
                p50_sync = statistics.median(sync) / 1000
                p50_async = statistics.median(asynchronous) / 1000
                print(
                    f"{kind:<10} {placement:<10} {p50_sync:9.2f} µs {p50_async:12.2f} µs "
                    f"{p50_async / p50_sync:6.2f}x"
                )
    finally:
        os.sched_setaffinity(0, saved)


if __name__ == "__main__":
    if os.environ.get("IPCALL_BENCH_ONLY") != "async":
        main()
    async_table()
