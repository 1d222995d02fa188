//! `Server`, `Request` and `Peer`.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use ipcall::{Error, ErrorKind, Kind, Peer, Request, Server, ServerOptions};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::cancel::{PyCancelBell, Watch};
use crate::errors::{self, ToPyResult};
use crate::{deadline_after, wait_in_slices, BytesLike};

/// Locks `mutex`, ignoring poisoning: every critical section here is a
/// take or a push, so a panic in one leaves the data consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The keyword options of `Server.bind` and `Server.bind_unique`.
#[allow(clippy::too_many_arguments)]
fn server_options(
    max_message_size: Option<u32>,
    one_shot: bool,
    pool: bool,
    allow_uids: Vec<u32>,
    allow_gids: Vec<u32>,
    allow_any_uid: bool,
    handshake_timeout: Option<f64>,
    ring_size: Option<usize>,
    limits: Limits,
    nats: Naming<'_>,
) -> PyResult<ServerOptions> {
    let mut options = ServerOptions::new().one_shot(one_shot).pool(pool).allow_any_uid(allow_any_uid);
    if let Some(max) = max_message_size {
        options = options.max_message_size(max);
    }
    for uid in allow_uids {
        options = options.allow_uid(uid);
    }
    for gid in allow_gids {
        options = options.allow_gid(gid);
    }
    if let Some(seconds) = handshake_timeout {
        let timeout = Duration::try_from_secs_f64(seconds)
            .map_err(|_| PyValueError::new_err(format!("handshake_timeout must be >= 0 seconds, not {seconds}")))?;
        options = options.handshake_timeout(timeout);
    }
    if let Some(bytes) = ring_size {
        options = options.ring_size(bytes);
    }
    if let Some(mode) = crate::wait_mode_of(nats.wait_mode)? {
        options = options.wait_mode(mode);
    }
    if let Some(chosen) = crate::connection_name_of(nats.connection_name)? {
        options = options.connection_name(chosen);
    }
    limits.apply(options)
}

/// The keywords given as text: how `shm:` waits, and the NATS connection's
/// name.
struct Naming<'a> {
    wait_mode: Option<&'a str>,
    connection_name: Option<&'a str>,
}

/// The limit keywords of `Server.bind` and `Server.bind_unique` (a client
/// over one of them is dropped alone).
struct Limits {
    max_queued_reply_bytes: Option<i128>,
    reply_timeout: Option<f64>,
    max_connections: Option<i128>,
    frame_timeout: Option<f64>,
}

impl Limits {
    fn apply(self, mut options: ServerOptions) -> PyResult<ServerOptions> {
        if let Some(bytes) = self.max_queued_reply_bytes {
            options = options.max_queued_reply_bytes(positive("max_queued_reply_bytes", bytes)?);
        }
        if let Some(seconds) = self.reply_timeout {
            options = options.reply_timeout(seconds_of("reply_timeout", seconds)?);
        }
        if let Some(count) = self.max_connections {
            let count = usize::try_from(positive("max_connections", count)?)
                .map_err(|_| PyValueError::new_err(format!("max_connections is too large: {count}")))?;
            options = options.max_connections(count);
        }
        if let Some(seconds) = self.frame_timeout {
            options = options.frame_timeout(seconds_of("frame_timeout", seconds)?);
        }
        Ok(options)
    }
}

/// A count that must be at least 1 (a 0 limit would refuse every client);
/// a `ValueError` otherwise, not the `OverflowError` of a plain unsigned
/// argument.
fn positive(what: &str, value: i128) -> PyResult<u64> {
    u64::try_from(value)
        .ok()
        .filter(|&v| v >= 1)
        .ok_or_else(|| PyValueError::new_err(format!("{what} must be an integer from 1 to {}, not {value}", u64::MAX)))
}

/// A time limit in seconds; a `ValueError` if negative, NaN or too large.
fn seconds_of(what: &str, seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| PyValueError::new_err(format!("{what} must be >= 0 seconds, not {seconds}")))
}

