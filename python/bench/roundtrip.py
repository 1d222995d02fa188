"""Round-trip time of one small call, Python next to Rust, per transport.

Not a test: `make bench-python` runs it and prints a table. For each
transport this build has, it measures (64 B request, 64 B reply, medians
and p99 of many calls; lower is better):

- Rust -> Rust:     a Rust client loop (no Python, no GIL on its path)
                    against a Rust echo server;
- Python -> Rust:   `client.call()` from Python against the same server;
- Python -> Rust, await call_async(): one call at a time on an asyncio
                    loop, against the same server (the issue's goal:
                    <= 1.5x `call()`);
- Rust -> Python:   the Rust client loop against a Python echo server;
- Python -> Python: both ends in Python.

Pinned, as the Node bench is: once with the client and the servers on one
CPU ("same CPU"), once on two ("cross CPU"; this thread and the threads it
starts on the first CPU this process may use, the server processes under
`taskset -c` on the second). On a machine with one CPU, or without
`taskset`, it runs once, "unpinned". Unpinned, a same-process pair and a
cross-process pair may land on one CPU or on two at random, and their
ratio then says nothing (a cross-CPU wake-up costs ~50 us here).

With pyzmq installed (`make bench-python` installs the pinned version of
python/requirements-bench.txt), a pyzmq REQ client against a pyzmq REP
server in a child Python process over ipc:// joins, with its ratio to
Python -> Rust over shm:. With IPCALL_BENCH_RESULTS set, the medians also
go to $IPCALL_BENCH_RESULTS/python.tsv (`make bench`).

Each pair runs in 3 interleaved rounds. For `mem:` both ends are threads
of this process; for the other kinds the Rust server is the `peer serve`
process and the Python server a child Python process, so every pair
crosses a process boundary. IPCALL_BENCH_ONLY=async measures only
`call()` and `call_async()` against the Rust server, over the transports
IPCALL_BENCH_ASYNC_KINDS names (default unix,shm,pipe).
"""

from __future__ import annotations

import asyncio
import os
import shutil
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


def pinned(cpu: Optional[int]) -> List[str]:
    """The command prefix that runs a child on `cpu` (none: unpinned)."""
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


@contextmanager
def threads_on(cpu: Optional[int]) -> Iterator[None]:
    """Threads this thread starts inside run on `cpu` (they inherit it)."""
    if cpu is None:
        yield
        return
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


@contextmanager
def rust_server(kind: str, cpu: Optional[int] = None) -> Iterator[str]:
    if kind == "mem":
        with threads_on(cpu):
            server = _ipcall._BenchEchoServer(ipcall.Server.bind_unique("mem").name)
        try:
            yield server.name
        finally:
            server.close()
    else:
        with child_server([*pinned(cpu), str(PEER), "serve", "--unique", kind]) as name:
            yield name


@contextmanager
def python_server(kind: str, cpu: Optional[int] = None) -> Iterator[str]:
    if kind == "mem":
        server = ipcall.Server.bind_unique("mem")

        def serve() -> None:
            for request in server:
                request.reply(request.data)

        thread = threading.Thread(target=serve, daemon=True)
        with threads_on(cpu):
            thread.start()
        try:
            yield server.name
        finally:
            server.close()
            thread.join()
    else:
        with child_server([*pinned(cpu), sys.executable, "-c", PY_ECHO, kind]) as name:
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


ASYNC_PAIR = "Python -> Rust, await call_async()"
PAIRS = ["Rust -> Rust", "Python -> Rust", ASYNC_PAIR, "Rust -> Python", "Python -> Python"]


def pyzmq_client(server_cpu: Optional[int] = None) -> Optional[List[int]]:
    """pyzmq REQ -> REP (a child Python process) over ipc://; None without pyzmq."""
    try:
        import zmq  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / f"bench-pyzmq-{os.getpid()}"
    address = f"ipc://{path}"
    try:
        with child_server([*pinned(server_cpu), sys.executable, "-c", ZMQ_ECHO, address]) as ready:
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


