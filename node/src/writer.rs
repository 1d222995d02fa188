//! The writer thread a client starts only when a write would block.
//!
//! `call()` writes its request itself, on the JavaScript thread, whenever
//! the transport has room (`try_send`). When it has none — an `shm:` request
//! ring full because the server is not reading, perhaps because it waits for
//! this very event loop (a Node server and client in one process) — the
//! request is copied to this client's writer thread, which waits for room
//! and hands each call's `Pending` back through [`Handoff`], waking the
//! JavaScript thread with a libuv async handle. Later calls queue behind it
//! until the thread has caught up, so requests still leave in call order.
//! One thread per client at most, started on first need, never one per call.

use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::uv;

/// Requests the writer thread has written (or failed to), by call id, and
/// the async handle that wakes the JavaScript thread to collect them.
#[derive(Default)]
pub(crate) struct Handoff {
    state: Mutex<HandoffState>,
}

#[derive(Default)]
struct HandoffState {
    sent: Vec<(u64, ipcall::Result<ipcall::Pending>)>,
    /// `Some` while the async handle is open (set to `None` under this lock
    /// before it is closed, so the thread never wakes a closed handle).
    waker: Option<Waker>,
}

/// A `uv_async_t`, which libuv allows any thread to send to.
#[derive(Clone, Copy)]
struct Waker(uv::Handle);

// SAFETY: (1) libuv documents `uv_async_send` as callable from any thread;
// (2) it is only used under `Handoff::state`'s lock, whose `None` marks it closed.
unsafe impl Send for Waker {}

impl Handoff {
    fn lock(&self) -> MutexGuard<'_, HandoffState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The async handle now exists: wake it for anything handed over before.
    pub(crate) fn opened(&self, waker: uv::Handle) {
        let mut state = self.lock();
        state.waker = Some(Waker(waker));
        if !state.sent.is_empty() {
            // SAFETY: (1) just opened, and the lock is held (see `Waker`).
            unsafe { uv::async_send(waker) };
        }
    }

    /// The async handle is about to close: wake it no more.
    pub(crate) fn closing(&self) {
        self.lock().waker = None;
    }

    /// What the thread has handed over since the last call.
    pub(crate) fn take(&self) -> Vec<(u64, ipcall::Result<ipcall::Pending>)> {
        std::mem::take(&mut self.lock().sent)
    }

    fn put(&self, id: u64, sent: ipcall::Result<ipcall::Pending>) {
        let mut state = self.lock();
        state.sent.push((id, sent));
        if let Some(Waker(waker)) = state.waker {
            // SAFETY: (1) `Some` under the lock: the handle is open (see `Waker`).
            unsafe { uv::async_send(waker) };
        }
    }
}

/// A request waiting for the writer thread.
struct Job {
    id: u64,
    data: Vec<u8>,
    /// The caller's timeout and when it began: what is left of it when the
    /// request goes out is the request's deadline.
    timeout: Option<(Duration, Instant)>,
}

/// The sending end of a client's writer thread; dropping it lets the thread
/// finish the request it is writing and exit.
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread for `client` (a clone: the connection stays
    /// open while the thread has requests to write).
    pub(crate) fn start(client: ipcall::Client, handoff: Arc<Handoff>) -> std::io::Result<Writer> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new().name("ipcall-writer".into()).spawn(move || {
            for job in queue {
                // Waits for room. A call that gave up meanwhile (timeout,
                // close) is no longer in the table: its `Pending` is dropped
                // when handed over, abandoning the call.
                let sent = match job.timeout {
                    None => client.send(&job.data),
                    Some((limit, since)) => client.send_timeout(&job.data, limit.saturating_sub(since.elapsed())),
                };
                handoff.put(job.id, sent);
            }
        })?;
        Ok(Writer { jobs })
    }

    /// Queues `data` as call `id` (with the caller's timeout and when it
    /// began, if it gave one); its `Pending` comes back through the
    /// [`Handoff`]. `false` if the thread is gone.
    pub(crate) fn send(&self, id: u64, data: Vec<u8>, timeout: Option<(Duration, Instant)>) -> bool {
        self.jobs.send(Job { id, data, timeout }).is_ok()
    }
}
