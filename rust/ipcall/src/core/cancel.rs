//! The server's side of a call's cancellation: a flag the transport sets
//! when the caller gave up (a cancel frame or record, a `nats:` cancel
//! message, an abandoned `mem:` slot), and whoever waits for it.
//!
//! The public face is `api::request`'s `Cancelled` future and
//! `Request::is_cancelled`. Setting the flag is all a cancel does: the request stays answerable, and its
//! answer is discarded by the client as any late answer is.
//!
//! **Who reads the cancel.** A wire server reads its connections only while
//! the application receives. So that a server busy with a request still
//! learns of its cancel, a flag may carry a [`Pump`] (its connection): a
//! look at the flag (`is_cancelled`) first has the connection read what it
//! has now, without blocking; and while a future or callback waits on an
//! unfired flag, one process-wide thread (`ipcall-cancel`) pumps its
//! connection every [`WATCH_PERIOD`] until the flag fires or the request is
//! answered (docs/DECISIONS.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::core::slot::Slot;

/// How often the watcher thread reads the connections of requests whose
/// cancel someone awaits: the most a future or callback lags behind a
/// cancel that arrived while the server was not receiving.
pub(crate) const WATCH_PERIOD: Duration = Duration::from_millis(5);

/// A connection that can read what it has now, without blocking: cancel
/// frames fire their flags (requests it reads are queued for `recv`).
pub(crate) trait Pump: Send + Sync {
    fn pump(&self);
}

/// A callback run once, when the request is cancelled.
pub(crate) type OnCancel = Box<dyn FnOnce() + Send>;

/// Who waits for a cancel: async tasks and callbacks (the faces' bridges).
#[derive(Default)]
struct Waiters {
    wakers: Vec<Waker>,
    callbacks: Vec<OnCancel>,
}

/// One request's cancellation flag.
///
/// `fired` goes from false to true once and never back. `waiters` is
/// `None` until someone waits (so a request nobody watches allocates
/// nothing for it), and `None` again once fired or retired: a waiter
/// registered after that is served at once (fired) or never (retired).
#[derive(Default)]
pub(crate) struct Cancel {
    fired: AtomicBool,
    /// Set once the request was answered: nobody waits any more, and
    /// callbacks registered later are dropped at once.
    retired: AtomicBool,
    waiters: Mutex<Option<Box<Waiters>>>,
    /// The connection that reads this request's cancel, where only reading
    /// it tells (the wire transports); `None` where a cancel is delivered
    /// by someone else (`mem:`, `nats:`).
    pump: Option<Weak<dyn Pump>>,
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel").field("fired", &self.is_fired()).finish_non_exhaustive()
    }
}

impl Cancel {
    /// A flag whose cancel `pump` reads.
    pub(crate) fn pumped_by(pump: Weak<dyn Pump>) -> Cancel {
        Cancel { pump: Some(pump), ..Cancel::default() }
    }

    /// Has the connection read what it has now (if this flag has one and
    /// the request is neither cancelled nor answered).
    fn pump_now(&self) {
        if self.is_fired() || self.retired.load(Ordering::Acquire) {
            return;
        }
        if let Some(pump) = self.pump.as_ref().and_then(Weak::upgrade) {
            pump.pump();
        }
    }

