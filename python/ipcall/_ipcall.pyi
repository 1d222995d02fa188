"""Type stubs of the native module `ipcall._ipcall` (checked against it by
`tests/test_stubs.py` with mypy's stubtest). Use the `ipcall` package, which
wraps `Server` and `Client` and re-exports the rest."""

import asyncio
from types import TracebackType
from typing import Any, Coroutine, Dict, List, Literal, Optional, Sequence, Tuple, Type, Union, final

from typing_extensions import Buffer, Self


__all__ = [
    "Server",
    "Request",
    "Peer",
    "Client",
    "Pending",
    "ServerStats",
    "Completions",
    "_BenchEchoServer",
    "_CancelBell",
    "_bench_rust_client",
    "error_kinds",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "SLICE_SECONDS",
    "__version__",
]

__version__: str
DEFAULT_MAX_MESSAGE_SIZE: int
SLICE_SECONDS: float

@final
class ServerStats:
    """What a server has done since it was bound, counted by ipcall itself
    (`Server.stats()`, `Client.server_stats()`)."""

    @property
    def uptime(self) -> float:
        """Seconds since the server was bound."""
    @property
    def connections(self) -> int:
        """Client connections open now (unix:, pipe:, shm:; 0 for mem: and nats:)."""
    @property
    def calls(self) -> int:
        """Requests handed to the application."""
    @property
    def replies(self) -> int: ...
    @property
    def fails(self) -> int: ...
    @property
    def no_replies(self) -> int:
        """Requests dropped unanswered."""
    @property
    def in_flight(self) -> int:
        """Requests handed out and not answered yet."""
    @property
    def bytes_in(self) -> int: ...
    @property
    def bytes_out(self) -> int: ...
    @property
    def errors(self) -> Dict[str, int]:
        """Errors by kind, named as the exception classes ("RemoteError",
        "NoReply", "TooLarge", "ProtocolError"); kinds that occurred only."""
    @property
    def latency(self) -> List[int]:
        """32 counts of answers by latency (receipt by the application to
        answer): ``latency[0]`` under 1 µs, ``latency[i]`` in
        [2**(i-1), 2**i) µs, the last open-ended."""
    @staticmethod
    def latency_bucket_range(i: int) -> Tuple[float, Optional[float]]:
        """Bucket `i`'s bounds in seconds (the upper one None for the last)."""

@final
class Server:
    @staticmethod
    def bind(
        name: str,
        *,
        max_message_size: Optional[int] = None,
        one_shot: bool = False,
        pool: bool = False,
        allow_uids: Sequence[int] = ...,
        allow_gids: Sequence[int] = ...,
        allow_any_uid: bool = False,
        handshake_timeout: Optional[float] = None,
        ring_size: Optional[int] = None,
        max_queued_reply_bytes: Optional[int] = None,
        reply_timeout: Optional[float] = None,
        max_connections: Optional[int] = None,
        frame_timeout: Optional[float] = None,
        wait_mode: Optional[Literal["adaptive", "spin", "block"]] = None,
        connection_name: Optional[str] = None,
    ) -> Server: ...
    @staticmethod
    def bind_unique(
        kind: str,
        *,
        max_message_size: Optional[int] = None,
        one_shot: bool = False,
        allow_uids: Sequence[int] = ...,
        allow_gids: Sequence[int] = ...,
        allow_any_uid: bool = False,
        handshake_timeout: Optional[float] = None,
        ring_size: Optional[int] = None,
        max_queued_reply_bytes: Optional[int] = None,
        reply_timeout: Optional[float] = None,
        max_connections: Optional[int] = None,
        frame_timeout: Optional[float] = None,
        wait_mode: Optional[Literal["adaptive", "spin", "block"]] = None,
        connection_name: Optional[str] = None,
    ) -> Server: ...
    @property
    def name(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def recv(self, timeout: Optional[float] = None) -> Request: ...
    def try_recv(self) -> Optional[Request]: ...
    def accept(self, timeout: Optional[float] = None) -> None: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...
    def drain(self, timeout: Optional[float] = None) -> bool: ...
    def stats(self) -> ServerStats: ...
    def _push_back(self, request: Request) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        _ty: Optional[Type[BaseException]],
        _value: Optional[BaseException],
        _tb: Optional[TracebackType],
    ) -> None: ...
    def __iter__(self) -> Self: ...
    def __next__(self) -> Request: ...

