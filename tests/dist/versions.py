#!/usr/bin/env python3
"""The one version of ipcall and the copies of it that cannot read Cargo.toml.

The workspace Cargo.toml's `version` is the version of every crate, of the
Python wheel (maturin reads it) and of the C tarball. These files hold a copy
because their tools need a literal: node/package.json and its lockfile (npm),
node/index.js (napi generates its version checks from package.json), the C
constants IPCALL_VERSION_* (cbindgen copies them into include/ipcall.h) and
the CLI's exact requirement on the core crate.

    versions.py check VERSION   fails, naming each file, unless all agree
    versions.py set VERSION     rewrites Cargo.toml and every copy
                                (then: cargo update --workspace, make c-header,
                                make node-build; `make set-version` does all)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.-]+)?$")


def c_constants(path: Path, define: bool) -> dict:
    text = path.read_text()
    pattern = r"#define IPCALL_VERSION_(MAJOR|MINOR|PATCH) (\d+)" if define else r"pub const IPCALL_VERSION_(MAJOR|MINOR|PATCH): u32 = (\d+);"
    return dict(re.findall(pattern, text))


def found(version: str) -> list:
    """(file, what it holds) for every copy that differs from `version`."""
    major, minor, patch = SEMVER.match(version).groups()
    want_c = {"MAJOR": major, "MINOR": minor, "PATCH": patch}
    wrong = []
    package = json.loads((ROOT / "node/package.json").read_text())
    if package["version"] != version:
        wrong.append(("node/package.json", package["version"]))
    lock = json.loads((ROOT / "node/package-lock.json").read_text())
    for where, value in (("version", lock.get("version")), ('packages[""].version', lock["packages"][""].get("version"))):
        if value != version:
            wrong.append((f"node/package-lock.json {where}", value))
    stale = sorted(set(re.findall(r"bindingPackageVersion !== '([^']*)'", (ROOT / "node/index.js").read_text())) - {version})
    if stale:
        wrong.append(("node/index.js (make node-build regenerates it)", ", ".join(stale)))
    for path, define in ((ROOT / "rust/ipcall-ffi/src/lib.rs", False), (ROOT / "include/ipcall.h", True)):
        constants = c_constants(path, define)
        if constants != want_c:
            wrong.append((str(path.relative_to(ROOT)) + " IPCALL_VERSION_*", constants))
    cli = re.search(r'^ipcall = \{ path = "../ipcall", version = "=([^"]*)"[^}]*\}$', (ROOT / "rust/ipcall-cli/Cargo.toml").read_text(), re.M)
    if cli is None or cli.group(1) != version:
        wrong.append(("rust/ipcall-cli/Cargo.toml (ipcall dependency)", cli and cli.group(1)))
    return wrong


def set_version(version: str) -> None:
    major, minor, patch = SEMVER.match(version).groups()
    cargo = ROOT / "Cargo.toml"
    text = cargo.read_text()
    text = re.sub(r'(\[workspace\.package\]\nversion = ")[^"]*(")', rf"\g<1>{version}\g<2>", text, count=1)
    cargo.write_text(text)
    for name in ("package.json", "package-lock.json"):
        path = ROOT / "node" / name
        data = json.loads(path.read_text())
        data["version"] = version
        if name == "package-lock.json":
            data["packages"][""]["version"] = version
        path.write_text(json.dumps(data, indent=2) + "\n")
    ffi = ROOT / "rust/ipcall-ffi/src/lib.rs"
    text = ffi.read_text()
    for part, value in (("MAJOR", major), ("MINOR", minor), ("PATCH", patch)):
        text = re.sub(rf"(pub const IPCALL_VERSION_{part}: u32 = )\d+;", rf"\g<1>{value};", text)
    ffi.write_text(text)
    cli = ROOT / "rust/ipcall-cli/Cargo.toml"
    cli.write_text(re.sub(r'(ipcall = \{ path = "../ipcall", version = "=)[^"]*(")', rf"\g<1>{version}\g<2>", cli.read_text()))


def main(argv: list) -> int:
    if len(argv) != 3 or argv[1] not in ("check", "set") or not SEMVER.match(argv[2]):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    if argv[1] == "set":
        set_version(argv[2])
        print(f"version set to {argv[2]} in Cargo.toml and its copies")
        return 0
    wrong = found(argv[2])
    for path, value in wrong:
        print(f"version-check: {path} has {value!r}, Cargo.toml has {argv[2]!r}")
    if not wrong:
        print(f"version-check: every copy of the version is {argv[2]}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
