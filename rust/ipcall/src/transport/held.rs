//! The cancellation flags a server connection holds for its requests not
//! yet answered: the client's cancel fires one; the connection ending
//! while the server still runs (the client hung up or died, or was dropped
//! for breaking the protocol or for reading too slowly) fires them all —
//! whoever was waiting for those answers is gone (docs/DECISIONS.md).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::core::cancel::{Cancel, Pump};
use crate::transport::id_map::IdMap;

/// One connection's flags (`unix:`/`pipe:`/`shm:` server side).
pub(crate) struct Held {
    state: Mutex<HeldState>,
    /// Set (before the state changes) by the first cancel or hang-up this
    /// connection read: until then no flag of it is fired, and
    /// [`fired`](Self::fired) answers without the lock.
    touched: AtomicBool,
    /// One held request with no flag made, kept out of `flags`: its id, or
    /// [`NO_LONE`]. Most connections have one request in flight at a time,
    /// so holding and releasing it is one compare-and-swap each instead of
    /// a lock and an unlock each (two locked instructions fewer a request).
    /// An id leaves it only by a compare-and-swap — its answer's
    /// ([`release`](Self::release)), or, under the lock, a look that makes
    /// or fires its flag, which moves it into `flags` — so exactly one of
    /// them moves it. While it is here, the request counts as held
    /// without a flag, as a `None` in `flags` would.
    lone: AtomicU64,
}

/// [`Held::lone`] holds no request. A request of this id (a misbehaving
/// peer's: ids start at 1) is held in `flags`.
const NO_LONE: u64 = 0;

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

impl Default for Held {
    fn default() -> Held {
        Held { state: Mutex::default(), touched: AtomicBool::new(false), lone: AtomicU64::new(NO_LONE) }
    }
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
        if id != NO_LONE && self.lone.compare_exchange(NO_LONE, id, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            return;
        }
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
        let gone = state.caller_gone;
        match state.flags.get_mut(&id) {
            Some(Some(cancel)) => cancel.clone(),
            Some(slot) => slot.insert(Arc::new(Cancel::pumped_by(pump))).clone(),
            // Held, without a flag yet: it moves into `flags` with one
            // (unless the caller is gone: `flags` stays empty, and the
            // flag is fired, below).
            None if !gone && self.take_lone(id) => {
                let cancel = Arc::new(Cancel::pumped_by(pump));
                state.flags.insert(id, Some(cancel.clone()));
                cancel
            }
            None => {
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
    /// there, reads false; one in `lone` has no flag, and reads as one
    /// not in `flags`: fired only if the caller is gone).
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
        let gone = state.caller_gone;
        let held = match state.flags.get_mut(&id) {
            Some(Some(cancel)) => cancel.clone(),
            Some(slot) => {
                // Nobody waits on it yet: firing only sets it (no pump: a
                // fired flag never reads the connection).
                *slot = Some(fired_flag());
                return;
            }
            // Held, without a flag yet: it moves into `flags`, fired.
            None if !gone && self.take_lone(id) => {
                state.flags.insert(id, Some(fired_flag()));
                return;
            }
            None => return,
        };
        drop(state);
        held.fire();
    }

    /// Request `id` is answered: a later cancel of it is ignored.
    pub(crate) fn release(&self, id: u64) {
        if !self.take_lone(id) {
            self.lock().flags.remove(&id);
        }
    }

    /// Takes request `id` out of [`lone`](Self::lone): true if it was there
    /// (the caller then owns its move, see there).
    fn take_lone(&self, id: u64) -> bool {
        id != NO_LONE && self.lone.compare_exchange(id, NO_LONE, Ordering::AcqRel, Ordering::Relaxed).is_ok()
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

/// A flag made fired: nobody waits on it yet, so firing only sets it (no
/// pump: a fired flag never reads the connection).
fn fired_flag() -> Arc<Cancel> {
    let cancel = Arc::new(Cancel::default());
    cancel.fire();
    cancel
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
        assert!(held.lone.load(Ordering::Relaxed) == 1 && held.lock().flags.get(&1).is_none(), "looking made no flag");
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

    #[test]
    fn the_lone_request_moves_into_the_map_when_its_flag_is_made_or_cancelled() {
        let held = Held::default();
        held.hold(1);
        assert_eq!(held.lone.load(Ordering::Relaxed), 1, "the only request is held outside the map");
        held.cancel(1);
        assert_eq!(held.lone.load(Ordering::Relaxed), NO_LONE);
        assert!(held.fired(1), "its cancel moved it into the map, fired");
        held.release(1);
        assert!(held.lock().flags.is_empty(), "released from the map");
        held.hold(2);
        let two = held.flag(2, no_pump());
        assert!(!two.is_fired() && held.lone.load(Ordering::Relaxed) == NO_LONE, "looking moved it, with its flag");
        held.hold(0);
        assert!(matches!(held.lock().flags.get(&0), Some(None)), "id 0 is held in the map");
        held.release(2);
        held.release(0);
        assert!(held.lock().flags.is_empty());
        held.hold(3);
        held.release(3);
        held.cancel(3);
        assert!(!held.fired(3), "a cancel crossing the lone request's answer is ignored");
        assert!(held.lock().flags.is_empty() && held.lone.load(Ordering::Relaxed) == NO_LONE);
    }

    #[test]
    fn an_answer_and_a_cancel_racing_for_the_lone_request_leave_nothing_held() {
        const REQUESTS: u64 = 20_000;
        let held = Arc::new(Held::default());
        let next = Arc::new(AtomicU64::new(0));
        let canceller = {
            let (held, next) = (held.clone(), next.clone());
            std::thread::spawn(move || {
                for id in 1..=REQUESTS {
                    while next.load(Ordering::Acquire) < id {
                        std::hint::spin_loop();
                    }
                    held.cancel(id);
                }
            })
        };
        for id in 1..=REQUESTS {
            held.hold(id);
            next.store(id, Ordering::Release);
            held.release(id);
        }
        canceller.join().unwrap();
        assert!(held.lock().flags.is_empty(), "every request was released, from wherever it was");
        assert_eq!(held.lone.load(Ordering::Relaxed), NO_LONE);
    }
}
