"""ipcall: request/reply messaging between threads and processes on one machine.

A `Server` binds a name, a `Client` connects to it, and every request gets
exactly one answer: a reply, an application error (`RemoteError`), or an
exception saying why there was none::

    import ipcall, threading

    with ipcall.Server.bind_unique("mem") as server:
        def serve() -> None:
            for request in server:
                request.reply(b"hello, " + request.data)
        threading.Thread(target=serve, daemon=True).start()
        with ipcall.connect(server.name) as client:
            assert client.call(b"world") == b"hello, world"

Names are ``kind:address``: ``mem:`` for queues inside this process,
``unix:``, ``pipe:`` and ``shm:`` for other processes (in any language).
Blocking calls release the GIL and can be interrupted with Ctrl+C; every
blocking call has an asyncio form (`Server.recv_async`, `Client.call_async`)
that runs on the event loop itself, with no thread per call.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Deque, Dict, Iterator, Literal, Optional, Sequence, Type

from . import _ipcall
from ._errors import (
    AddrInUse,
    Closed,
    Disconnected,
    Error,
    InvalidName,
    IoError,
    NoReply,
    NotFound,
    PermissionDenied,
    ProtocolError,
    RemoteError,
    Timeout,
    TooLarge,
)
from ._ipcall import DEFAULT_MAX_MESSAGE_SIZE, Peer, Pending, Request, ServerStats, __version__

if TYPE_CHECKING:
    from typing_extensions import Buffer, Self

__all__ = [
    "Server",
    "Client",
    "Request",
    "Peer",
    "Pending",
    "ServerStats",
    "connect",
    "DEFAULT_MAX_MESSAGE_SIZE",
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

# __version__ comes from the native module: the workspace version in
# Cargo.toml, the one version of every ipcall package.


class _ClosedByContext:
    """`with` and `async with` close the object on exit; repr is the native one's."""

    __slots__ = ()

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        # Subclasses keep their native handle in `_native` (typed there).
        return repr(getattr(self, "_native"))


