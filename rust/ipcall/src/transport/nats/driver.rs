//! Who runs the `nats:` runtime: the threads that wait on it.
//!
//! The process's `nats:` connections live on two current-thread tokio
//! runtimes, one for its clients and one for its servers. A thread that blocks on `nats:` (a call's `wait`, a
//! server's `recv`, set-up) runs that runtime itself while it waits, as
//! tokio's `block_on` lets any number of threads take turns at it: it
//! reads the socket, completes its own call and writes what others queued,
//! so a blocking round trip wakes no other thread of ours. (With a
//! dedicated runtime thread, each call crossed to it and back on both the
//! caller's and the server's side: four wake-ups more per call than a raw
//! async-nats pair, which on a 2-vCPU VM cost more than the round trip.)
//!
//! When no thread waits — an event loop's client, an async waiter, a
//! server busy in its handler — a background thread drives the runtime
//! instead. It takes over only after the runtime has been without a
//! waiter for [`GRACE`], so a caller in a tight loop never hands the
//! runtime to it and back between calls; a waiter that arrives while it
//! drives asks it to give the runtime up.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio::sync::Notify;

use crate::core::wait::Deadline;

/// How long the runtime may go without a waiter before the background
/// thread drives it: what an async or evented waiter's answer may be late
/// by when the process's blocking waiters have just left.
const GRACE: Duration = Duration::from_millis(1);

/// How often the background thread looks again while waiters drive. It
/// is never woken for a waiter leaving: in a tight loop of calls that
/// would be one more thread woken per call.
const RECHECK: Duration = Duration::from_millis(4);

/// What the background thread is doing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Background {
    /// Driving the runtime until [`Driver::release`] is notified.
    Driving,
    /// Sleeping; it wakes by itself to look again.
    Napping,
}

struct State {
    /// Threads inside [`Driver::block_on`]. While it is above zero, one of
    /// them holds the runtime or is about to take it.
    waiters: usize,
    /// When the last waiter left.
    last_left: Instant,
    background: Background,
}

/// The runtime and the bookkeeping of who drives it.
pub(crate) struct Driver {
    runtime: Runtime,
    state: Mutex<State>,
    /// Asks the background thread to give the runtime up.
    release: Notify,
}

/// Which runtime: the process's `nats:` clients share one, its servers
/// another, so that a caller and a server in one process each drive
/// their own connection while they wait, rather than waiting for the
/// other's turn.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Side {
    Client,
    Server,
}

/// The driver of `side`, made (with its background thread) on first use.
pub(crate) fn driver(side: Side) -> std::result::Result<&'static Driver, String> {
    static CLIENTS: OnceLock<std::result::Result<&'static Driver, String>> = OnceLock::new();
    static SERVERS: OnceLock<std::result::Result<&'static Driver, String>> = OnceLock::new();
    let (cell, thread) = match side {
        Side::Client => (&CLIENTS, "ipcall-nats-c"),
        Side::Server => (&SERVERS, "ipcall-nats-s"),
    };
    cell.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let driver: &'static Driver = Box::leak(Box::new(Driver {
            runtime,
            state: Mutex::new(State { waiters: 0, last_left: Instant::now(), background: Background::Napping }),
            release: Notify::new(),
        }));
        std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || driver.background())
            .map_err(|e| e.to_string())?;
        Ok(driver)
    })
    .clone()
}