def placements() -> List[tuple]:
    """(label, client CPU, server CPU) per placement measured."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return [("unpinned", None, None)]
    return [("same CPU", cpus[0], cpus[0]), ("cross CPU", cpus[0], cpus[1])]


def measure(kind: str, server_cpu: Optional[int], pairs: List[str]) -> Dict[str, List[int]]:
    """The samples of each pair over `kind`, in interleaved rounds."""
    samples: Dict[str, List[int]] = {pair: [] for pair in pairs}
    runs = {
        "Rust -> Rust": (rust_server, rust_client),
        "Python -> Rust": (rust_server, python_client),
        ASYNC_PAIR: (rust_server, python_async_client),
        "Rust -> Python": (python_server, rust_client),
        "Python -> Python": (python_server, python_client),
    }
    with rust_server(kind, server_cpu) as rust_name, python_server(kind, server_cpu) as python_name:
        names = {rust_server: rust_name, python_server: python_name}
        # Interleaved, so that a burst of load from elsewhere on the
        # machine does not land on one pair only.
        for _ in range(ROUNDS):
            for pair in pairs:
                server, client = runs[pair]
                samples[pair] += client(names[server])
    return samples


def main() -> None:
    if not PEER.exists():
        sys.exit(f"the Rust peer is not built: {PEER} (cargo build --release -p ipcall --example peer)")
    only_async = os.environ.get("IPCALL_BENCH_ONLY") == "async"
    pairs = ["Python -> Rust", ASYNC_PAIR] if only_async else PAIRS
    kinds = ASYNC_KINDS if only_async else ["mem", "unix", "pipe", "shm"]
    print(f"ipcall round trip, {SIZE} B request + {SIZE} B reply: {ROUNDS} interleaved rounds of")
    print(f"{ITERATIONS} calls per pair, all samples pooled (median, p99; lower is better)")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    print(f"{'transport':<10} {'placement':<10} {'pair':<36} {'round trip':>34} {'ratio':>7}  against")
    records: List[List[str]] = []
    for placement, client_cpu, server_cpu in placements():
        python_to_rust: Dict[str, float] = {}
        # This thread runs every client; the threads it starts inherit its CPU.
        with threads_on(client_cpu):
            for kind in kinds:
                why = available(kind)
                if why:
                    print(f"{kind:<10} skipped: {why}")
                    continue
                samples = measure(kind, server_cpu, pairs)
                medians = {pair: statistics.median(samples[pair]) for pair in pairs}
                python_to_rust[kind] = medians["Python -> Rust"]
                for pair in pairs:
                    # call_async against call(); everything else against Rust -> Rust.
                    reference = "Python -> Rust" if pair == ASYNC_PAIR or only_async else "Rust -> Rust"
                    ratio = medians[pair] / medians[reference] if reference in medians else 1.0
                    against = "" if pair == reference else f"{kind}: {reference}"
                    print(
                        f"{kind:<10} {placement:<10} {pair:<36} {summary(samples[pair]):>34} "
                        f"{ratio:6.2f}x  {against}"
                    )
                    shown = str(ratio) if against else ""
                    records.append(
                        ["python", placement, f"{kind}: {pair}", "64 B p50 µs", str(medians[pair] / 1000), against, shown]
                    )
            zmq_samples = None if only_async else pyzmq_client(server_cpu)
        if zmq_samples is None:
            if not only_async:
                print("pyzmq      skipped: not installed (`make bench-python` installs it)")
            continue
        import zmq  # type: ignore[import-not-found]

        median = statistics.median(zmq_samples)
        print(f"pyzmq {zmq.__version__} REQ -> REP (Python process), ipc://, {placement}: {summary(zmq_samples)}")
        for kind in ["shm", "unix"]:
            if kind in python_to_rust:
                ratio = median / python_to_rust[kind]
                print(f"  pyzmq / Python -> Rust over {kind}: {ratio:.2f}x")
                records.append(
                    ["python", placement, "pyzmq REQ -> REP (Python process), ipc://", "64 B p50 µs",
                     str(median / 1000), f"{kind}: Python -> Rust", str(ratio)]
                )
                break
    write_results(records)


ASYNC_KINDS = os.environ.get("IPCALL_BENCH_ASYNC_KINDS", "unix,shm,pipe").split(",")


if __name__ == "__main__":
    main()