class Server(_ClosedByContext):
    """A server bound to a name. Create it with `Server.bind` or
    `Server.bind_unique`; close it with `close()` or a ``with`` block.

    Iterating over a server yields requests until it is closed. Several
    threads may receive from one server at once.
    """

    __slots__ = ("_native", "_waiters", "__weakref__")

    def __init__(self, native: _ipcall.Server) -> None:
        self._native = native
        # asyncio receivers waiting for a request, per event loop; a loop is
        # a key exactly while the server's descriptor is registered with it.
        self._waiters: Dict[asyncio.AbstractEventLoop, Deque[asyncio.Future[Request]]] = {}

    @classmethod
    def bind(
        cls,
        name: str,
        *,
        max_message_size: Optional[int] = None,
        one_shot: bool = False,
        pool: bool = False,
        allow_uids: Sequence[int] = (),
        allow_gids: Sequence[int] = (),
        allow_any_uid: bool = False,
        handshake_timeout: Optional[float] = None,
        ring_size: Optional[int] = None,
        max_queued_reply_bytes: Optional[int] = None,
        reply_timeout: Optional[float] = None,
        max_connections: Optional[int] = None,
        frame_timeout: Optional[float] = None,
        wait_mode: Optional[Literal["adaptive", "spin", "block"]] = None,
        connection_name: Optional[str] = None,
    ) -> Server:
        """Listens on `name` (``"mem:jobs"``, ``"unix:/run/app.sock"``, ...).

        Raises `AddrInUse` if a live server holds the name, `InvalidName` if
        it does not parse. Options: `max_message_size` (bytes, default
        64 MiB), `one_shot` (accept exactly one client, unbind at once, end
        when it leaves), `pool` (bind as one member of a worker pool on the
        name: several servers, in this process or others, share it and each
        client spreads its calls over the live members, the least loaded
        first; ``unix:``, ``pipe:`` and ``shm:`` names, else `InvalidName`;
        a name a plain server holds raises `AddrInUse`, as does a plain bind
        of a pool's name), `allow_uids` / `allow_gids` / `allow_any_uid` (who
        besides this user may connect), `handshake_timeout` (seconds),
        `ring_size` (bytes, ``shm:`` only), `wait_mode` (how ``shm:`` waits
        for requests: ``"adaptive"``, the default, spins while it pays off
        and then sleeps; ``"spin"`` never sleeps; ``"block"`` never spins;
        any other text raises `ValueError`), `connection_name` (the name of
        the server's NATS connection, ``nats:`` only, which nats-server's
        monitoring shows: 1 to 256 bytes without control characters, else
        `ValueError`).

        Limits (a client over one is dropped alone; the others keep being
        served): `max_queued_reply_bytes` (unread replies queued for one
        client, default 4 × `max_message_size`; its waits then raise
        `Disconnected`), `reply_timeout` (seconds queued replies may make no
        progress, default 30), `max_connections` (clients served at once,
        default 1024; one more gets `IoError` at connect) and
        `frame_timeout` (seconds a request frame may take to arrive whole,
        default 30; ``unix:`` and ``pipe:``). A negative, NaN or zero-count
        value raises `ValueError`.
        """
        return cls(
            _ipcall.Server.bind(
                name,
                max_message_size=max_message_size,
                one_shot=one_shot,
                pool=pool,
                allow_uids=allow_uids,
                allow_gids=allow_gids,
                allow_any_uid=allow_any_uid,
                handshake_timeout=handshake_timeout,
                ring_size=ring_size,
                max_queued_reply_bytes=max_queued_reply_bytes,
                reply_timeout=reply_timeout,
                max_connections=max_connections,
                frame_timeout=frame_timeout,
                wait_mode=wait_mode,
                connection_name=connection_name,
            )
        )

    @classmethod
    def bind_unique(
        cls,
        kind: str,
        *,
        max_message_size: Optional[int] = None,
        one_shot: bool = False,
        allow_uids: Sequence[int] = (),
        allow_gids: Sequence[int] = (),
        allow_any_uid: bool = False,
        handshake_timeout: Optional[float] = None,
        ring_size: Optional[int] = None,
        max_queued_reply_bytes: Optional[int] = None,
        reply_timeout: Optional[float] = None,
        max_connections: Optional[int] = None,
        frame_timeout: Optional[float] = None,
        wait_mode: Optional[Literal["adaptive", "spin", "block"]] = None,
        connection_name: Optional[str] = None,
    ) -> Server:
        """Listens on a new, unguessable name of `kind` (``"mem"``,
        ``"unix"``, ``"pipe"``, ``"shm"``, ``"nats"``); read it from `name`. Same options
        as `bind`."""
        return cls(
            _ipcall.Server.bind_unique(
                kind,
                max_message_size=max_message_size,
                one_shot=one_shot,
                allow_uids=allow_uids,
                allow_gids=allow_gids,
                allow_any_uid=allow_any_uid,
                handshake_timeout=handshake_timeout,
                ring_size=ring_size,
                max_queued_reply_bytes=max_queued_reply_bytes,
                reply_timeout=reply_timeout,
                max_connections=max_connections,
                frame_timeout=frame_timeout,
                wait_mode=wait_mode,
                connection_name=connection_name,
            )
        )

    @property
    def name(self) -> str:
        """The name clients connect to."""
        return self._native.name

    @property
    def closed(self) -> bool:
        """True once `close()` was called."""
        return self._native.closed

    def recv(self, timeout: Optional[float] = None) -> Request:
        """Waits for the next request, at most `timeout` seconds (`None`:
        as long as it takes). Raises `Timeout`, or `Closed` once no request
        can come again."""
        return self._native.recv(timeout)

    def try_recv(self) -> Optional[Request]:
        """The next request if one is ready now, else `None`."""
        return self._native.try_recv()

    def accept(self, timeout: Optional[float] = None) -> None:
        """Waits until a client has connected (for a one-shot server, its one
        client); `Timeout` if none came within `timeout` seconds."""
        self._native.accept(timeout)

    def fileno(self) -> int:
        """A descriptor that is readable when a request may be ready, for
        select/poll/epoll; follow readiness with `try_recv()`."""
        return self._native.fileno()

    def close(self) -> None:
        """Stops taking requests and unbinds the name. Receivers blocked in
        `recv` or `recv_async` raise `Closed`; requests already received can
        still be answered."""
        # asyncio receivers learn `Closed` through the descriptor, which is
        # readable once the server is finished.
        self._native.close()

    def stats(self) -> ServerStats:
        """What this server has done since it was bound, counted by ipcall
        itself: calls, replies, fails, no-replies, errors by kind, bytes in
        and out, a latency histogram, open connections. A client reads the
        same with `Client.server_stats()`."""
        return self._native.stats()

    def drain(self, timeout: Optional[float] = None) -> bool:
        """Closes gracefully: as `close()` at once (the name is unbound,
        calls not yet received fail with `Disconnected`, receivers raise
        `Closed`), then waits at most `timeout` seconds (`None`: as long as
        it takes; the GIL is released) until every request already received
        is answered or closed. Returns True if all were, False if the
        timeout passed first. Call it from another thread than the one that
        answers, or use `drain_async`."""
        return self._native.drain(timeout)

    async def drain_async(self, timeout: Optional[float] = None) -> bool:
        """`drain` for asyncio: the wait runs in the loop's default
        executor, so handlers on this loop keep answering meanwhile."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._native.drain, timeout)

    async def recv_async(self) -> Request:
        """Waits for the next request on the running event loop, without a
        thread: the server's descriptor is watched with ``loop.add_reader``.
        Cancelling it loses no request."""
        request = self._native.try_recv()
        if request is not None:
            return request
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Request] = loop.create_future()
        waiters = self._waiters.get(loop)
        if waiters is None:
            waiters = self._waiters[loop] = deque()
            loop.add_reader(self._native.fileno(), self._dispatch, loop)
        waiters.append(future)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                # The request was taken for us just as we were cancelled:
                # hand it back so the next receiver gets it, not NoReply.
                self._native._push_back(future.result())
                self._wake_all(loop)
            raise
        finally:
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._release(loop)

    def _wake_all(self, running: asyncio.AbstractEventLoop) -> None:
        """Makes every loop with receivers look again (a handed-back request
        does not make the descriptor readable); threads blocked in `recv`
        see it within a slice."""
        for loop in list(self._waiters):
            if loop is running:
                loop.call_soon(self._dispatch, loop)
            else:
                try:
                    loop.call_soon_threadsafe(self._dispatch, loop)
                except RuntimeError:  # that loop was closed meanwhile
                    pass

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stops watching the descriptor on `loop` (no receivers left there)."""
        waiters = self._waiters.get(loop)
        if waiters is not None and not waiters:
            del self._waiters[loop]
            if not loop.is_closed():
                loop.remove_reader(self._native.fileno())

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        """On `loop`: hands ready requests (or the error that ends them) to
        the receivers waiting there, oldest first."""
        waiters = self._waiters.get(loop)
        while waiters:
            future = waiters[0]
            if future.done():  # cancelled
                waiters.popleft()
                continue
            try:
                request = self._native.try_recv()
            except Error as error:
                waiters.popleft()
                future.set_exception(error)
                continue
            if request is None:
                break
            waiters.popleft()
            future.set_result(request)
        if waiters is not None and not waiters:
            self._release(loop)

    def __iter__(self) -> Iterator[Request]:
        """Requests until the server is closed."""
        return iter(self._native)

    def __aiter__(self) -> Server:
        return self

    async def __anext__(self) -> Request:
        """The next request (`recv_async`); iteration ends at `Closed`."""
        try:
            return await self.recv_async()
        except Closed:
            raise StopAsyncIteration from None