/// What one slice of a blocking `recv` got.
enum Received {
    /// A request handed back by a cancelled asyncio receiver.
    Returned(Py<PyRequest>),
    /// What the server's own `recv` gave.
    Fresh(ipcall::Result<Request>),
}

/// A server bound to a name. Use `ipcall.Server` (which adds asyncio).
#[pyclass(frozen, module = "ipcall._ipcall", name = "Server")]
pub(crate) struct PyServer {
    /// Shared with the threads blocked in `recv` without the GIL, so that
    /// `close` from another thread wakes them with `Closed`.
    inner: Arc<Server>,
    /// The server's name, shared with every request it hands out.
    name: Arc<str>,
    /// Requests handed back by an asyncio receiver that was cancelled after
    /// the request was already taken for it; `recv` and `try_recv` serve
    /// these first, so no request is lost to a cancellation.
    returned: Returned,
    /// `close` was called.
    closed: AtomicBool,
}

/// The requests handed back to a server (`PyServer::returned`), with a
/// flag that lets `recv` skip the lock while there are none (almost always).
#[derive(Default)]
struct Returned {
    queue: Mutex<VecDeque<Py<PyRequest>>>,
    /// Whether `queue` holds any; written only under its lock, so it agrees
    /// with the queue whenever the lock is free. A look that misses a push
    /// under way is like a look just before it: the next slice sees it.
    any: AtomicBool,
}

impl Returned {
    fn push(&self, request: Py<PyRequest>) {
        let mut queue = lock(&self.queue);
        queue.push_back(request);
        self.any.store(true, Ordering::Release);
    }

    fn pop(&self) -> Option<Py<PyRequest>> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let mut queue = lock(&self.queue);
        let request = queue.pop_front();
        self.any.store(!queue.is_empty(), Ordering::Release);
        request
    }

    fn take_all(&self) -> VecDeque<Py<PyRequest>> {
        let mut queue = lock(&self.queue);
        self.any.store(false, Ordering::Release);
        std::mem::take(&mut *queue)
    }
}

impl PyServer {
    fn new(inner: Server) -> PyServer {
        let name = inner.name().into();
        PyServer { inner: Arc::new(inner), name, returned: Returned::default(), closed: AtomicBool::new(false) }
    }

    fn take_returned(&self) -> Option<Py<PyRequest>> {
        self.returned.pop()
    }

    fn wrap(&self, py: Python<'_>, request: Request) -> PyResult<Py<PyRequest>> {
        Py::new(py, PyRequest::new(py, request, self.name.clone())?)
    }
}

#[pymethods]
impl PyServer {
    /// Listens on `name` (`mem:jobs`, `unix:/path.sock`, ...).
    #[staticmethod]
    #[pyo3(signature = (name, *, max_message_size=None, one_shot=false, pool=false, allow_uids=Vec::new(), allow_gids=Vec::new(), allow_any_uid=false, handshake_timeout=None, ring_size=None, max_queued_reply_bytes=None, reply_timeout=None, max_connections=None, frame_timeout=None, wait_mode=None, connection_name=None))]
    #[allow(clippy::too_many_arguments)]
    fn bind(
        py: Python<'_>,
        name: &str,
        max_message_size: Option<u32>,
        one_shot: bool,
        pool: bool,
        allow_uids: Vec<u32>,
        allow_gids: Vec<u32>,
        allow_any_uid: bool,
        handshake_timeout: Option<f64>,
        ring_size: Option<usize>,
        max_queued_reply_bytes: Option<i128>,
        reply_timeout: Option<f64>,
        max_connections: Option<i128>,
        frame_timeout: Option<f64>,
        wait_mode: Option<&str>,
        connection_name: Option<&str>,
    ) -> PyResult<PyServer> {
        let options = server_options(
            max_message_size,
            one_shot,
            pool,
            allow_uids,
            allow_gids,
            allow_any_uid,
            handshake_timeout,
            ring_size,
            Limits { max_queued_reply_bytes, reply_timeout, max_connections, frame_timeout },
            Naming { wait_mode, connection_name },
        )?;
        py.detach(|| Server::bind_with(name, &options)).py_err(py).map(PyServer::new)
    }