    /// Nobody will wait on it any more: fired, or answered.
    fn is_over(&self) -> bool {
        self.is_fired() || self.retired.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Box<Waiters>>> {
        // The critical sections are pushes and takes: poisoning leaves the
        // lists consistent.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True once the caller gave up.
    pub(crate) fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// The caller gave up: wakes every waiter and runs every callback
    /// (in this thread: the transport's reading thread). A second call
    /// does nothing.
    pub(crate) fn fire(&self) {
        if self.fired.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(waiters) = self.lock().take() else { return };
        for waker in waiters.wakers {
            waker.wake();
        }
        for callback in waiters.callbacks {
            callback();
        }
    }

    /// The request was answered: callbacks will never run, so drop them
    /// now (a face's callback may keep its event loop alive).
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        drop(self.lock().take());
    }

    /// Runs `callback` when the request is cancelled: at once if it was
    /// already; never (it is dropped) if it was answered. True if it now
    /// waits.
    fn on_cancel(&self, callback: OnCancel) -> bool {
        {
            let mut waiters = self.lock();
            // Checked under the lock: `fire` sets the flag before taking
            // the lock, so a callback added here is either run by it or
            // sees the flag.
            if !self.is_fired() {
                if self.retired.load(Ordering::Acquire) {
                    return false;
                }
                waiters.get_or_insert_with(Default::default).callbacks.push(callback);
                return true;
            }
        }
        callback();
        false
    }

    /// Polls for the cancel, registering `cx`'s waker.
    fn poll_fired(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_fired() {
            return Poll::Ready(());
        }
        let mut waiters = self.lock();
        if self.is_fired() {
            return Poll::Ready(());
        }
        let wakers = &mut waiters.get_or_insert_with(Default::default).wakers;
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Where a request's cancellation flag lives: its own (wire transports),
/// made by its connection the first time someone looks, or in the caller's
/// slot (`mem:`, where the caller abandoning its slot is the cancel, with
/// no message at all).
pub(crate) enum CancelRef {
    /// A flag of its own, shared with the connection that fires it.
    Own(Arc<Cancel>),
    /// A wire request's flag, kept by its connection ([`FlagSource`]) and
    /// made there the first time someone looks: most requests are answered
    /// without anyone asking, and then allocate no flag at all (an
    /// allocation, a free and a lock per request, ~300 instructions). The
    /// connection is the request's responder, which the request keeps: the
    /// methods are handed it (`source`), so that this holds no reference
    /// of its own (two locked instructions fewer a request).
    Lazy(LazyFlag),
    /// The `mem:` caller's slot.
    Slot(Arc<Slot>),
}

/// The connection a wire request came over, which holds its flag until it
/// is answered (`transport::held::Held`).
pub(crate) trait FlagSource: Send + Sync {
    /// Request `id`'s flag: the one the connection holds, made now if
    /// nobody asked for it before (fired if its caller is gone already).
    fn flag(&self, id: u64) -> Arc<Cancel>;

    /// Whether request `id`'s flag is fired, or would be made fired now,
    /// without making it (see `Held::fired`).
    fn fired(&self, id: u64) -> bool;
}

/// [`CancelRef::Lazy`]: request `id` of its connection, and its flag once made.
pub(crate) struct LazyFlag {
    id: u64,
    flag: std::sync::OnceLock<Arc<Cancel>>,
}

/// What a [`CancelRef::Lazy`] is handed to make its flag: the request's
/// connection, while the request holds it (`None` once it was answered,
/// when nobody asks any more, and for the other kinds, which need none).
pub(crate) type Source<'a> = Option<&'a dyn FlagSource>;

impl CancelRef {
    /// Request `id`'s flag, which its connection makes when first asked.
    pub(crate) fn lazy(id: u64) -> CancelRef {
        CancelRef::Lazy(LazyFlag { id, flag: std::sync::OnceLock::new() })
    }

    pub(crate) fn get(&self, source: Source<'_>) -> &Cancel {
        match self {
            CancelRef::Own(cancel) => cancel,
            CancelRef::Lazy(lazy) => lazy.made(source),
            CancelRef::Slot(slot) => slot.cancel(),
        }
    }

    /// The request was answered: its flag, if it was ever made, is retired
    /// (a flag nobody made has no waiter to tell).
    pub(crate) fn retire(&self) {
        match self {
            CancelRef::Lazy(lazy) => {
                if let Some(cancel) = lazy.flag.get() {
                    cancel.retire();
                }
            }
            other => other.get(None).retire(),
        }
    }

    /// True if the caller's cancel has been seen already: what the flag
    /// says, or for a lazy flag nobody made, what its connection holds.
    /// Neither makes the flag nor reads the connection.
    pub(crate) fn seen(&self, source: Source<'_>) -> bool {
        match self {
            CancelRef::Lazy(lazy) => match (lazy.flag.get(), source) {
                (Some(cancel), _) => cancel.is_fired(),
                (None, Some(source)) => source.fired(lazy.id),
                (None, None) => false,
            },
            other => other.get(None).is_fired(),
        }
    }

    /// True once the caller gave up; reads the connection first (see the
    /// module's notes).
    pub(crate) fn is_cancelled(&self, source: Source<'_>) -> bool {
        let cancel = self.get(source);
        cancel.pump_now();
        cancel.is_fired()
    }

    /// See [`Cancel::on_cancel`]; the watcher reads the connection while
    /// the callback waits.
    pub(crate) fn on_cancel(&self, source: Source<'_>, callback: OnCancel) {
        if self.get(source).on_cancel(callback) {
            self.watch(source);
        }
    }

    /// Polls for the cancel (reading the connection first), registering
    /// `cx`'s waker and handing the flag to the watcher thread if pending.
    pub(crate) fn poll_fired(&self, source: Source<'_>, cx: &mut Context<'_>) -> Poll<()> {
        let cancel = self.get(source);
        cancel.pump_now();
        let polled = cancel.poll_fired(cx);
        if polled.is_pending() {
            self.watch(source);
        }
        polled
    }

    /// Hands a flag with a pump to the watcher thread.
    fn watch(&self, source: Source<'_>) {
        let own = match self {
            CancelRef::Own(cancel) => cancel,
            CancelRef::Lazy(lazy) => lazy.made(source),
            CancelRef::Slot(_) => return,
        };
        if own.pump.is_some() {
            watcher::watch(own);
        }
    }

    /// Another reference to the same flag, which needs no source: a lazy
    /// one is made first (a copy made later, after the request was
    /// answered, would find it gone).
    pub(crate) fn shared(&self, source: Source<'_>) -> CancelRef {
        match self {
            CancelRef::Own(cancel) => CancelRef::Own(cancel.clone()),
            CancelRef::Lazy(lazy) => CancelRef::Own(lazy.made(source).clone()),
            CancelRef::Slot(slot) => CancelRef::Slot(slot.clone()),
        }
    }
}

impl LazyFlag {
    /// The flag, made by the connection on first use. Without the
    /// connection (the request was answered: nobody asks then), a flag of
    /// its own that never fires.
    fn made(&self, source: Source<'_>) -> &Arc<Cancel> {
        self.flag.get_or_init(|| match source {
            Some(source) => source.flag(self.id),
            None => Arc::new(Cancel::default()),
        })
    }
}

/// The one thread that reads the connections of awaited cancels.
mod watcher {
    use super::*;

    /// The flags watched; `Some` while the thread runs.
    static WATCHED: Mutex<Option<Vec<Weak<Cancel>>>> = Mutex::new(None);

    fn lock() -> std::sync::MutexGuard<'static, Option<Vec<Weak<Cancel>>>> {
        WATCHED.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn watch(cancel: &Arc<Cancel>) {
        let mut watched = lock();
        match &mut *watched {
            Some(list) => {
                if !list.iter().any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(cancel))) {
                    list.push(Arc::downgrade(cancel));
                }
            }
            None => {
                let spawned = std::thread::Builder::new().name("ipcall-cancel".into()).spawn(run);
                // Without the thread (out of resources), `is_cancelled`
                // still reads the connection itself.
                if spawned.is_ok() {
                    *watched = Some(vec![Arc::downgrade(cancel)]);
                }
            }
        }
    }

    /// Pumps every watched connection each period; exits once nothing is
    /// watched (fired, answered or dropped), a later watch starts it again.
    fn run() {
        loop {
            std::thread::sleep(WATCH_PERIOD);
            let live: Vec<Arc<Cancel>> = {
                let mut watched = lock();
                let Some(list) = &mut *watched else { return };
                list.retain(|w| w.upgrade().is_some_and(|c| !c.is_over()));
                if list.is_empty() {
                    *watched = None;
                    return;
                }
                list.iter().filter_map(Weak::upgrade).collect()
            };
            for cancel in live {
                cancel.pump_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn callbacks_run_once_at_fire_or_at_once_after_it() {
        let cancel = Cancel::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        let _ = cancel.on_cancel(Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        cancel.fire();
        cancel.fire();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let counter = runs.clone();
        let _ = cancel.on_cancel(Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_retired_flag_drops_its_callbacks_unrun() {
        let cancel = Cancel::default();
        let held = Arc::new(());
        let in_callback = held.clone();
        let _ = cancel.on_cancel(Box::new(move || drop(in_callback)));
        assert_eq!(Arc::strong_count(&held), 2);
        cancel.retire();
        assert_eq!(Arc::strong_count(&held), 1, "the callback was dropped at retire");
        let in_callback = held.clone();
        let _ = cancel.on_cancel(Box::new(move || drop(in_callback)));
        assert_eq!(Arc::strong_count(&held), 1, "a callback after retire is dropped at once");
    }
}
