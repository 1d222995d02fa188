//! The `shm:` client's brief spin for event loops (`Client::progress_spin`).
//!
//! An event loop sleeps in `epoll_wait` and pays a wake-up for every reply
//! (~25–45 µs across CPUs here), where a blocking caller spins under the
//! adaptive policy ([`spin`](crate::core::spin)). Right before its
//! loop would sleep with calls pending, an event loop may call this: it
//! spins under the same policy (the server on another CPU, a spin slot)
//! with the connection's own [`EventBudget`](spin::EventBudget), which
//! drops to zero after a few failed spins, so a slow server soon costs
//! nothing. It never sleeps.
//!
//! While it spins it withdraws the sleep announcement in the reply ring's
//! `consumer_sleeping` (so a reply it catches costs the server no bell
//! system call and the loop no spurious readiness), and announces it again
//! before it returns without a reply (then looks once more, §12.4).

use std::sync::atomic::Ordering;

use super::evented::Look;
use super::ShmClient;
use crate::core::wait::lock;
use crate::transport::shm::ring::announce_sleep;
use crate::transport::shm::{publish_cpu, spin};

impl ShmClient {
    /// See [`ClientConn::progress_spin`](crate::transport::ClientConn::progress_spin).
    pub(super) fn evented_progress_spin(&self) -> bool {
        let shared = &self.shared;
        // Only with the bell: without it the reader thread reads for the loop.
        if !shared.bell.load(Ordering::Acquire) {
            return false;
        }
        // Another thread reads the replies: it completes the calls.
        let Ok(reader) = shared.reader.try_lock() else { return false };
        {
            let calls = lock(&shared.calls);
            if calls.dead.is_some() || calls.pending.is_empty() {
                return false;
            }
        }
        let header = shared.mapping.header();
        let my_cpu = publish_cpu(&header.client_cpu);
        let server_cpu = header.server_cpu.load(Ordering::Relaxed);
        let flag = &header.replies.consumer_sleeping;
        let mut withdrawn = false;
        let got = spin::spin_evented(shared.mode, &shared.event_budget, server_cpu, my_cpu, || {
            if !withdrawn {
                // Inside the spin (only once it is allowed): we look ourselves.
                flag.store(0, Ordering::Relaxed);
                withdrawn = true;
            }
            shared.has_news(&reader)
        });
        if withdrawn && !got {
            // Asleep again: a reply published before this rings no bell, so
            // look once more and make the loop look if one came.
            announce_sleep(flag);
            if shared.has_news(&reader) {
                shared.notifier.ring();
            }
        }
        drop(reader);
        if got {
            // Reads the replies; announces sleep again if calls stay pending.
            self.evented_progress_as(Look::AfterSpin);
        }
        got
    }
}