    /// Listens on a new, unguessable name of `kind` (`"mem"`, `"unix"`, ...).
    #[staticmethod]
    #[pyo3(signature = (kind, *, max_message_size=None, one_shot=false, allow_uids=Vec::new(), allow_gids=Vec::new(), allow_any_uid=false, handshake_timeout=None, ring_size=None, max_queued_reply_bytes=None, reply_timeout=None, max_connections=None, frame_timeout=None, wait_mode=None, connection_name=None))]
    #[allow(clippy::too_many_arguments)]
    fn bind_unique(
        py: Python<'_>,
        kind: &str,
        max_message_size: Option<u32>,
        one_shot: bool,
        allow_uids: Vec<u32>,
        allow_gids: Vec<u32>,
        allow_any_uid: bool,
        handshake_timeout: Option<f64>,
        ring_size: Option<usize>,
        max_queued_reply_bytes: Option<i128>,
        reply_timeout: Option<f64>,
        max_connections: Option<i128>,
        frame_timeout: Option<f64>,
        wait_mode: Option<&str>,
        connection_name: Option<&str>,
    ) -> PyResult<PyServer> {
        let kind: Kind = kind.parse().py_err(py)?;
        let options = server_options(
            max_message_size,
            one_shot,
            false,
            allow_uids,
            allow_gids,
            allow_any_uid,
            handshake_timeout,
            ring_size,
            Limits { max_queued_reply_bytes, reply_timeout, max_connections, frame_timeout },
            Naming { wait_mode, connection_name },
        )?;
        py.detach(|| Server::bind_unique_with(kind, &options)).py_err(py).map(PyServer::new)
    }

    /// The name clients connect to.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// True once `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waits for the next request (at most `timeout` seconds; `None` =
    /// forever). Raises `Timeout`, or `Closed` once none can come again.
    #[pyo3(signature = (timeout=None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyRequest>> {
        if let Some(request) = self.take_returned() {
            return Ok(request);
        }
        let deadline = deadline_after(timeout)?;
        let server = &self.inner;
        let returned = &self.returned;
        // A request handed back by a cancelled asyncio receiver does not make
        // the descriptor readable, so each slice looks for one first: a
        // thread blocked here picks it up within a slice.
        let received = wait_in_slices(py, deadline, |slice| {
            if let Some(request) = returned.pop() {
                return Some(Received::Returned(request));
            }
            match server.recv_timeout(slice) {
                Err(Error::Timeout { .. }) => None,
                other => Some(Received::Fresh(other)),
            }
        })?;
        match received {
            Some(Received::Returned(request)) => Ok(request),
            Some(Received::Fresh(result)) => self.wrap(py, result.py_err(py)?),
            None => Err(errors::to_py(py, Error::Timeout { name: server.name().into() })),
        }
    }

    /// The next request if one is ready now, else `None`.
    fn try_recv(&self, py: Python<'_>) -> PyResult<Option<Py<PyRequest>>> {
        if let Some(request) = self.take_returned() {
            return Ok(Some(request));
        }
        self.inner.try_recv().py_err(py)?.map(|request| self.wrap(py, request)).transpose()
    }

    /// Waits until a client has connected (a one-shot server's one client).
    /// Raises `Timeout` if none came within `timeout` seconds.
    #[pyo3(signature = (timeout=None))]
    fn accept(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let deadline = deadline_after(timeout)?;
        let server = &self.inner;
        let accepted = wait_in_slices(py, deadline, |slice| match server.accept_timeout(slice) {
            Err(Error::Timeout { .. }) => None,
            other => Some(other),
        })?;
        match accepted {
            Some(result) => result.py_err(py),
            None => Err(errors::to_py(py, Error::Timeout { name: server.name().into() })),
        }
    }

    /// A descriptor that is readable when a request may be ready (for
    /// select/poll/epoll and asyncio's `add_reader`); follow it with
    /// `try_recv()`, readiness can be spurious.
    fn fileno(&self) -> i32 {
        self.inner.as_raw_fd()
    }

    /// Stops taking requests and unbinds the name; blocked `recv`s raise
    /// `Closed`. Requests already received can still be answered.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.inner.close();
        // Requests handed back by cancelled receivers go with the rest of
        // the queue (their callers learn `NoReply`); dropped after unlocking.
        let returned = self.returned.take_all();
        drop(returned);
    }

    /// This server's statistics since it was bound.
    fn stats(&self) -> crate::stats::PyServerStats {
        (&self.inner.stats()).into()
    }

    /// Closes gracefully: `close` at once, then waits (without the GIL, at
    /// most `timeout` seconds; `None` = as long as it takes) until every
    /// request already received is answered or closed. True if all were.
    #[pyo3(signature = (timeout=None))]
    fn drain(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = deadline_after(timeout)?;
        self.close();
        let server = &self.inner;
        // In slices, so that Ctrl-C interrupts a long wait.
        let drained = wait_in_slices(py, deadline, |slice| server.drain(Some(slice)).then_some(()))?;
        Ok(drained.is_some())
    }

    /// Hands a request back to the server, to be returned by the next
    /// `recv`: used by `recv_async` when its caller was cancelled after the
    /// request had been taken for it. The request must be unanswered.
    fn _push_back(&self, py: Python<'_>, request: Bound<'_, PyRequest>) -> PyResult<()> {
        if !request.get().pending() {
            return Err(request.get().answered_error(py));
        }
        self.returned.push(request.unbind());
        Ok(())
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __exit__(
        &self,
        _ty: Option<&Bound<'_, PyAny>>,
        _value: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) {
        self.close();
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// The next request; iteration ends when the server is `Closed`.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyRequest>>> {
        match self.recv(py, None) {
            Ok(request) => Ok(Some(request)),
            Err(err) if is_closed(py, &err) => Ok(None),
            Err(err) => Err(err),
        }
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { " closed" } else { "" };
        format!("<ipcall.Server {:?}{state}>", self.inner.name())
    }
}

