//! Async receiving for servers whose readiness is a descriptor (`stream`,
//! `shm`): the wakers of `recv_async` calls that found nothing, and the one
//! thread per server that sleeps on the descriptor while any of them wait.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Condvar, Mutex};
use std::task::Waker;

use crate::core::error::{Error, Result};
use crate::core::wait::{lock, Deadline};
use crate::sys::poll::wait_fd;

/// A server that a watcher thread can watch.
pub(crate) trait Watched: Send + Sync + 'static {
    /// Its async waiters.
    fn watch(&self) -> &Watch;
    /// Readable when a request may be ready or the server is finished.
    fn ready_fd(&self) -> BorrowedFd<'_>;
}

/// The async waiters of one server. Invariant: `running` is true exactly
/// while a watcher thread exists; it exits only with no waker registered
/// and the server closed.
pub(crate) struct Watch {
    state: Mutex<WatchState>,
    /// Wakes the watcher when wakers are registered or the server closes.
    cond: Condvar,
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
        }
    }

    /// Registers `waker` of a `poll_recv` that found nothing ready, starting
    /// `owner`'s watcher thread if none runs. Anything that became ready
    /// since that look leaves the descriptor readable, which the watcher
    /// sees: no wake-up is lost.
    pub(crate) fn register<T: Watched>(owner: &Arc<T>, waker: &Waker, thread: &str, name: &Arc<str>) -> Result<()> {
        let watch = owner.watch();
        let start = {
            let mut state = lock(&watch.state);
            if !state.wakers.iter().any(|w| w.will_wake(waker)) {
                state.wakers.push(waker.clone());
            }
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

    /// Wakes every registered waiter (something is ready).
    pub(crate) fn wake_all(&self) {
        let wakers = std::mem::take(&mut lock(&self.state).wakers);
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
    let watch = owner.watch();
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
        let _ = wait_fd(owner.ready_fd(), libc::POLLIN, Deadline::Never);
        watch.wake_all();
    }
}