impl Driver {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spawns a task; it runs whenever some thread drives the runtime.
    pub(crate) fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(future);
    }

    /// Runs `future` on this thread until it is done or `deadline` passes
    /// (`Some(None)`), driving the runtime meanwhile. `None` when this
    /// thread is inside a tokio runtime already, where blocking on another
    /// would panic: the caller then waits its usual way, and the
    /// background thread drives.
    pub(crate) fn block_on<T>(&self, deadline: Deadline, future: impl Future<Output = T>) -> Option<Option<T>> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return None;
        }
        self.enter();
        // Leaves even if a future panics.
        let _leave = Leave(self);
        Some(self.runtime.block_on(async {
            match deadline {
                Deadline::Never => Some(future.await),
                Deadline::Now => None,
                Deadline::At(at) => tokio::time::timeout_at(at.into(), future).await.ok(),
            }
        }))
    }

    /// Calls `send`, which queues work for the runtime's tasks (a message
    /// to publish), and when no other thread drives the runtime, runs
    /// those tasks here before returning: the message is written by this
    /// thread, rather than a driver being woken to write it.
    pub(crate) fn send_here(&self, send: impl FnOnce()) {
        let free = {
            let state = self.lock();
            state.waiters == 0 && state.background != Background::Driving
        };
        if !free || tokio::runtime::Handle::try_current().is_ok() {
            return send();
        }
        // Should another thread take the runtime first, this just sends:
        // the yield returns at once and the driver writes.
        self.block_on(Deadline::Never, async {
            send();
            // The tasks `send` woke run before this future is polled again.
            tokio::task::yield_now().await;
        });
    }

    fn enter(&self) {
        let mut state = self.lock();
        state.waiters += 1;
        if state.background == Background::Driving {
            // A stored permit if it is not listening yet: it gives up as
            // soon as it starts.
            self.release.notify_one();
        }
    }

    fn leave(&self) {
        let mut state = self.lock();
        state.waiters -= 1;
        state.last_left = Instant::now();
    }

    /// The background thread: drives the runtime while no waiter does.
    fn background(&self) {
        loop {
            let nap = {
                let mut state = self.lock();
                let idle = state.last_left.elapsed();
                let nap = match state.waiters {
                    0 if idle >= GRACE => None,
                    0 => Some(GRACE - idle),
                    _ => Some(RECHECK),
                };
                state.background = if nap.is_some() { Background::Napping } else { Background::Driving };
                nap
            };
            match nap {
                Some(nap) => std::thread::sleep(nap),
                None => self.runtime.block_on(self.release.notified()),
            }
        }
    }
}

/// Counts a waiter out when dropped.
struct Leave<'a>(&'a Driver);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_spawned_task_runs_with_no_waiter_and_waiters_finish_their_own_futures() {
        let driver = driver(Side::Client).unwrap();
        // Driven by the background thread: nobody waits on it here.
        let (tx, rx) = std::sync::mpsc::channel();
        driver.spawn(async move {
            let _ = tx.send(7);
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(7));
        // Several threads at once, each driving while it waits on a task
        // that another thread's future wakes.
        let done = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let done = done.clone();
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        driver.spawn(async move {
                            tokio::task::yield_now().await;
                            let _ = tx.send(());
                        });
                        let got = driver.block_on(Deadline::after(Duration::from_secs(30)), rx);
                        assert!(matches!(got, Some(Some(Ok(())))), "{got:?}");
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(done.load(Ordering::Relaxed), 800);
    }

    #[test]
    fn a_deadline_ends_the_wait_and_now_does_not_wait() {
        let driver = driver(Side::Client).unwrap();
        let never = std::future::pending::<()>();
        assert_eq!(driver.block_on(Deadline::after(Duration::from_millis(20)), never), Some(None));
        assert_eq!(driver.block_on(Deadline::Now, async { 1 }), Some(None));
        assert_eq!(driver.block_on(Deadline::Never, async { 2 }), Some(Some(2)));
    }

    #[test]
    fn inside_another_tokio_runtime_it_declines_and_the_background_drives() {
        let driver = driver(Side::Client).unwrap();
        let other = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        other.block_on(async {
            assert_eq!(driver.block_on(Deadline::Never, async { 3 }), None);
        });
        let (tx, rx) = std::sync::mpsc::channel();
        driver.spawn(async move {
            let _ = tx.send(());
        });
        assert!(rx.recv_timeout(Duration::from_secs(30)).is_ok());
    }
}
