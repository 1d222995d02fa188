"""The exceptions of ipcall: one class per error kind, all under `Error`.

They are the same closed set in every language (DESIGN §2); `code` is the
kind's stable upper-snake-case code, as the Node face and the CLI print it.
"""

from __future__ import annotations

from typing import ClassVar, Optional

__all__ = [
    "Error",
    "Disconnected",
    "NoReply",
    "RemoteError",
    "Timeout",
    "Closed",
    "TooLarge",
    "AddrInUse",
    "NotFound",
    "PermissionDenied",
    "InvalidName",
    "ProtocolError",
    "IoError",
]


class Error(Exception):
    """Base class of every ipcall error."""

    code: ClassVar[str] = "ERROR"
    #: The server name involved, when there is one.
    name: Optional[str] = None


class Disconnected(Error):
    """The server went away (or the connection broke); every call that was
    pending on it fails with this at once."""

    code = "DISCONNECTED"


class NoReply(Error):
    """The server dropped the request without answering it."""

    code = "NO_REPLY"


class RemoteError(Error):
    """The server answered with `request.fail(payload)`."""

    code = "REMOTE"
    #: The application error payload, byte for byte.
    payload: bytes = b""


class Timeout(Error, TimeoutError):
    """The wait ran out. A call that timed out is abandoned: its late reply
    is discarded, never delivered to another call."""

    code = "TIMEOUT"


class Closed(Error):
    """The object is closed: `recv` on a server that can get no more
    requests, a closed client, a request already answered, a call whose
    reply was already taken."""

    code = "CLOSED"


class TooLarge(Error):
    """A message is larger than the limit of the side that would receive it;
    it was refused before anything was sent."""

    code = "TOO_LARGE"
    #: The size of the refused message in bytes.
    size: int = 0
    #: The limit in force.
    max: int = 0


class AddrInUse(Error):
    """A live server already holds this name."""

    code = "ADDR_IN_USE"


class NotFound(Error):
    """No server is bound to this name."""

    code = "NOT_FOUND"


class PermissionDenied(Error):
    """The operating system or the server's access rules refused access."""

    code = "PERMISSION_DENIED"


class InvalidName(Error, ValueError):
    """The name is not a valid ipcall name, or names a transport this build
    does not provide (see `reason`)."""

    code = "INVALID_NAME"
    #: Why the name is invalid.
    reason: str = ""


class ProtocolError(Error):
    """The peer broke the wire format; that connection was dropped."""

    code = "PROTOCOL"
    #: What was wrong.
    reason: str = ""


class IoError(Error, OSError):
    """Another operating-system error (`errno` and `strerror` as for OSError)."""

    code = "IO"


# Tracebacks and reprs name the classes where users import them from
# (`ipcall.Disconnected`, not `ipcall._errors.Disconnected`).
for _class in (
    Error,
    Disconnected,
    NoReply,
    RemoteError,
    Timeout,
    Closed,
    TooLarge,
    AddrInUse,
    NotFound,
    PermissionDenied,
    InvalidName,
    ProtocolError,
    IoError,
):
    _class.__module__ = "ipcall"
del _class