class Client(_ClosedByContext):
    """A connection to a server: `connect()` or `Client.connect()`.

    Many calls may be in flight at once, from several threads (share one
    client freely) or pipelined with `send()`; replies are matched to calls,
    never by order.
    """

    __slots__ = ("_native", "__weakref__")

    def __init__(self, native: _ipcall.Client) -> None:
        self._native = native

    @classmethod
    def connect(
        cls,
        name: str,
        timeout: Optional[float] = None,
        *,
        max_message_size: Optional[int] = None,
        wait_mode: Optional[Literal["adaptive", "spin", "block"]] = None,
        connection_name: Optional[str] = None,
    ) -> Client:
        """Connects to `name`. Without `timeout`, raises `NotFound` at once
        if no server holds it; with one, waits up to `timeout` seconds for
        the server to appear (then `NotFound`; `Timeout` if one is there but
        does not complete the handshake). `max_message_size` bounds the
        replies accepted and the requests sent (default 64 MiB).
        `wait_mode` is how ``shm:`` waits for replies (``"adaptive"``, the
        default, ``"spin"`` or ``"block"``; see `Server.bind`).
        `connection_name` names the NATS connection (``nats:`` only): the
        server sees it as ``request.peer.name``. A bad value of either
        raises `ValueError`."""
        return cls(
            _ipcall.Client.connect(
                name,
                timeout,
                max_message_size=max_message_size,
                wait_mode=wait_mode,
                connection_name=connection_name,
            )
        )

    @property
    def name(self) -> str:
        """The name of the server this client talks to."""
        return self._native.name

    @property
    def closed(self) -> bool:
        """True once `close()` was called."""
        return self._native.closed

    def call(self, data: Buffer, timeout: Optional[float] = None) -> bytes:
        """Sends `data` (any bytes-like object) and returns the reply.

        Waits at most `timeout` seconds (then `Timeout`, and the call is
        abandoned: a late reply is discarded); the server sees the timeout
        as the request's `deadline`. Raises `RemoteError` if the
        server failed the request, `NoReply` if it dropped it,
        `Disconnected` if it went away, `TooLarge` if `data` is over the
        limit."""
        return self._native.call(data, timeout)

    def ping(self, timeout: Optional[float] = None) -> float:
        """Checks that the server answers, in one round trip that its ipcall
        library answers itself (the application never sees it); returns the
        round trip in seconds. Waits at most `timeout` seconds (then
        `Timeout`; the GIL is released). Raises `ProtocolError` if the
        server's ipcall is too old to answer, `Disconnected` if it is gone."""
        return self._native.ping(timeout)

    def server_stats(self, timeout: Optional[float] = None) -> ServerStats:
        """The server's statistics (what `Server.stats()` returns in its
        process), answered by its library as `ping` is."""
        return self._native.server_stats(timeout)

    def send(self, data: Buffer) -> Pending:
        """Sends `data` and returns the call in flight; `wait()` on it later."""
        return self._native.send(data)

    async def call_async(self, data: Buffer, timeout: Optional[float] = None) -> bytes:
        """`call` on the running event loop, read on the loop thread itself.

        The request is written at once if the transport has room (else it
        waits, on the loop, until there is); the loop watches the
        connection's descriptor with ``add_reader`` (once per loop) and
        settles the reply there. No thread is started or crossed per call.
        A call with no other `call_async` in flight on its connection first
        looks for its reply on this thread (over ``shm:`` with a brief spin,
        where the server runs on another CPU) and involves the loop only if
        it has to wait.
        After `timeout` seconds it raises `Timeout` and the call is
        abandoned; cancelling it abandons it too (a late reply is
        discarded, and a request still waiting for room is never sent). The
        client stays usable either way. The server sees the timeout (what
        is left of it when the request goes out) as the request's
        `deadline`."""
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be None or >= 0 seconds, not {timeout}")
        native = self._native
        # The reply if it was there at once; else the call's token, its
        # Future and the running loop (RuntimeError if none runs).
        submitted = native._submit(data, timeout)
        if isinstance(submitted, bytes):
            return submitted
        token, future, loop = submitted
        timer = None if timeout is None else loop.call_later(timeout, native._expire, loop, token)
        try:
            return await future
        except asyncio.CancelledError:
            native._cancel(loop, token)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def clone(self) -> Client:
        """A new client on the same connection, closed independently."""
        return Client(self._native.clone())

    def close(self) -> None:
        """Closes this client; calls already in flight still complete."""
        self._native.close()


def connect(
    name: str,
    timeout: Optional[float] = None,
    *,
    max_message_size: Optional[int] = None,
    wait_mode: Optional[Literal["adaptive", "spin", "block"]] = None,
    connection_name: Optional[str] = None,
) -> Client:
    """Connects to the server bound to `name`; see `Client.connect`."""
    return Client.connect(
        name, timeout, max_message_size=max_message_size, wait_mode=wait_mode, connection_name=connection_name
    )
