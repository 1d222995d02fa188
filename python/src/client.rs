//! `Client` and `Pending`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipcall::{Client, ClientOptions, Error, ErrorKind, Pending};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{self, ToPyResult};
use crate::evloop::{AsyncConn, Owned, Submitted, Timed};
use crate::server::lock;
use crate::{deadline_after, send_timeout_of, wait_in_slices, BytesLike, SLICE};

/// A connection to a server. Use `ipcall.connect` / `ipcall.Client` (which
/// add asyncio).
#[pyclass(frozen, module = "ipcall._ipcall", name = "Client")]
pub(crate) struct PyClient {
    /// `None` once closed. Locked only to share or take the client (never
    /// while waiting), so every thread calls on its own share without the
    /// GIL; shared as one `Arc` (one count per call, not one per `Arc`
    /// inside a `Client`).
    inner: Mutex<Option<Arc<Client>>>,
    /// The server's name.
    name: Arc<str>,
    /// The connection's calls on asyncio loops (shared by clones, which
    /// share the connection).
    async_conn: Arc<AsyncConn>,
}

impl PyClient {
    fn wrap(client: Client) -> PyClient {
        let name = client.name().into();
        PyClient { inner: Mutex::new(Some(Arc::new(client))), name, async_conn: Arc::default() }
    }

    /// A clone of the connection to call on, or `Closed` if closed.
    pub(crate) fn client(&self, py: Python<'_>) -> PyResult<Arc<Client>> {
        lock(&self.inner).clone().ok_or_else(|| errors::new(py, ErrorKind::Closed, &self.name, "this client is closed"))
    }
}

#[pymethods]
impl PyClient {
    /// Connects to `name`. With `timeout` (seconds), waits for the server to
    /// appear and raises `NotFound` if it never does (`Timeout` if one is
    /// there but does not complete the handshake); without, raises
    /// `NotFound` at once.
    #[staticmethod]
    #[pyo3(signature = (name, timeout=None, *, max_message_size=None, wait_mode=None, connection_name=None))]
    fn connect(
        py: Python<'_>,
        name: &str,
        timeout: Option<f64>,
        max_message_size: Option<u32>,
        wait_mode: Option<&str>,
        connection_name: Option<&str>,
    ) -> PyResult<PyClient> {
        let mut options = ClientOptions::new();
        if let Some(max) = max_message_size {
            options = options.max_message_size(max);
        }
        if let Some(mode) = crate::wait_mode_of(wait_mode)? {
            options = options.wait_mode(mode);
        }
        if let Some(chosen) = crate::connection_name_of(connection_name)? {
            options = options.connection_name(chosen);
        }
        if timeout.is_none() {
            return py.detach(|| Client::connect_with(name, &options)).py_err(py).map(PyClient::wrap);
        }
        let deadline = deadline_after(timeout)?;
        // Each slice ends with `NotFound` (nobody there yet) or `Timeout` (a
        // server there did not finish the handshake within the slice); both
        // are retried, and the last one says why the whole wait failed.
        let mut last = None;
        let connected = wait_in_slices(py, deadline, |slice| {
            match Client::connect_with(name, &options.clone().connect_timeout(slice)) {
                Err(e @ (Error::NotFound { .. } | Error::Timeout { .. })) => {
                    last = Some(e);
                    None
                }
                other => Some(other),
            }
        })?;
        match connected {
            Some(result) => result.py_err(py).map(PyClient::wrap),
            None => Err(errors::to_py(py, last.unwrap_or(Error::NotFound { name: name.into() }))),
        }
    }