@final
class Peer:
    """Who sent a request, as far as the transport can tell."""

    @property
    def pid(self) -> Optional[int]: ...
    @property
    def uid(self) -> Optional[int]: ...
    @property
    def gid(self) -> Optional[int]: ...
    @property
    def nats_client_id(self) -> Optional[int]:
        """`nats:` only: the client id the sender's NATS server assigned to
        its connection, as the sender states it (unchecked); else None."""
    @property
    def name(self) -> Optional[str]:
        """`nats:` only: the sender's NATS connection name (its
        `connection_name`, by default ``ipcall client (pid N)``), as the
        sender states it; else None."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Request:
    """One received request: its bytes, its sender, and the duty to answer
    it exactly once with `reply` or `fail`. Closed (or garbage-collected)
    unanswered, its caller gets `NoReply`."""

    @property
    def data(self) -> bytes: ...
    @property
    def peer(self) -> Peer: ...
    @property
    def deadline(self) -> Optional[float]:
        """When the caller stops waiting, as a `time.monotonic()` value
        (seconds; it may already be past), or None if the caller set no
        timeout when it sent the request (a plain `call`/`send`). The
        caller's remaining time is added to this process's clock on
        arrival, so no clock is shared; over 100 years is clamped to 100
        years (so a `timeout=float("inf")` call has one, 100 years away)."""
    @property
    def cancelled(self) -> bool:
        """True once the caller gave up (its timeout passed, its
        `call_async` task was cancelled, or it dropped the call unanswered)
        or is gone (its `unix:`/`pipe:`/`shm:` connection ended: closed, its
        process died, or dropped by the server; not the server's own
        `close`/`drain`).
        Reading it reads what the connection has now, without blocking, so a
        busy handler learns it by polling. Answering is still harmless.
        Always False where the caller cannot tell (an older peer; a `nats:`
        call not yet acknowledged)."""
    def wait_cancelled(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the caller gives up or the request is answered or
        closed (by another thread), at most `timeout` seconds (None: until
        one of them), with the GIL released; returns `cancelled` then: True
        if the caller gave up, False if the request was answered or closed
        first or the timeout passed (as `threading.Event.wait`). A negative
        or NaN timeout raises `ValueError`."""
    def wait_cancelled_async(self) -> Coroutine[Any, Any, bool]:
        """`wait_cancelled` for asyncio: ``await request.wait_cancelled_async()``
        returns True once the caller gives up, False once the request was
        answered or closed first (at once if either happened already). No
        thread and no polling: the running loop watches one descriptor for
        all its waits. Race it against the work (``asyncio.wait(...,
        return_when=FIRST_COMPLETED)``, a `TaskGroup`) to abandon work
        nobody waits for; cancelling the wait leaves the request as it
        was. Never True where the caller cannot tell (see `cancelled`)."""
    @property
    def pending(self) -> bool: ...
    # wait_cancelled_async's bridge (private; see ipcall/_cancel.py).
    def _ring_when_settled(self, bell: _CancelBell, token: int) -> Optional[bool]: ...
    def _forget_bell(self, bell: _CancelBell, token: int) -> None: ...
    def reply(self, data: Buffer) -> None: ...
    def fail(self, payload: Buffer) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        _ty: Optional[Type[BaseException]],
        _value: Optional[BaseException],
        _tb: Optional[TracebackType],
    ) -> None: ...

@final
class Client:
    @staticmethod
    def connect(
        name: str,
        timeout: Optional[float] = None,
        *,
        max_message_size: Optional[int] = None,
        wait_mode: Optional[Literal["adaptive", "spin", "block"]] = None,
        connection_name: Optional[str] = None,
    ) -> Client: ...
    @property
    def name(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def call(self, data: Buffer, timeout: Optional[float] = None) -> bytes: ...
    def send(self, data: Buffer) -> Pending: ...
    def ping(self, timeout: Optional[float] = None) -> float: ...
    def server_stats(self, timeout: Optional[float] = None) -> ServerStats: ...
    def clone(self) -> Client: ...
    def close(self) -> None: ...
    # call_async on asyncio loops (private; see ipcall.Client.call_async).
    def _submit(
        self, data: Buffer, timeout: Optional[float] = None
    ) -> Union[bytes, Tuple[int, asyncio.Future[bytes], asyncio.AbstractEventLoop]]: ...
    def _on_ready(self, event_loop: asyncio.AbstractEventLoop) -> None: ...
    def _retry_loop(self, event_loop: asyncio.AbstractEventLoop) -> None: ...
    def _release_loop(self, event_loop: asyncio.AbstractEventLoop) -> None: ...
    def _cancel(self, event_loop: asyncio.AbstractEventLoop, token: int) -> None: ...
    def _expire(self, event_loop: asyncio.AbstractEventLoop, token: int) -> None: ...
    def _async_len(self) -> int: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        _ty: Optional[Type[BaseException]],
        _value: Optional[BaseException],
        _tb: Optional[TracebackType],
    ) -> None: ...

@final
class Pending:
    """A call in flight (from `Client.send`): `wait()` for its reply, or
    poll it with `done()`. Closing it (or dropping it) abandons the call."""

    @property
    def name(self) -> str: ...
    def wait(self, timeout: Optional[float] = None) -> bytes: ...
    def done(self) -> bool: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        _ty: Optional[Type[BaseException]],
        _value: Optional[BaseException],
        _tb: Optional[TracebackType],
    ) -> None: ...

@final
class _CancelBell:
    """What an asyncio loop watches for `Request.wait_cancelled_async`
    (private; see ipcall/_cancel.py)."""

    def __new__(cls) -> Self: ...
    def fileno(self) -> int: ...
    def take(self) -> List[int]: ...

@final
class _BenchEchoServer:
    def __new__(cls, name: str) -> Self: ...
    @property
    def name(self) -> str: ...
    def close(self) -> None: ...

def _bench_rust_client(name: str, size: int, iterations: int) -> List[int]: ...
def error_kinds() -> List[Tuple[str, str, int]]:
    """Every error kind as (class name, code, number), from the Rust core."""
    ...
