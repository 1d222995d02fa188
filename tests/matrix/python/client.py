"""The Python client of the cross-language matrix (tests/matrix/README.md):
runs the script against $IPCALL_SERVER."""

import os
import random
import sys
import zlib

import ipcall

FIXED_SIZES = [0, 1 << 20, 16 << 20]
MASK = (1 << 64) - 1


def main() -> int:
    calls = int(os.environ.get("IPCALL_CALLS", "1000"))
    client = ipcall.connect(os.environ["IPCALL_SERVER"], timeout=10)
    state = 0x2545F4914F6CDD1D
    rng = random.Random(1)
    for i in range(calls):
        state ^= (state << 13) & MASK
        state ^= state >> 7
        state ^= (state << 17) & MASK
        size = FIXED_SIZES[i] if i < len(FIXED_SIZES) else (state >> 8) % (1 << (state % 21))
        data = rng.randbytes(size)
        reply = client.call(data)
        if len(reply) != size + 4 or reply[:4] != zlib.crc32(data).to_bytes(4, "little") or reply[4:] != data:
            print(f"FAIL call {i} ({size} B): the reply ({len(reply)} B) is not crc32 + the request")
            return 1
    payload = bytes(range(256))
    try:
        client.call(b"fail:" + payload)
        print("FAIL the fail request was answered")
        return 1
    except ipcall.RemoteError as error:
        if error.payload != payload:
            print(f"FAIL the fail request's payload came back as {error.payload!r}")
            return 1
    try:
        client.call(b"noreply")
        print("FAIL the noreply request was answered")
        return 1
    except ipcall.NoReply:
        pass
    client.close()
    print(f"ok {calls}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ipcall.Error as error:
        print(f"FAIL {type(error).__name__}: {error}")
        sys.exit(1)