/// True if `err` is an `ipcall.Closed`.
fn is_closed(py: Python<'_>, err: &PyErr) -> bool {
    let class = py.import("ipcall._errors").and_then(|m| m.getattr(errors::class_name(ErrorKind::Closed)));
    match class {
        Ok(class) => err.is_instance(py, &class),
        Err(_) => false,
    }
}

/// Who sent a request, as far as the transport can tell.
#[pyclass(frozen, eq, hash, get_all, module = "ipcall._ipcall", name = "Peer")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct PyPeer {
    /// The sender's process id, or None.
    pid: Option<u32>,
    /// The sender's user id, or None.
    uid: Option<u32>,
    /// The sender's group id, or None.
    gid: Option<u32>,
    /// `nats:` only: the sender's NATS client id, as it states it, or None.
    nats_client_id: Option<u64>,
    /// `nats:` only: the sender's connection name, as it states it, or None.
    name: Option<String>,
}

#[pymethods]
impl PyPeer {
    fn __repr__(&self) -> String {
        let show = |v: Option<u32>| v.map_or_else(|| "None".to_string(), |v| v.to_string());
        let id = self.nats_client_id.map_or_else(|| "None".to_string(), |v| v.to_string());
        let name = self.name.as_ref().map_or_else(|| "None".to_string(), |v| format!("{v:?}"));
        format!(
            "Peer(pid={}, uid={}, gid={}, nats_client_id={id}, name={name})",
            show(self.pid),
            show(self.uid),
            show(self.gid)
        )
    }
}

