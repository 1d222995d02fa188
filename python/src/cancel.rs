//! Waiting for a request's cancel: `Request.wait_cancelled` blocks a thread
//! (without the GIL), `Request.wait_cancelled_async` (in `ipcall/_cancel.py`)
//! awaits it on an asyncio loop through a [`PyCancelBell`] the loop watches.
//!
//! Both are built on the core's `Request::on_cancel`, registered once per
//! request on the first wait: its callback runs in the thread that learns
//! the cancel (the core's `ipcall-cancel` watcher, a transport's thread, or
//! a `mem:` caller's own thread) and must not block, so it never takes the
//! GIL — a thread holding the GIL may wait for a transport lock that the
//! callback's thread holds. It marks the request's [`Watch`] settled, wakes
//! the threads waiting on it, and rings the bells of the loops waiting.
//! Answering (or closing, or dropping) the request settles it too: the core
//! drops an unrun callback then, so no waiter outlives its request.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

use crate::server::lock;

/// What an asyncio loop watches: a socket pair (its read end registered
/// with `loop.add_reader`) and the tokens of the waits that were settled.
pub(crate) struct Bell {
    /// Readable once a token was rung; drained by `take`.
    read: UnixStream,
    /// Written by `ring`, from any thread, without the GIL.
    write: UnixStream,
    /// Tokens rung and not yet taken.
    rung: Mutex<Vec<u64>>,
}

impl Bell {
    /// Queues `token` and makes the read end readable (never blocks: a full
    /// socket is readable already).
    fn ring(&self, token: u64) {
        lock(&self.rung).push(token);
        let _ = (&self.write).write(&[1]);
    }
}

/// A loop's bell, made by `ipcall/_cancel.py` (one per loop while waits
/// are pending there).
#[pyclass(frozen, module = "ipcall._ipcall", name = "_CancelBell")]
pub(crate) struct PyCancelBell {
    /// Shared with the watches of the requests it waits for.
    inner: Arc<Bell>,
}

#[pymethods]
impl PyCancelBell {
    #[new]
    fn new() -> PyResult<PyCancelBell> {
        let (read, write) =
            UnixStream::pair().map_err(|e| PyOSError::new_err(format!("ipcall: a cancel bell: {e}")))?;
        for end in [&read, &write] {
            end.set_nonblocking(true).map_err(|e| PyOSError::new_err(format!("ipcall: a cancel bell: {e}")))?;
        }
        Ok(PyCancelBell { inner: Arc::new(Bell { read, write, rung: Mutex::new(Vec::new()) }) })
    }

    /// The descriptor to watch for reading.
    fn fileno(&self) -> i32 {
        self.inner.read.as_raw_fd()
    }

    /// The tokens rung since the last call (drains the readiness first, so
    /// a token rung meanwhile is either taken now or rings again).
    fn take(&self) -> Vec<u64> {
        let mut drain = [0u8; 64];
        loop {
            match (&self.inner.read).read(&mut drain) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break, // WouldBlock: drained
            }
        }
        std::mem::take(&mut *lock(&self.inner.rung))
    }
}

impl PyCancelBell {
    pub(crate) fn bell(&self) -> Arc<Bell> {
        self.inner.clone()
    }
}

/// Who waits for one request's cancel, and whether it is decided.
#[derive(Default)]
pub(crate) struct Watch {
    state: Mutex<WatchState>,
    /// Notified once `settled` is set.
    settled_now: Condvar,
}

#[derive(Default)]
struct WatchState {
    /// Cancelled, or answered/closed/dropped: nothing more can change.
    /// Set once, never cleared.
    settled: bool,
    /// The core's `on_cancel` callback was registered (once per request).
    registered: bool,
    /// The loops' bells to ring when it settles, with their waits' tokens;
    /// empty once settled.
    bells: Vec<(Arc<Bell>, u64)>,
}

impl Watch {
    /// Registers [`settle`](Self::settle) with the core once; it runs at
    /// once if the request was cancelled already. Call it while the request
    /// is known to be unanswered (under its lock), so that an answer after
    /// it finds this watch and settles it.
    pub(crate) fn register(self: &Arc<Self>, request: &ipcall::Request) {
        let first = !std::mem::replace(&mut lock(&self.state).registered, true);
        if first {
            let watch = self.clone();
            request.on_cancel(move || watch.settle());
        }
    }

    /// It is decided: wakes the blocked waiters and rings the loops' bells.
    /// Takes no GIL and never blocks (beyond our short lock).
    pub(crate) fn settle(&self) {
        let bells = {
            let mut state = lock(&self.state);
            state.settled = true;
            std::mem::take(&mut state.bells)
        };
        self.settled_now.notify_all();
        for (bell, token) in bells {
            bell.ring(token);
        }
    }

    /// Adds `bell` to ring with `token` on settling; false (nothing added)
    /// if it is settled already.
    pub(crate) fn ring_when_settled(&self, bell: Arc<Bell>, token: u64) -> bool {
        let mut state = lock(&self.state);
        if state.settled {
            return false;
        }
        state.bells.push((bell, token));
        true
    }

    /// Forgets the wait `token` on `bell` (its awaiting task went away).
    pub(crate) fn forget(&self, bell: &Arc<Bell>, token: u64) {
        lock(&self.state).bells.retain(|(b, t)| !(Arc::ptr_eq(b, bell) && *t == token));
    }

    /// Blocks at most `slice` for it to settle; true once it has.
    pub(crate) fn wait_settled(&self, slice: std::time::Duration) -> bool {
        let state = lock(&self.state);
        if state.settled {
            return true;
        }
        let (state, _) = self.settled_now.wait_timeout(state, slice).unwrap_or_else(|e| e.into_inner());
        state.settled
    }
}
