"""The Python server of the cross-language matrix (tests/matrix/README.md).

    server.py KIND    binds a one-shot unique name of KIND, prints it, serves
"""

import sys
import zlib

import ipcall

EXIT_SKIP = 77


def main() -> int:
    try:
        server = ipcall.Server.bind_unique(sys.argv[1], one_shot=True)
    except ipcall.InvalidName as error:
        print(f"SKIP {error}", flush=True)
        return EXIT_SKIP
    print(server.name, flush=True)
    served = 0
    with server:
        for request in server:
            served += 1
            data = request.data
            if data.startswith(b"fail:"):
                request.fail(data[5:])
            elif data == b"noreply":
                request.close()
            else:
                request.reply(zlib.crc32(data).to_bytes(4, "little") + data)
    print(f"served {served}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
