#!/usr/bin/env python3
"""Fails unless every declaration in the generated C header has a doc comment.

cbindgen copies the Rust doc comments; a Rust item without one would come
out bare, so this keeps the promise "a doc comment on every item" checked.
"""
import re
import sys

DECL = re.compile(r"^(#define IPCALL_\w+|enum \w+|typedef struct \w+|[A-Za-z_][\w \*]*\bipcall_\w+\()")


def main(path: str) -> int:
    lines = open(path, encoding="utf-8").read().splitlines()
    bare = []
    for i, line in enumerate(lines):
        if not DECL.match(line) or line.startswith("#define IPCALL_H"):
            continue
        if i == 0 or not lines[i - 1].rstrip().endswith("*/"):
            bare.append(f"{path}:{i + 1}: {line.strip()}")
    for entry in bare:
        print(f"undocumented: {entry}")
    return 1 if bare else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