/// One received request: its bytes, its sender, and the duty to answer it
/// exactly once with `reply` or `fail`. Closed (or garbage-collected)
/// unanswered, its caller gets `NoReply`.
#[pyclass(frozen, module = "ipcall._ipcall", name = "Request")]
pub(crate) struct PyRequest {
    /// The request's bytes, moved out of the Rust request on arrival.
    data: Py<PyBytes>,
    peer: PyPeer,
    /// The caller's deadline as a `time.monotonic()` value, converted once
    /// on arrival so that every read gives the same number.
    deadline: Option<f64>,
    /// Whether its caller had given up when it was answered or closed
    /// (`Request::cancel_seen`, read as it is taken out of `inner`): read
    /// then without making the core's cancellation flag, which most
    /// requests never need.
    cancelled_when_answered: AtomicBool,
    /// `None` once answered or closed. Locked for a take, a look at the
    /// cancel, and to start a [`Watch`].
    inner: Mutex<Option<Request>>,
    /// Who waits for the cancel (`wait_cancelled`, `wait_cancelled_async`);
    /// made by the first wait, while `inner` is locked and holds the
    /// request, and settled by every answer after it.
    watch: OnceLock<Arc<Watch>>,
    /// The server's name, for error messages.
    server_name: Arc<str>,
}

impl PyRequest {
    pub(crate) fn new(py: Python<'_>, mut request: Request, server_name: Arc<str>) -> PyResult<PyRequest> {
        // One copy, from the received buffer into the bytes object.
        let data = PyBytes::new(py, &request.take_data()).unbind();
        let Peer { pid, uid, gid, nats_client_id } = request.peer();
        let name = request.peer_name().map(str::to_owned);
        let peer = PyPeer { pid, uid, gid, nats_client_id, name };
        let deadline = request.deadline().map(|d| crate::monotonic_of(py, d)).transpose()?;
        Ok(PyRequest {
            data,
            peer,
            deadline,
            cancelled_when_answered: AtomicBool::new(false),
            inner: Mutex::new(Some(request)),
            watch: OnceLock::new(),
            server_name,
        })
    }

    fn take(&self, py: Python<'_>) -> PyResult<Request> {
        self.take_any().ok_or_else(|| self.answered_error(py))
    }

    /// The request, if not answered yet, noting whether its caller had
    /// given up (under the lock, so `cancelled_now` sees either the request
    /// or the note).
    fn take_any(&self) -> Option<Request> {
        let mut inner = lock(&self.inner);
        let request = inner.take()?;
        self.cancelled_when_answered.store(request.cancel_seen(), Ordering::Relaxed);
        Some(request)
    }

    fn answered_error(&self, py: Python<'_>) -> PyErr {
        errors::new(py, ErrorKind::Closed, &self.server_name, "this request was already answered or closed")
    }

    /// The watch of this request's cancel, registered with the core; `None`
    /// if it was answered already (nothing can change any more).
    fn start_watch(&self) -> Option<Arc<Watch>> {
        let inner = lock(&self.inner);
        let request = inner.as_ref()?;
        let watch = self.watch.get_or_init(Default::default).clone();
        watch.register(request);
        Some(watch)
    }

    /// Wakes whoever waits for the cancel: the request was just answered,
    /// closed or dropped.
    fn settle_watch(&self) {
        if let Some(watch) = self.watch.get() {
            watch.settle();
        }
    }

    /// `cancelled`'s value (reads the connection while unanswered).
    fn cancelled_now(&self) -> bool {
        match lock(&self.inner).as_ref() {
            Some(request) => request.is_cancelled(),
            None => self.cancelled_when_answered.load(Ordering::Relaxed),
        }
    }
}

impl Drop for PyRequest {
    fn drop(&mut self) {
        // Answers `NoReply` first (as a drop always did), then wakes the
        // waiters, which can only be threads no longer holding it.
        drop(self.inner.get_mut().unwrap_or_else(|e| e.into_inner()).take());
        self.settle_watch();
    }
}

#[pymethods]
impl PyRequest {
    /// The request's bytes.
    #[getter]
    fn data(&self, py: Python<'_>) -> Py<PyBytes> {
        self.data.clone_ref(py)
    }

    /// Who sent it.
    #[getter]
    fn peer(&self) -> PyPeer {
        self.peer.clone()
    }

    /// When the caller stops waiting, as a `time.monotonic()` value
    /// (seconds; compare with `time.monotonic()`, may already be past), or
    /// `None` if the caller set no timeout when it sent the request.
    #[getter]
    fn deadline(&self) -> Option<f64> {
        self.deadline
    }

