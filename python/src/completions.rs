//! The completion queue behind `Client.call_async`: calls in flight for an
//! event loop, with one pollable descriptor for all of them.
//!
//! Each call's `Pending` is polled as a `Future` with a waker of ours; when
//! the call completes (in whatever thread answers it), the waker records the
//! call's token and makes an eventfd readable. The event loop watches that
//! one descriptor (`loop.add_reader`) and then `drain()`s the finished calls.
//! No thread waits per call: 1,000 calls in flight cost 1,000 table entries.

use std::collections::HashMap;
use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use ipcall::Pending;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::client::PyClient;
use crate::errors::ToPyResult;
use crate::server::lock;
use crate::BytesLike;

/// What the wakers of all calls share.
struct Hub {
    /// Non-blocking eventfd; readable while `ready` may be non-empty.
    event: OwnedFd,
    /// Tokens of calls whose waker fired since the last `drain`.
    ready: Mutex<Vec<u64>>,
}

impl Hub {
    /// Makes the descriptor readable.
    fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: (1) writes 8 bytes from a live local u64 to our own
        // eventfd. (2) The only failure, EAGAIN when the counter would
        // overflow, leaves it readable, which is all we need.
        unsafe { libc::write(self.event.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Makes the descriptor unreadable.
    fn clear(&self) {
        let mut value: u64 = 0;
        // SAFETY: (1) reads 8 bytes into a live local u64 from our own
        // eventfd. (2) EAGAIN (already zero) is the expected failure.
        unsafe { libc::read(self.event.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
    }
}

/// The waker of one call: records its token in the hub.
struct CallWaker {
    token: u64,
    hub: Arc<Hub>,
}

impl Wake for CallWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let was_empty = {
            let mut ready = lock(&self.hub.ready);
            ready.push(self.token);
            ready.len() == 1
        };
        // `drain` clears the descriptor before it empties `ready`, so a
        // token pushed onto a non-empty list is already covered by a signal
        // that `drain` has not consumed yet, or will be taken by it.
        if was_empty {
            self.hub.signal();
        }
    }
}

/// One call in flight.
struct InFlight {
    pending: Pending,
    waker: Waker,
}

/// Polls `call` once; the outcome if it has arrived.
fn poll(call: &mut InFlight) -> Option<ipcall::Result<Vec<u8>>> {
    let mut cx = Context::from_waker(&call.waker);
    match Pin::new(&mut call.pending).poll(&mut cx) {
        Poll::Ready(outcome) => Some(outcome),
        Poll::Pending => None,
    }
}

/// Calls in flight for one client and one pollable descriptor that becomes
/// readable when any of them may have finished. Private to `ipcall`.
#[pyclass(frozen, module = "ipcall._ipcall", name = "Completions")]
pub(crate) struct PyCompletions {
    hub: Arc<Hub>,
    /// Calls in flight by token. Locked without ever taking the GIL inside.
    calls: Mutex<HashMap<u64, InFlight>>,
    /// The next token; tokens are never reused.
    next_token: AtomicU64,
}

#[pymethods]
impl PyCompletions {
    #[new]
    fn new() -> PyResult<PyCompletions> {
        // SAFETY: (1) eventfd takes no pointers; a negative result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            // An OSError with its errno (EMFILE when out of descriptors).
            let err = std::io::Error::last_os_error();
            return Err(PyOSError::new_err((err.raw_os_error().unwrap_or(0), err.to_string())));
        }
        // SAFETY: (1) `raw` is a fresh descriptor that nothing else owns.
        let event = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(PyCompletions {
            hub: Arc::new(Hub { event, ready: Mutex::new(Vec::new()) }),
            calls: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
        })
    }

    /// The descriptor to watch: readable when a call may have finished.
    fn fileno(&self) -> i32 {
        self.hub.event.as_raw_fd()
    }

    /// Sends `data` on `client`. Returns the reply (`bytes`) if it is
    /// already there, else the call's token (`int`) for `drain`/`cancel`.
    fn submit(&self, py: Python<'_>, client: &Bound<'_, PyClient>, data: BytesLike<'_>) -> PyResult<Py<PyAny>> {
        let pending = client.get().send(py, &data)?;
        drop(data);
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let waker = Waker::from(Arc::new(CallWaker { token, hub: self.hub.clone() }));
        let mut call = InFlight { pending, waker };
        match poll(&mut call) {
            Some(outcome) => Ok(PyBytes::new(py, &outcome.py_err(py)?).into_any().unbind()),
            None => {
                lock(&self.calls).insert(token, call);
                Ok(token.into_pyobject(py)?.into_any().unbind())
            }
        }
    }

    /// The calls that finished since the last drain, as `(token, outcome)`
    /// pairs where the outcome is the reply (`bytes`) or the exception the
    /// call raises (an `ipcall.Error` instance, not raised).
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.hub.clear();
        let tokens = std::mem::take(&mut *lock(&self.hub.ready));
        let mut finished = Vec::new();
        {
            let mut calls = lock(&self.calls);
            for token in tokens {
                // A token may be woken twice, or belong to a cancelled call.
                if let Some(outcome) = calls.get_mut(&token).and_then(poll) {
                    finished.push((token, outcome, calls.remove(&token)));
                }
            }
        }
        let done = PyList::empty(py);
        for (token, outcome, call) in finished {
            // Dropped with the GIL held but no lock of ours: a spent Pending
            // has nothing left to abandon.
            drop(call);
            let value = match outcome.py_err(py) {
                Ok(reply) => PyBytes::new(py, &reply).into_any(),
                Err(err) => err.into_value(py).into_bound(py).into_any(),
            };
            done.append(PyTuple::new(py, [token.into_pyobject(py)?.into_any(), value])?)?;
        }
        Ok(done)
    }

    /// Abandons call `token` (its late reply is discarded). Returns whether
    /// it was still in flight.
    fn cancel(&self, py: Python<'_>, token: u64) -> bool {
        let call = lock(&self.calls).remove(&token);
        let was_in_flight = call.is_some();
        py.detach(|| drop(call));
        was_in_flight
    }

    /// The number of calls in flight.
    fn __len__(&self) -> usize {
        lock(&self.calls).len()
    }
}
