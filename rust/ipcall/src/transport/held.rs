//! The cancellation flags a server connection holds for its requests not
//! yet answered: the client's cancel fires one; the connection ending
//! while the server still runs (the client hung up or died, or was dropped
//! for breaking the protocol or for reading too slowly) fires them all —
//! whoever was waiting for those answers is gone (docs/DECISIONS.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::core::cancel::{Cancel, Pump};
use crate::transport::id_map::IdMap;

/// One connection's flags (`unix:`/`pipe:`/`shm:` server side).
#[derive(Default)]
pub(crate) struct Held {
    state: Mutex<HeldState>,
    /// Set (before the state changes) by the first cancel or hang-up this
    /// connection read: until then no flag of it is fired, and
    /// [`fired`](Self::fired) answers without the lock.
    touched: AtomicBool,
}

#[derive(Default)]
struct HeldState {
    /// By request id: every request handed out and not answered yet, with
    /// its flag once made (`None` until someone looks or its cancel comes:
    /// most requests are answered without either, and allocate no flag).
    flags: IdMap<Option<Arc<Cancel>>>,
    /// The caller is gone ([`Held::caller_gone`]): `flags` is empty for
    /// good, and a flag made after that (of a request held then, or read
    /// from the connection later by another thread) is fired from the start.
    caller_gone: bool,
}

impl Held {
    fn lock(&self) -> MutexGuard<'_, HeldState> {
        // Every critical section is one map operation: poisoning leaves
        // it consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request `id` just read: held until it is answered. Its flag is
    /// made by [`flag`](Self::flag) if anyone asks.
    pub(crate) fn hold(&self, id: u64) {
        let mut state = self.lock();
        if !state.caller_gone {
            state.flags.insert(id, None);
        }
    }

    /// Request `id`'s flag, which `pump` reads the connection for: the one
    /// held, made now if it was not yet. A request no longer held was
    /// answered (nobody asks then: the answer consumed it) or its caller is
    /// gone, and then its flag is fired.
    pub(crate) fn flag(&self, id: u64, pump: Weak<dyn Pump>) -> Arc<Cancel> {
        let mut state = self.lock();
        match state.flags.get_mut(&id) {
            Some(Some(cancel)) => cancel.clone(),
            Some(slot) => slot.insert(Arc::new(Cancel::pumped_by(pump))).clone(),
            None => {
                let gone = state.caller_gone;
                drop(state);
                let cancel = Arc::new(Cancel::pumped_by(pump));
                if gone {
                    // Nobody waits on a flag this new: firing only sets it.
                    cancel.fire();
                }
                cancel
            }
        }
    }

    /// Whether request `id`'s caller is known to have given up: its flag
    /// fired (or made fired by its cancel), or the caller gone. Makes no
    /// flag (a request answered or never held, with the caller still
    /// there, reads false).
    pub(crate) fn fired(&self, id: u64) -> bool {
        if !self.touched.load(Ordering::Acquire) {
            return false;
        }
        let state = self.lock();
        match state.flags.get(&id) {
            Some(Some(cancel)) => cancel.is_fired(),
            Some(None) => false,
            None => state.caller_gone,
        }
    }

    /// The client's cancel for request `id`: fires its flag if the request
    /// is still unanswered (a cancel crossing its answer is ignored); a
    /// flag not made yet is made fired.
    pub(crate) fn cancel(&self, id: u64) {
        self.touched.store(true, Ordering::Release);
        let mut state = self.lock();
        let held = match state.flags.get_mut(&id) {
            Some(Some(cancel)) => cancel.clone(),
            Some(slot) => {
                // Nobody waits on it yet: firing only sets it (no pump: a
                // fired flag never reads the connection).
                let cancel = Arc::new(Cancel::default());
                cancel.fire();
                *slot = Some(cancel);
                return;
            }
            None => return,
        };
        drop(state);
        held.fire();
    }

    /// Request `id` is answered: a later cancel of it is ignored.
    pub(crate) fn release(&self, id: u64) {
        self.lock().flags.remove(&id);
    }

    /// The connection ended while the server runs: every request still
    /// held is cancelled, and any read later. The callbacks run here, in
    /// the caller's thread, which must hold no lock a callback could need
    /// (they may look at other requests, which reads connections).
    pub(crate) fn caller_gone(&self) {
        self.touched.store(true, Ordering::Release);
        let flags = {
            let mut state = self.lock();
            state.caller_gone = true;
            std::mem::take(&mut state.flags)
        };
        for cancel in flags.into_values().flatten() {
            cancel.fire();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoPump;
    impl Pump for NoPump {
        fn pump(&self) {}
    }

    fn no_pump() -> Weak<dyn Pump> {
        Weak::<NoPump>::new()
    }

    #[test]
    fn a_gone_caller_cancels_what_is_held_and_what_comes_after_but_not_what_was_answered() {
        let held = Held::default();
        held.hold(1);
        let answered = held.flag(1, no_pump());
        held.hold(2);
        let waiting = held.flag(2, no_pump());
        held.hold(4);
        held.release(1);
        held.caller_gone();
        assert!(!answered.is_fired(), "an answered request stays uncancelled");
        assert!(waiting.is_fired());
        assert!(held.flag(4, no_pump()).is_fired(), "a flag made after the hang-up, of a request held then");
        held.hold(3);
        assert!(held.flag(3, no_pump()).is_fired(), "a request read after the hang-up is cancelled from the start");
    }

    #[test]
    fn a_cancel_fires_its_own_flag_only_while_held() {
        let held = Held::default();
        held.hold(1);
        held.hold(2);
        let one = held.flag(1, no_pump());
        let two = held.flag(2, no_pump());
        held.cancel(2);
        assert!(!one.is_fired());
        assert!(two.is_fired());
        held.release(1);
        held.cancel(1);
        assert!(!one.is_fired(), "a cancel crossing its answer is ignored");
    }

    #[test]
    fn fired_reads_a_cancel_without_making_a_flag() {
        let held = Held::default();
        held.hold(1);
        held.hold(2);
        let made = held.flag(2, no_pump());
        assert!(!held.fired(1));
        assert!(!held.fired(2));
        assert!(matches!(held.lock().flags.get(&1), Some(None)), "looking made no flag");
        held.cancel(2);
        assert!(made.is_fired());
        assert!(held.fired(2), "a made flag, fired by its cancel");
        assert!(!held.fired(1), "another request's cancel");
        held.cancel(1);
        assert!(held.fired(1), "a cancel that came before anyone looked");
        held.release(1);
        assert!(!held.fired(1), "answered: no longer held, the caller still there");
        held.hold(3);
        held.caller_gone();
        assert!(held.fired(3), "held when the caller went");
        assert!(held.fired(4), "read after the caller went");
    }

    #[test]
    fn a_flag_is_made_once_and_a_cancel_before_it_is_made_is_kept() {
        let held = Held::default();
        held.hold(5);
        let first = held.flag(5, no_pump());
        assert!(Arc::ptr_eq(&first, &held.flag(5, no_pump())), "one flag per request");
        held.hold(6);
        held.cancel(6);
        assert!(held.flag(6, no_pump()).is_fired(), "the cancel came before anyone looked");
        held.release(6);
        held.hold(7);
        held.release(7);
        held.cancel(7);
        assert!(!held.flag(7, no_pump()).is_fired(), "answered, then a cancel crossing the answer");
    }
}
