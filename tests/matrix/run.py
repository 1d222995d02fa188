#!/usr/bin/env python3
"""The cross-language matrix: every client language against every server
language over every transport, in separate processes (tests/matrix/README.md).

Prints the matrix (✓ / ✗ / – skipped, with the reasons) and exits 1 if any
cell failed. Standard library only; the peers it runs are given on the
command line (mk/matrix.mk builds them).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
EXIT_SKIP = 77
SERVER_LANGUAGES = ["Rust", "C", "Python", "Node"]
CLIENT_LANGUAGES = ["Rust", "C", "C++", "Python", "Node"]


@dataclass
class Outcome:
    kind: str
    server: str
    client: str
    status: str  # "ok", "fail" or "skip"
    detail: str = ""
    seconds: float = 0.0


def languages(args: argparse.Namespace):
    """The command of each server and client language, or why it cannot run."""
    root = Path(args.root).resolve()

    def program(path: str, what: str):
        return [path] if path and os.access(path, os.X_OK) else f"{what} not built ({path or 'no path given'})"

    python_ok = (
        args.python
        and subprocess.run([args.python, "-c", "import ipcall"], capture_output=True).returncode == 0
    )
    python = [args.python] if python_ok else f"the Python package is not installed in {args.python}"
    node_dir = root / "node"
    if not (node_dir / "package.json").exists():
        node = "node package not in this checkout"
    elif not any(p.name.startswith("ipcall.") and p.name.endswith(".node") for p in node_dir.iterdir()):
        node = "node package not built"
    else:
        node = [args.node]

    def with_script(base, script: Path):
        return base + [str(script)] if isinstance(base, list) else base

    rust = program(args.rust_peer, "the Rust matrix peer")
    servers = {
        "Rust": rust + ["server"] if isinstance(rust, list) else rust,
        "C": program(args.c_server, "the C server"),
        "Python": with_script(python, HERE / "python" / "server.py"),
        "Node": with_script(node, HERE / "node" / "server.js"),
    }
    clients = {
        "Rust": rust + ["client"] if isinstance(rust, list) else rust,
        "C": program(args.c_client, "the C client"),
        "C++": program(args.cpp_client, "the C++ client"),
        "Python": with_script(python, HERE / "python" / "client.py"),
        "Node": with_script(node, HERE / "node" / "client.js"),
    }
    return servers, clients


def tail(text: bytes, lines: int = 6) -> str:
    return "\n".join(text.decode(errors="replace").strip().splitlines()[-lines:])


def run_cell(kind: str, server: str, client: str, servers, clients, args) -> Outcome:
    started = time.monotonic()
    outcome = Outcome(kind, server, client, "fail")
    for language, command in (("server", servers[server]), ("client", clients[client])):
        if isinstance(command, str):
            outcome.status, outcome.detail = "skip", command
            return outcome
    server_process = subprocess.Popen(
        servers[server] + [kind], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    lines: "queue.Queue[Optional[bytes]]" = queue.Queue()
    server_out: List[bytes] = []

    def read_server_stdout() -> None:
        for line in server_process.stdout:
            server_out.append(line)
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read_server_stdout, daemon=True)
    reader.start()
    client_process = None
    try:
        try:
            first = lines.get(timeout=args.timeout)
        except queue.Empty:
            outcome.detail = f"the {server} server printed no name within {args.timeout} s"
            return outcome
        if first is None or first.startswith(b"SKIP ") or first.startswith(b"FAIL "):
            code = server_process.wait(timeout=args.timeout)
            text = (first or b"").decode(errors="replace").strip()
            if code == EXIT_SKIP and text.startswith("SKIP "):
                # One reason per transport, not one per generated name.
                reason = re.sub(r'invalid name "[^"]*": ', "", text[5:])
                outcome.status, outcome.detail = "skip", f"{kind}: {reason}"
            else:
                stderr = tail(server_process.stderr.read())
                outcome.detail = f"the {server} server ended ({code}) before binding: {text} {stderr}".strip()
            return outcome
        name = first.decode().strip()
        env = dict(os.environ, IPCALL_SERVER=name, IPCALL_CALLS=str(args.calls))
        client_process = subprocess.Popen(
            clients[client], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        try:
            client_stdout, client_stderr = client_process.communicate(timeout=args.timeout)
            server_code = server_process.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            outcome.detail = f"timed out after {args.timeout} s"
            return outcome
        reader.join(timeout=5)
        server_stderr = server_process.stderr.read()
        expected_client = f"ok {args.calls}".encode()
        expected_server = f"served {args.calls + 2}".encode()
        problems = []
        if client_process.returncode != 0 or expected_client not in client_stdout.splitlines():
            problems.append(
                f"{client} client exit {client_process.returncode}: {tail(client_stdout)} {tail(client_stderr)}".strip()
            )
        if server_code != 0 or expected_server not in [l.strip() for l in server_out]:
            last = tail(b"".join(server_out[1:]))
            problems.append(f"{server} server exit {server_code}: {last} {tail(server_stderr)}".strip())
        if problems:
            outcome.detail = "; ".join(problems)
        else:
            outcome.status = "ok"
        return outcome
    finally:
        for process in (client_process, server_process):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        outcome.seconds = time.monotonic() - started


class NatsServer:
    """The one nats-server the `nats` column's cells share, on a loopback port
    it picks itself; every peer finds it through IPCALL_NATS_URL."""

    def __init__(self, binary: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="ipcall-matrix-nats-")
        self.process = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", self.dir, "-l", os.path.join(self.dir, "log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ports = Path(self.dir) / f"{Path(binary).name}_{self.process.pid}.ports"
        deadline = time.monotonic() + 20
        self.url = ""
        while not self.url:
            try:
                self.url = json.loads(ports.read_text())["nats"][0]
            except (OSError, ValueError, KeyError, IndexError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("nats-server did not start")
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def nats_server_binary(given: str) -> Optional[str]:
    for candidate in (given, os.environ.get("IPCALL_NATS_SERVER"), shutil.which("nats-server")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def check_the_checker(args: argparse.Namespace, clients) -> bool:
    """A server that does not follow the script must fail a cell: a plain
    echo server (no checksum) against the Rust client."""
    if isinstance(clients["Rust"], str):
        print(f"harness check skipped: {clients['Rust']}")
        return True
    servers = {"echo": [args.ipcall, "serve", "--echo", "--one-shot", "--unique"]}
    outcome = run_cell("unix", "echo", "Rust", servers, clients, args)
    if outcome.status == "fail" and "not crc32" in outcome.detail:
        print("harness check: a plain echo server fails the script, as it must")
        return True
    print(f"harness check FAILED: a plain echo server gave {outcome.status}: {outcome.detail}")
    return False


def print_matrix(outcomes: List[Outcome], kinds: List[str]) -> None:
    mark = {"ok": "✓", "fail": "✗", "skip": "–"}
    by_cell: Dict[tuple, Outcome] = {(o.kind, o.server, o.client): o for o in outcomes}
    for kind in kinds:
        print(f"\n{kind}:  client ↓  server →")
        print("        " + "".join(f"{s:>8}" for s in SERVER_LANGUAGES))
        for client in CLIENT_LANGUAGES:
            row = "".join(f"{mark[by_cell[(kind, s, client)].status]:>8}" for s in SERVER_LANGUAGES)
            print(f"{client:<8}{row}")
    skipped: Dict[str, List[str]] = {}
    for o in outcomes:
        if o.status == "skip":
            skipped.setdefault(o.detail, []).append(f"{o.kind} {o.client}→{o.server}")
    if skipped:
        print("\nskipped (–):")
        for reason, cells in skipped.items():
            print(f"  {len(cells)} cell(s): {reason}")
    failed = [o for o in outcomes if o.status == "fail"]
    if failed:
        print("\nfailed (✗):")
        for o in failed:
            print(f"  {o.kind} {o.client} client → {o.server} server: {o.detail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(HERE.parent.parent))
    parser.add_argument("--rust-peer", default="")
    parser.add_argument("--c-server", default="")
    parser.add_argument("--c-client", default="")
    parser.add_argument("--cpp-client", default="")
    parser.add_argument("--python", default="")
    parser.add_argument("--node", default="node")
    parser.add_argument("--ipcall", default="", help="the ipcall command, for the harness check")
    parser.add_argument("--kinds", default="unix,pipe,shm,nats")
    parser.add_argument("--nats-server", default="", help="nats-server binary (else $IPCALL_NATS_SERVER, PATH)")
    parser.add_argument("--calls", type=int, default=1000, help="checksummed calls per cell (default 1000)")
    parser.add_argument("--jobs", type=int, default=2, help="cells run at once (default 2)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a cell may take")
    args = parser.parse_args()
    if args.calls < 3:
        parser.error("--calls must be at least 3 (the script's fixed sizes)")

    servers, clients = languages(args)
    if args.ipcall:
        if not check_the_checker(args, clients):
            return 1
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    cells = [(k, s, c) for k in kinds for s in SERVER_LANGUAGES for c in CLIENT_LANGUAGES]
    nats = None
    if "nats" in kinds:
        binary = nats_server_binary(args.nats_server)
        if binary is None:
            # A missing broker fails the column loudly rather than skipping it.
            print("nats-server not found: run `make nats-server` or pass --nats-server", file=sys.stderr)
            return 1
        nats = NatsServer(binary)
        os.environ["IPCALL_NATS_URL"] = nats.url
    try:
        return run_cells(args, kinds, cells, servers, clients)
    finally:
        if nats is not None:
            nats.stop()


def run_cells(args: argparse.Namespace, kinds: List[str], cells, servers, clients) -> int:
    started = time.monotonic()
    outcomes: List[Outcome] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_cell, k, s, c, servers, clients, args) for k, s, c in cells]
        for future in concurrent.futures.as_completed(futures):
            o = future.result()
            outcomes.append(o)
            if o.status != "skip":
                mark = "✓" if o.status == "ok" else "✗"
                print(f"[{len(outcomes)}/{len(cells)}] {o.kind} {o.client} → {o.server}: {mark} ({o.seconds:.1f} s)",
                      file=sys.stderr, flush=True)
    elapsed = time.monotonic() - started
    print(f"ipcall cross-language matrix: {args.calls} checksummed calls per cell (0 B to 1 MiB, one of 16 MiB),")
    print("one fail (remote error, payload intact) and one no-reply; server and client in separate processes.")
    print_matrix(outcomes, kinds)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("ok", "fail", "skip")}
    print(f"\n{counts['ok']} ✓, {counts['fail']} ✗, {counts['skip']} skipped, in {elapsed:.0f} s")
    return 1 if counts["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