    /// True once the caller gave up: its timeout passed, its `call_async`
    /// task was cancelled, or it dropped the call unanswered. Reading it
    /// reads what the request's connection has now (never blocks), so a
    /// handler busy with the request learns it by polling. Answering is
    /// still allowed and harmless. Always False where the caller cannot
    /// tell (an older peer; a `nats:` call not yet acknowledged).
    #[getter]
    fn cancelled(&self, py: Python<'_>) -> bool {
        py.detach(|| self.cancelled_now())
    }

    /// Blocks (without the GIL, at most `timeout` seconds; `None` = until
    /// it is decided) until the caller gives up or the request is answered
    /// or closed, whichever comes first; returns `cancelled` then: True if
    /// the caller gave up, False if it was answered first or the timeout
    /// passed. Never wakes for nothing: no polling of ours.
    #[pyo3(signature = (timeout=None))]
    fn wait_cancelled(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = deadline_after(timeout)?;
        if let Some(watch) = py.detach(|| self.start_watch()) {
            // In slices, so that Ctrl-C interrupts a long wait.
            wait_in_slices(py, deadline, |slice| watch.wait_settled(slice).then_some(()))?;
        }
        Ok(py.detach(|| self.cancelled_now()))
    }

    /// `wait_cancelled` for asyncio (`ipcall/_cancel.py`): a coroutine that
    /// returns True once the caller gave up, False once the request was
    /// answered or closed first.
    fn wait_cancelled_async<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.py().import("ipcall._cancel")?.getattr("wait_cancelled")?.call1((slf,))
    }

    /// For `wait_cancelled_async`: rings `bell` with `token` once it is
    /// decided and returns None; or, decided already, returns `cancelled`.
    fn _ring_when_settled(&self, py: Python<'_>, bell: &Bound<'_, PyCancelBell>, token: u64) -> Option<bool> {
        let bell = bell.get().bell();
        py.detach(|| match self.start_watch() {
            Some(watch) if watch.ring_when_settled(bell, token) => None,
            _ => Some(self.cancelled_now()),
        })
    }

    /// For `wait_cancelled_async`: forgets a wait whose task went away.
    fn _forget_bell(&self, bell: &Bound<'_, PyCancelBell>, token: u64) {
        if let Some(watch) = self.watch.get() {
            watch.forget(&bell.get().bell(), token);
        }
    }

    /// True until it is answered (or closed).
    #[getter]
    fn pending(&self) -> bool {
        lock(&self.inner).is_some()
    }

    /// Answers with `data` (any bytes-like object). A reply larger than the
    /// caller's limit raises `TooLarge` and the caller gets `NoReply`.
    fn reply(&self, py: Python<'_>, data: BytesLike<'_>) -> PyResult<()> {
        let request = self.take(py)?;
        let bytes = data.as_slice();
        let sent = crate::detach_if_long(py, bytes.len(), || request.reply(bytes));
        self.settle_watch();
        sent.py_err(py)
    }

    /// Answers with an application error: the caller's call raises
    /// `RemoteError` whose `payload` is these bytes.
    fn fail(&self, py: Python<'_>, payload: BytesLike<'_>) -> PyResult<()> {
        let request = self.take(py)?;
        let bytes = payload.as_slice();
        let sent = crate::detach_if_long(py, bytes.len(), || request.fail(bytes));
        self.settle_watch();
        sent.py_err(py)
    }

    /// Drops the request unanswered (its caller gets `NoReply`); does
    /// nothing if it was answered already.
    fn close(&self, py: Python<'_>) {
        let request = self.take_any();
        py.detach(|| drop(request));
        self.settle_watch();
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _ty: Option<&Bound<'_, PyAny>>,
        _value: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) {
        self.close(py);
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = if self.pending() { "" } else { " answered" };
        format!("<ipcall.Request {} bytes from {}{state}>", self.data.bind(py).as_bytes().len(), self.peer.__repr__())
    }
}