    /// The name of the server this client talks to.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// True once `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        lock(&self.inner).is_none()
    }

    /// Sends `data` and waits for the reply (at most `timeout` seconds; on
    /// `Timeout` the call is abandoned and its late reply discarded).
    #[pyo3(signature = (data, timeout=None))]
    fn call(&self, py: Python<'_>, data: BytesLike<'_>, timeout: Option<f64>) -> PyResult<Py<PyBytes>> {
        // The server sees the timeout as the request's deadline.
        let send_timeout = send_timeout_of(timeout)?;
        let client = self.client(py)?;
        let bytes = data.as_slice();
        // The whole call without the GIL (a quick reply costs one release),
        // in slices: between two, the GIL is taken back to look at signals
        // (Ctrl+C), and a pending one abandons the call and is raised. The
        // core's blocking call: the caller reads its own answer.
        let mut interrupted = None;
        let answer = py.detach(|| {
            client.call_sliced(bytes, send_timeout, SLICE, || match Python::attach(|py| py.check_signals()) {
                Ok(()) => true,
                Err(signal) => {
                    interrupted = Some(signal);
                    false
                }
            })
        });
        drop(data);
        if let Some(signal) = interrupted {
            return Err(signal);
        }
        match answer.py_err(py)? {
            Some(reply) => Ok(PyBytes::new(py, &reply).unbind()),
            // `go_on` says no only with a signal, returned above.
            None => Err(errors::to_py(py, Error::Closed { name: self.name.clone() })),
        }
    }

    /// Checks that the server answers (its library answers, never the
    /// application); returns the round trip in seconds.
    #[pyo3(signature = (timeout=None))]
    fn ping(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<f64> {
        let client = self.client(py)?;
        crate::stats::ping(py, &client, &self.name, timeout)
    }

    /// The server's statistics, answered by its library as `ping` is.
    #[pyo3(signature = (timeout=None))]
    fn server_stats(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<crate::stats::PyServerStats> {
        let client = self.client(py)?;
        let stats = crate::stats::control(py, &client, &self.name, timeout, |c, slice| c.server_stats(Some(slice)))?;
        Ok((&stats).into())
    }

    /// Sends `data` and returns the call in flight.
    #[pyo3(name = "send")]
    fn send_py(slf: &Bound<'_, Self>, py: Python<'_>, data: BytesLike<'_>) -> PyResult<PyPending> {
        let this = slf.get();
        let client = this.client(py)?;
        let bytes = data.as_slice();
        let pending = py.detach(|| client.send(bytes)).py_err(py)?;
        Ok(PyPending {
            state: Mutex::new(PendingState::Waiting(pending)),
            name: this.name.clone(),
            owner: Some(slf.clone().unbind()),
        })
    }

    /// A new client on the same connection, independent of this one
    /// (closing one does not close the other).
    fn clone(&self, py: Python<'_>) -> PyResult<PyClient> {
        Ok(PyClient {
            inner: Mutex::new(Some(self.client(py)?)),
            name: self.name.clone(),
            async_conn: self.async_conn.clone(),
        })
    }

    /// `call_async`'s first step, on the loop thread: sends `data` without
    /// blocking (or queues it until the transport has room). Returns the
    /// reply if it was there at once, else `(token, future, loop)`: the
    /// call's token and Future on the running loop, which watches the
    /// connection's descriptor (once per loop). `RuntimeError` if no loop
    /// runs (and the reply was not there at once). With `timeout`
    /// (seconds), the request carries the caller's deadline.
    #[pyo3(signature = (data, timeout=None))]
    fn _submit(
        slf: &Bound<'_, Self>,
        py: Python<'_>,
        data: BytesLike<'_>,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        let this = slf.get();
        let timeout = send_timeout_of(timeout)?.map(|total| Timed { total, since: Instant::now() });
        let client = this.client(py)?;
        let data = match data {
            BytesLike::Shared(bytes) => Owned::Bytes(bytes.unbind()),
            BytesLike::Copied(vec) => Owned::Copied(vec),
        };
        Ok(match this.async_conn.submit(py, &client, data, timeout, slf.as_any())? {
            Submitted::Token { token, future, event_loop } => {
                (token, future, event_loop).into_pyobject(py)?.into_any().unbind()
            }
            Submitted::Reply(reply) => reply.into_any(),
        })
    }

    /// The reader callback: makes progress and settles completed calls.
    fn _on_ready(slf: &Bound<'_, Self>, py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> PyResult<()> {
        slf.get().async_conn.on_ready(py, event_loop, slf.as_any())
    }

    /// The timer of requests waiting for room on `event_loop`.
    fn _retry_loop(slf: &Bound<'_, Self>, py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> PyResult<()> {
        slf.get().async_conn.retry(py, event_loop, slf.as_any())
    }

    /// Stops watching the descriptor on `event_loop` if no call is left there.
    fn _release_loop(&self, py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> PyResult<()> {
        self.async_conn.release(py, event_loop)
    }

    /// Abandons `call_async` call `token` (its caller was cancelled).
    fn _cancel(slf: &Bound<'_, Self>, py: Python<'_>, event_loop: &Bound<'_, PyAny>, token: u64) -> PyResult<()> {
        let this = slf.get();
        this.async_conn.cancel(py, event_loop, token, &this.name, false, slf.as_any())
    }

    /// Abandons `call_async` call `token` at its timeout: its Future raises
    /// `Timeout` (unless the reply had arrived).
    fn _expire(slf: &Bound<'_, Self>, py: Python<'_>, event_loop: &Bound<'_, PyAny>, token: u64) -> PyResult<()> {
        let this = slf.get();
        this.async_conn.cancel(py, event_loop, token, &this.name, true, slf.as_any())
    }

    /// The number of `call_async` calls in flight (or waiting for room) on
    /// this connection, on every loop.
    fn _async_len(&self) -> usize {
        self.async_conn.len()
    }

    /// Closes this client (the connection closes with its last clone).
    /// Calls already in flight still complete.
    fn close(slf: &Bound<'_, Self>, py: Python<'_>) -> PyResult<()> {
        let this = slf.get();
        let client = lock(&this.inner).take();
        py.detach(|| drop(client));
        // An idle asyncio reader keeps a clone of the connection: let it go.
        this.async_conn.release_idle(py, slf.as_any())
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __exit__(
        slf: &Bound<'_, Self>,
        py: Python<'_>,
        _ty: Option<&Bound<'_, PyAny>>,
        _value: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        Self::close(slf, py)
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { " closed" } else { "" };
        format!("<ipcall.Client {:?}{state}>", &*self.name)
    }
}

/// Where a `Pending` stands.
enum PendingState {
    /// In flight.
    Waiting(Pending),
    /// `done()` found the outcome; the next `wait` returns it.
    Finished(ipcall::Result<Vec<u8>>),
    /// The outcome was handed out, or the call closed: later waits raise `Closed`.
    Spent,
}

/// A call in flight (from `Client.send`): `wait()` for its reply, or poll
/// it with `done()`. Closing it (or dropping it) abandons the call.
#[pyclass(frozen, module = "ipcall._ipcall", name = "Pending")]
pub(crate) struct PyPending {
    /// Locked only without the GIL (inside `detach`), so a waiter that holds
    /// it never waits for the GIL while another thread waits for it.
    state: Mutex<PendingState>,
    name: Arc<str>,
    /// The native client, for `done()` on a connection that an event loop
    /// drives (there `try_wait` reads nothing itself). Not a clone of the
    /// connection: a pending call must not keep a closed client connected.
    owner: Option<Py<PyClient>>,
}

impl PyPending {
    fn spent_error(&self, py: Python<'_>) -> PyErr {
        errors::new(py, ErrorKind::Closed, &self.name, "this call's reply was already taken, or the call was closed")
    }

    /// One slice of waiting: the outcome, if it is there within `slice`.
    fn attempt(&self, slice: Duration) -> Option<Option<ipcall::Result<Vec<u8>>>> {
        let mut state = lock(&self.state);
        match std::mem::replace(&mut *state, PendingState::Spent) {
            PendingState::Waiting(mut pending) => match pending.try_wait_timeout(slice) {
                Some(outcome) => Some(Some(outcome)),
                None => {
                    *state = PendingState::Waiting(pending);
                    None
                }
            },
            PendingState::Finished(outcome) => Some(Some(outcome)),
            PendingState::Spent => Some(None),
        }
    }
}

#[pymethods]
impl PyPending {
    /// The server's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Waits for the reply (at most `timeout` seconds; on `Timeout` the call
    /// is abandoned). Raises `Closed` if the reply was already taken.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyBytes>> {
        let deadline = deadline_after(timeout)?;
        match wait_in_slices(py, deadline, |slice| self.attempt(slice))? {
            Some(Some(outcome)) => Ok(PyBytes::new(py, &outcome.py_err(py)?).unbind()),
            Some(None) => Err(self.spent_error(py)),
            None => {
                self.close(py);
                Err(errors::to_py(py, Error::Timeout { name: self.name.clone() }))
            }
        }
    }

    /// True once the outcome has arrived (or the reply was taken); never blocks.
    fn done(&self, py: Python<'_>) -> PyResult<bool> {
        let look = || {
            let mut state = lock(&self.state);
            if let PendingState::Waiting(pending) = &mut *state {
                match pending.try_wait() {
                    Some(outcome) => *state = PendingState::Finished(outcome),
                    None => return false,
                }
            }
            true
        };
        if py.detach(look) {
            return Ok(true);
        }
        // Once an event loop drives the connection, `try_wait` reads
        // nothing: make progress here, and wake the loops whose calls that
        // completed (it cleared the readiness they wait for).
        if let Some(owner) = &self.owner {
            let owner = owner.bind(py);
            let client = lock(&owner.get().inner).clone();
            if let (Some(client), true) = (client, owner.get().async_conn.is_evented()) {
                let _ = client.progress();
                owner.get().async_conn.wake_loops(py, owner.as_any())?;
                return Ok(py.detach(look));
            }
        }
        Ok(false)
    }

    /// Abandons the call (a late reply is discarded); does nothing once the
    /// reply was taken.
    fn close(&self, py: Python<'_>) {
        py.detach(|| {
            let previous = std::mem::replace(&mut *lock(&self.state), PendingState::Spent);
            drop(previous);
        });
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

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let state = if self.done(py)? { "done" } else { "waiting" };
        Ok(format!("<ipcall.Pending {:?} {state}>", &*self.name))
    }
}
