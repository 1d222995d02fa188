//! Whether a server's wait for its sole `pipe:` connection reads before it
//! polls (`FifoWire::read_or_wake`).
//!
//! While requests flow between two processes on one CPU, the client, woken
//! by the reply the server just wrote, has most often run and written its
//! next request by the time the server reads again: a read alone then takes
//! it, one system call where `poll` and a read are two. A client on another
//! CPU, or one that pauses between calls, is not there yet, and each such
//! miss costs a read that finds nothing. So the read is tried while it pays:
//! after [`MISSES_IN_A_ROW`] misses in a row, only one wait in
//! [`PROBE_EVERY`] tries it, until a try finds bytes again.

use std::sync::atomic::{AtomicU32, Ordering};

/// Misses in a row after which only probes try the read first.
const MISSES_IN_A_ROW: u32 = 4;

/// While paused, one wait in this many tries the read first (a probe).
const PROBE_EVERY: u32 = 32;

/// The read-first policy of one connection. Only the thread holding the
/// connection's reader uses it, so relaxed atomics suffice (they are atomics
/// because the wire is shared, not because two threads race on them).
#[derive(Debug, Default)]
pub(super) struct ReadFirst {
    /// Tries in a row that found nothing (saturating).
    misses: AtomicU32,
    /// While paused: waits left before the next probe.
    skip: AtomicU32,
}

impl ReadFirst {
    /// Whether this wait tries a read before it polls.
    pub(super) fn should_try(&self) -> bool {
        if self.misses.load(Ordering::Relaxed) < MISSES_IN_A_ROW {
            return true;
        }
        match self.skip.load(Ordering::Relaxed) {
            0 => {
                self.skip.store(PROBE_EVERY - 1, Ordering::Relaxed);
                true
            }
            left => {
                self.skip.store(left - 1, Ordering::Relaxed);
                false
            }
        }
    }

    /// What a try found: something the wait returns (bytes, the end of
    /// the stream, or an error, which also ends it), or nothing.
    pub(super) fn record(&self, found: bool) {
        if found {
            self.misses.store(0, Ordering::Relaxed);
            self.skip.store(0, Ordering::Relaxed);
        } else {
            let misses = self.misses.load(Ordering::Relaxed);
            self.misses.store(misses.saturating_add(1), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `waits` waits whose tries find `found`; returns how many tried.
    fn tries(policy: &ReadFirst, waits: u32, found: bool) -> u32 {
        (0..waits)
            .filter(|_| {
                let tried = policy.should_try();
                if tried {
                    policy.record(found);
                }
                tried
            })
            .count() as u32
    }

    #[test]
    fn reads_first_while_it_finds_bytes() {
        let policy = ReadFirst::default();
        assert_eq!(tries(&policy, 1000, true), 1000);
    }

    #[test]
    fn misses_in_a_row_leave_only_probes_and_a_hit_ends_the_pause() {
        let policy = ReadFirst::default();
        // The first misses are all tried; then one wait in PROBE_EVERY.
        assert_eq!(tries(&policy, MISSES_IN_A_ROW, false), MISSES_IN_A_ROW);
        assert_eq!(tries(&policy, PROBE_EVERY * 10, false), 10);
        // A probe that finds bytes: every wait tries again.
        while !policy.should_try() {}
        policy.record(true);
        assert_eq!(tries(&policy, 100, true), 100);
    }

    #[test]
    fn a_hit_between_misses_restarts_the_count() {
        let policy = ReadFirst::default();
        for _ in 0..100 {
            assert_eq!(tries(&policy, MISSES_IN_A_ROW - 1, false), MISSES_IN_A_ROW - 1);
            assert_eq!(tries(&policy, 1, true), 1);
        }
    }
}
