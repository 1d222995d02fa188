//! The reading role (see the parent module): reading replies as its
//! holder, handing it on, and a follower's registration.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{ReplyReader, Shared};
use crate::core::options::WaitMode;
use crate::core::wait::{lock, Deadline};
use crate::transport::shm::{futex_wait, publish_cpu, ring, spin, DEATH_CHECK};

impl Shared {
    /// The reading role: reads replies until `done(reader)` or the
    /// deadline. The caller holds `reader`. Returns whether `done` became
    /// true.
    pub(super) fn lead(
        &self,
        reader: &mut ReplyReader,
        deadline: Deadline,
        mut done: impl FnMut(&ReplyReader) -> bool,
    ) -> bool {
        // When the current wait for data began (for the spin budget).
        let mut waiting_since: Option<Instant> = None;
        loop {
            let progress = self.has_news(reader);
            self.drain(reader);
            self.check_closed();
            if progress {
                self.reader_idle.store(false, Ordering::Relaxed);
                if let Some(at) = waiting_since.take() {
                    self.budget.observe(at.elapsed());
                }
            }
            if done(reader) {
                return true;
            }
            if lock(&self.calls).dead.is_some() || deadline.expired() {
                return done(reader);
            }
            let header = self.mapping.header();
            let my_cpu = publish_cpu(&header.client_cpu);
            // After a sleep that ended with nothing to read (a death
            // check), a spin would only burn CPU ten times a second while
            // the server holds the calls. `Spin` spins regardless.
            if self.reader_idle.load(Ordering::Relaxed) && self.mode != WaitMode::Spin {
                waiting_since.get_or_insert_with(Instant::now);
            } else {
                let spinning =
                    spin::allowance(self.mode, &self.budget, header.server_cpu.load(Ordering::Relaxed), my_cpu);
                let ns = spinning.ns;
                if waiting_since.is_none() && spin::quick(ns, || self.has_news(reader)) {
                    continue;
                }
                waiting_since.get_or_insert_with(Instant::now);
                if spin::spin_for(ns, || self.has_news(reader)) {
                    continue;
                }
            }
            if self.mode == WaitMode::Spin {
                self.check_gone(reader);
                continue;
            }
            // On the futex alone: the server rings no bell for it.
            let flag = &header.replies.consumer_sleeping;
            ring::announce_sleep_as(flag, ring::SLEEPING_ON_FUTEX);
            if !self.has_news(reader) {
                let slice = deadline.remaining().map_or(DEATH_CHECK, |left| left.min(DEATH_CHECK));
                futex_wait(flag, ring::SLEEPING_ON_FUTEX, Some(slice.max(Duration::from_micros(1))));
            }
            flag.store(0, Ordering::Relaxed);
            if !self.has_news(reader) {
                self.reader_idle.store(true, Ordering::Relaxed);
                if self.check_gone(reader) {
                    return done(reader);
                }
            }
        }
    }

    /// Hands the reading role on: nudges sleeping followers.
    pub(super) fn hand_on(&self) {
        // Pairs with the follower's registration before its second attempt
        // at the role (store, then try_lock) against our unlock, then load.
        std::sync::atomic::fence(Ordering::SeqCst);
        self.after_leading();
        if self.interest.load(Ordering::Relaxed) == 0 {
            return;
        }
        let calls = lock(&self.calls);
        if calls.followers > 0 {
            for entry in calls.pending.values().filter(|e| e.following) {
                entry.slot.nudge();
            }
        }
        if calls.async_calls > 0 {
            self.async_cond.notify_all();
        }
    }

    pub(super) fn set_following(&self, id: u64, following: bool) {
        let mut calls = lock(&self.calls);
        let mut delta = 0isize;
        if let Some(entry) = calls.pending.get_mut(&id) {
            if entry.following != following {
                entry.following = following;
                delta = if following { 1 } else { -1 };
            }
        }
        calls.followers = (calls.followers as isize + delta) as usize;
        self.interest.store(calls.async_calls + calls.followers, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::SeqCst);
    }
}
