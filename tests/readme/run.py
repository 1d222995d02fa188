#!/usr/bin/env python3
"""Runs the README's quick starts as written: every C, C++, Python and Node
block under "## Quick start, per language" is compiled (C, C++) and run
against an `ipcall serve` greeter, and must print exactly "hello, world".
(The Rust block is a doc test of the core crate.)

    run.py --ipcall PATH --lib libipcall.a --python PY [--node NODE]
    run.py --ipcall PATH --prefix DIR --python PY --node-modules DIR

The second form is the installed one (make test-dist): C and C++ build with
`pkg-config --cflags --libs ipcall` against an unpacked C tarball at DIR and
run with its lib/ on LD_LIBRARY_PATH, and Node loads ipcall from the
node_modules of a project where the npm tarballs were installed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = "hello, world\n"


def quick_starts() -> dict:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Quick start, per language") :]
    section = section[: section.index("\n## ", 1)]
    blocks = {}
    for language, code in re.findall(r"^### (\S+)\n.*?^```\w+\n(.*?)^```$", section, flags=re.S | re.M):
        blocks[language] = code
    return blocks


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ipcall", required=True)
    parser.add_argument("--lib", help="the static libipcall.a (from the build tree)")
    parser.add_argument("--prefix", help="an installed ipcall (C tarball or make install), used through pkg-config")
    parser.add_argument("--python", required=True)
    parser.add_argument("--node", default="node")
    parser.add_argument("--node-modules", help="node_modules holding an installed ipcall (default: the checkout's node/)")
    args = parser.parse_args()
    if (args.lib is None) == (args.prefix is None):
        parser.error("give exactly one of --lib and --prefix")

    blocks = quick_starts()
    missing = {"Rust", "C", "C++", "Python", "Node"} - set(blocks)
    if missing:
        print(f"README quick start: no block for {sorted(missing)}")
        return 1
    node_built = args.node_modules is not None or any(
        p.name.startswith("ipcall.") and p.name.endswith(".node") for p in (ROOT / "node").glob("*")
    )

    server = subprocess.Popen(
        [args.ipcall, "serve", "--unique", "unix", "--exec", "printf 'hello, '; cat"],
        stdout=subprocess.PIPE,
        text=True,
    )
    failures = 0
    try:
        name = server.stdout.readline().strip()
        env = dict(os.environ, IPCALL_SERVER=name)
        if args.prefix is not None:
            env["LD_LIBRARY_PATH"] = str(Path(args.prefix) / "lib")
        with tempfile.TemporaryDirectory() as work:
            work = Path(work)
            (work / "hello.c").write_text(blocks["C"])
            (work / "hello.cpp").write_text(blocks["C++"])
            (work / "hello.py").write_text(blocks["Python"])
            (work / "hello.js").write_text(blocks["Node"])
            if args.node_modules is not None:
                (work / "node_modules").symlink_to(Path(args.node_modules).resolve())
            else:
                (work / "node_modules").mkdir()
                (work / "node_modules" / "ipcall").symlink_to(ROOT / "node")
            warnings = ["-Wall", "-Wextra", "-Werror"]
            if args.prefix is not None:
                pkg_env = dict(os.environ, PKG_CONFIG_PATH=str(Path(args.prefix) / "lib" / "pkgconfig"))
                flags = subprocess.run(
                    ["pkg-config", "--cflags", "--libs", "ipcall"], env=pkg_env, capture_output=True, text=True, check=True
                ).stdout.split()
                libs = flags
            else:
                libs = [args.lib, "-lpthread", "-ldl", "-lm"]
                warnings += [f"-I{ROOT / 'include'}", f"-I{ROOT / 'bindings' / 'cpp'}"]
            steps = {
                "C": (["cc", "-std=c11", *warnings, "hello.c", *libs, "-o", "hello-c"], ["./hello-c"]),
                "C++": (["c++", "-std=c++17", *warnings, "hello.cpp", *libs, "-o", "hello-cpp"], ["./hello-cpp"]),
                "Python": (None, [args.python, "hello.py"]),
                "Node": (None, [args.node, "hello.js"]),
            }
            for language, (build, command) in steps.items():
                if language == "Node" and not node_built:
                    print(f"README quick start, {language}: skipped (node package not built)")
                    continue
                if build is not None:
                    built = subprocess.run(build, cwd=work, capture_output=True, text=True)
                    if built.returncode != 0:
                        print(f"README quick start, {language}: does not compile\n{built.stderr}")
                        failures += 1
                        continue
                ran = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=60)
                if ran.returncode == 0 and ran.stdout == EXPECTED:
                    print(f"README quick start, {language}: prints {EXPECTED.strip()!r} ✓")
                else:
                    print(f"README quick start, {language}: exit {ran.returncode}, printed {ran.stdout!r} {ran.stderr}")
                    failures += 1
    finally:
        server.kill()
        server.wait()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
