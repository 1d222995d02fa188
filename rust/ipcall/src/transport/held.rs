//! The cancellation flags a server connection holds for its requests not
//! yet answered: the client's cancel fires one; the connection ending
//! while the server still runs (the client hung up or died, or was dropped
//! for breaking the protocol or for reading too slowly) fires them all —
//! whoever was waiting for those answers is gone (docs/DECISIONS.md).

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::core::cancel::{Cancel, Pump};
use crate::transport::calls::IdMap;

/// One connection's flags (`unix:`/`pipe:`/`shm:` server side).
#[derive(Default)]
pub(crate) struct Held {
    state: Mutex<HeldState>,
}

#[derive(Default)]
struct HeldState {
    /// By request id: every request handed out and not answered yet.
    flags: IdMap<Arc<Cancel>>,
    /// The caller is gone ([`Held::caller_gone`]): `flags` is empty for
    /// good, and a request read from the connection after that (another
    /// thread was decoding it) is cancelled from the start.
    caller_gone: bool,
}

impl Held {
    fn lock(&self) -> MutexGuard<'_, HeldState> {
        // Every critical section is one map operation: poisoning leaves
        // it consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request `id` just read: its flag, which `pump` reads the
    /// connection for, held until it is answered.
    pub(crate) fn hold(&self, id: u64, pump: Weak<dyn Pump>) -> Arc<Cancel> {
        let cancel = Arc::new(Cancel::pumped_by(pump));
        let mut state = self.lock();
        if state.caller_gone {
            drop(state);
            // Nobody waits on a flag this new: firing only sets it.
            cancel.fire();
        } else {
            state.flags.insert(id, cancel.clone());
        }
        cancel
    }

    /// The client's cancel for request `id`: fires its flag if the request
    /// is still unanswered (a cancel crossing its answer is ignored).
    pub(crate) fn cancel(&self, id: u64) {
        let held = self.lock().flags.get(&id).cloned();
        if let Some(cancel) = held {
            cancel.fire();
        }
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
        let flags = {
            let mut state = self.lock();
            state.caller_gone = true;
            std::mem::take(&mut state.flags)
        };
        for cancel in flags.into_values() {
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
        let answered = held.hold(1, no_pump());
        let waiting = held.hold(2, no_pump());
        held.release(1);
        held.caller_gone();
        assert!(!answered.is_fired(), "an answered request stays uncancelled");
        assert!(waiting.is_fired());
        let late = held.hold(3, no_pump());
        assert!(late.is_fired(), "a request read after the hang-up is cancelled from the start");
    }

    #[test]
    fn a_cancel_fires_its_own_flag_only_while_held() {
        let held = Held::default();
        let one = held.hold(1, no_pump());
        let two = held.hold(2, no_pump());
        held.cancel(2);
        assert!(!one.is_fired());
        assert!(two.is_fired());
        held.release(1);
        held.cancel(1);
        assert!(!one.is_fired(), "a cancel crossing its answer is ignored");
    }
}
