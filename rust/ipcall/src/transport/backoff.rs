//! Backing off an accept loop whose `accept` fails.
//!
//! Out of descriptors (`EMFILE`, `ENFILE`) or memory (`ENOBUFS`, `ENOMEM`),
//! `accept` fails while the listener stays readable: polling it again at
//! once spins a core and locks every client out for as long as the shortage
//! lasts. Instead the accepting thread stops watching the listener for a
//! delay that doubles up to [`MAX_PAUSE`] and tries again; the first accept
//! that works resets it. Nothing is logged per retry.

use std::time::{Duration, Instant};

/// The first pause after a failed accept.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause: how late a client may be served once resources return.
const MAX_PAUSE: Duration = Duration::from_millis(500);

/// The pause state of one accepting thread.
#[derive(Debug, Default)]
pub(crate) struct AcceptBackoff {
    /// The listener is not watched before this instant.
    until: Option<Instant>,
    /// The next pause.
    next: Duration,
}

impl AcceptBackoff {
    /// An accept failed: pause the listener. Every failure pauses (a
    /// listener that keeps failing must not spin, whatever the reason);
    /// exhaustion is the case that happens.
    pub(crate) fn failed(&mut self) {
        let pause = self.next.max(FIRST_PAUSE);
        self.until = Some(Instant::now() + pause);
        self.next = (pause * 2).min(MAX_PAUSE);
    }

    /// An accept worked (or found nobody waiting): no pause any more.
    pub(crate) fn succeeded(&mut self) {
        self.until = None;
        self.next = FIRST_PAUSE;
    }

    /// When the current pause ends, if the listener is paused now.
    pub(crate) fn paused_until(&self) -> Option<Instant> {
        self.until.filter(|&at| at > Instant::now())
    }

    /// The descriptor to poll for the listener: `fd`, or -1 (ignored by
    /// poll) while paused.
    pub(crate) fn listener_fd(&self, fd: libc::c_int) -> libc::c_int {
        if self.paused_until().is_some() {
            -1
        } else {
            fd
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_maximum_and_reset_on_success() {
        let mut backoff = AcceptBackoff::default();
        assert_eq!(backoff.listener_fd(7), 7);
        let mut pauses = Vec::new();
        for _ in 0..8 {
            backoff.failed();
            assert!(backoff.until.is_some());
            pauses.push(backoff.next.as_millis());
        }
        assert_eq!(pauses, [20, 40, 80, 160, 320, 500, 500, 500]);
        backoff.until = Some(Instant::now() + Duration::from_secs(3600));
        assert_eq!(backoff.listener_fd(7), -1, "paused");
        backoff.succeeded();
        assert_eq!(backoff.listener_fd(7), 7);
        assert_eq!(backoff.next, FIRST_PAUSE);
    }
}
