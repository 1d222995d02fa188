//! What the `stream` and `shm` servers share around their event loops: the
//! wakers of `recv_async` calls that found nothing, the one thread per server
//! that sleeps on its descriptor while any of them wait, and waiting for and
//! stopping the accepting thread.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Poll, Waker};
use std::thread::JoinHandle;

use crate::core::error::{Error, Result};
use crate::core::wait::{lock, wait_until, Deadline};
use crate::sys::poll::wait_fd;
use crate::sys::EventFd;
use crate::transport::Incoming;

/// A server that a watcher thread can watch.
pub(crate) trait Watched: Send + Sync + 'static {
    /// Its async waiters, and its descriptor: readable when a request may
    /// be ready or the server is finished.
    fn watched(&self) -> (&Watch, BorrowedFd<'_>);
}

/// The async waiters of one server. Invariant: `running` is true exactly
/// while a watcher thread exists; it exits only with no waker registered
/// and the server closed.
pub(crate) struct Watch {
    state: Mutex<WatchState>,
    /// Wakes the watcher when wakers are registered or the server closes.
    cond: Condvar,
    /// False only while `state.wakers` is empty (written under the lock):
    /// [`wake_all`](Self::wake_all), called after every request a poller
    /// takes, then skips the lock. A waker registered as it looks is not
    /// lost: the descriptor is readable, which the watcher sees.
    has_wakers: AtomicBool,
}

struct WatchState {
    wakers: Vec<Waker>,
    running: bool,
    closed: bool,
}

impl Watch {
    pub(crate) fn new() -> Watch {
        Watch {
            state: Mutex::new(WatchState { wakers: Vec::new(), running: false, closed: false }),
            cond: Condvar::new(),
            has_wakers: AtomicBool::new(false),
        }
    }

    /// Registers `waker` of a `poll_recv` that found nothing ready, starting
    /// `owner`'s watcher thread if none runs. Anything that became ready
    /// since that look leaves the descriptor readable, which the watcher
    /// sees: no wake-up is lost.
    pub(crate) fn register<T: Watched>(owner: &Arc<T>, waker: &Waker, thread: &str, name: &Arc<str>) -> Result<()> {
        let watch = owner.watched().0;
        let start = {
            let mut state = lock(&watch.state);
            if !state.wakers.iter().any(|w| w.will_wake(waker)) {
                state.wakers.push(waker.clone());
            }
            watch.has_wakers.store(true, Ordering::Release);
            !std::mem::replace(&mut state.running, true)
        };
        if !start {
            watch.cond.notify_all();
            return Ok(());
        }
        let watched = owner.clone();
        if std::thread::Builder::new().name(thread.into()).spawn(move || run(watched)).is_err() {
            lock(&watch.state).running = false;
            return Err(Error::Io {
                name: name.clone(),
                source: io::Error::other("cannot start the async watcher thread"),
            });
        }
        Ok(())
    }

    /// The async form of a `recv`: `now` is what a non-blocking `recv` just
    /// gave; if nothing was ready (`Timeout`), the waker is registered and
    /// the watcher will wake it.
    pub(crate) fn poll_recv<T: Watched>(
        owner: &Arc<T>,
        waker: &Waker,
        thread: &str,
        name: &Arc<str>,
        now: Result<Incoming>,
    ) -> Poll<Result<Incoming>> {
        match now {
            Err(Error::Timeout { .. }) => {}
            other => return Poll::Ready(other),
        }
        match Watch::register(owner, waker, thread, name) {
            Ok(()) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Wakes every registered waiter (something is ready).
    pub(crate) fn wake_all(&self) {
        if !self.has_wakers.load(Ordering::Acquire) {
            return;
        }
        let wakers = {
            let mut state = lock(&self.state);
            self.has_wakers.store(false, Ordering::Relaxed);
            std::mem::take(&mut state.wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// The server closed: the watcher exits once nobody waits.
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
        self.cond.notify_all();
    }
}

/// The watcher: while async `recv`s wait, sleeps on the server's
/// descriptor and wakes them when it is readable.
fn run<T: Watched>(owner: Arc<T>) {
    let watch = owner.watched().0;
    loop {
        {
            let mut state = lock(&watch.state);
            while state.wakers.is_empty() {
                if state.closed {
                    state.running = false;
                    return;
                }
                state = watch.cond.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        }
        let _ = wait_fd(owner.watched().1, libc::POLLIN, Deadline::Never);
        watch.wake_all();
    }
}

/// Waits on `cond` until `seen` says a connection was accepted (`Ok`) or the
/// server closed (`Closed`), or the deadline passes (`Timeout`). `seen`
/// returns (connections accepted, closed).
pub(crate) fn wait_accepted<S>(
    state: &Mutex<S>,
    cond: &Condvar,
    deadline: Deadline,
    name: &Arc<str>,
    seen: impl Fn(&S) -> (usize, bool),
) -> Result<()> {
    let accepted = wait_until(lock(state), cond, deadline, |state| match seen(state) {
        (accepted, _) if accepted > 0 => Some(Ok(())),
        (_, true) => Some(Err(Error::Closed { name: name.clone() })),
        _ => None,
    });
    accepted.unwrap_or_else(|| Err(Error::Timeout { name: name.clone() }))
}

/// Stops a server's accepting thread: wakes the `accept` waiters on `cond`,
/// sets `stop` (which the thread polls) and joins it, so that afterwards its
/// listening descriptor is certainly closed.
pub(crate) fn stop_accepting(cond: &Condvar, stop: &EventFd, thread: &Mutex<Option<JoinHandle<()>>>) {
    cond.notify_all();
    stop.set();
    if let Some(accepting) = lock(thread).take() {
        let _ = accepting.join();
    }
}
