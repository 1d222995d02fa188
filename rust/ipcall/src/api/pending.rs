//! `Pending`: one call in flight.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::core::error::{Error, Result};
use crate::core::slot::Outcome;
use crate::core::slot::Slot;
use crate::core::wait::Deadline;
use crate::transport::{Call, ClientConn};

/// What [`Client::try_call`](crate::Client::try_call) did with a request.
#[derive(Debug)]
pub enum TryCall {
    /// The transport had no room: nothing was sent (as `try_send`'s `None`).
    NoRoom,
    /// Sent; the answer is not here yet.
    Sent(Pending),
    /// Sent and already answered: the call's reply or error.
    Answered(Result<Vec<u8>>),
}

/// A call in flight. Wait for it, poll it, or `.await` it (it is a `Future`).
///
/// Dropping it abandons the call: a late answer is discarded.
pub struct Pending {
    /// The wait on tokio's reactor (feature `tokio`; wire transports only).
    /// Before `call`: it may hold the last reference to the connection's
    /// reactors, which must go before the connection's descriptor.
    #[cfg(feature = "tokio")]
    tokio: Option<crate::api::on_tokio::TokioWait>,
    name: Arc<str>,
    /// The call and where it stands.
    state: CallState,
}

/// A call in flight and where it stands, without the server's name its
/// errors carry (the caller lends it): what [`Pending`] wraps, and what
/// the blocking calls wait on directly, so that a call clones no name.
/// Dropped unsettled, it abandons the call.
pub(crate) struct CallState {
    /// The transport's call: its connection, id and slot. A pool's call
    /// whose member closed without taking it is replaced by the call that
    /// sends it again (see [`settle`](Self::settle)).
    call: Call,
    /// The outcome was handed out (or the call abandoned); later waits
    /// report `Closed` without blocking.
    spent: bool,
    /// `call`'s server closed without taking it and it can go to another
    /// server (a pool's member), but no member had room yet: it is to be
    /// sent again, and `call`'s slot is spent.
    owed: bool,
}

impl Pending {
    pub(crate) fn new(name: Arc<str>, call: Call) -> Pending {
        Pending {
            #[cfg(feature = "tokio")]
            tokio: None,
            name,
            state: CallState::new(call),
        }
    }

    /// A call that waits on tokio's reactor when polled in a runtime.
    #[cfg(feature = "tokio")]
    pub(crate) fn on_tokio(mut self, registry: Option<Arc<crate::transport::reactor::Registry>>) -> Pending {
        self.tokio = registry.map(crate::api::on_tokio::TokioWait::new);
        self
    }

    /// Blocks until the answer arrives.
    pub fn wait(mut self) -> Result<Vec<u8>> {
        self.state.wait(&self.name)
    }

    /// Blocks at most `timeout`. On `Timeout` the call is abandoned (its
    /// late answer is discarded) and the `Pending` is spent.
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<Vec<u8>> {
        self.state.wait_timeout(&self.name, timeout)
    }

    /// The answer if it has arrived, `None` if not yet. Never blocks. After
    /// it returned `Some`, the `Pending` is spent and further waits report
    /// `Closed`.
    ///
    /// Once the client's [`fd`](crate::Client::fd) was asked for, it does
    /// no I/O: it only looks whether the call completed, and the event
    /// loop's [`progress`](crate::Client::progress) does the reading.
    /// Before that, it reads what the connection has without blocking.
    /// (Over a pool, a call whose member closed without taking it is sent
    /// to another member here, without blocking.)
    pub fn try_wait(&mut self) -> Option<Result<Vec<u8>>> {
        loop {
            let ready = self.state.spent
                || self.state.owed
                || self.state.call.slot.is_ready()
                || (!self.state.call.conn.is_evented()
                    && self.state.call.conn.wait(self.state.call.id, &self.state.call.slot, Deadline::Now));
            if !ready {
                return None;
            }
            match self.state.settle(&self.name, false) {
                Some(result) => return Some(result),
                // No member had room: the event loop's descriptor reports
                // it when one has.
                None if self.state.owed => return None,
                // Sent again: look at the new call.
                None => {}
            }
        }
    }

    /// Waits at most `timeout` for the answer; `None` if it has not arrived
    /// yet. Unlike [`wait_timeout`](Self::wait_timeout) this never abandons
    /// the call, so a caller can wait in slices (e.g. to notice a signal
    /// between them) and keep waiting. After it returned `Some`, the
    /// `Pending` is spent and further waits report `Closed`.
    pub fn try_wait_timeout(&mut self, timeout: Duration) -> Option<Result<Vec<u8>>> {
        let deadline = Deadline::after(timeout);
        loop {
            if !self.state.spent
                && !self.state.owed
                && !self.state.call.conn.wait(self.state.call.id, &self.state.call.slot, deadline)
            {
                return None;
            }
            match self.state.settle(&self.name, false) {
                Some(result) => return Some(result),
                None if self.state.owed => return None,
                None => {}
            }
        }
    }
}

impl Future for Pending {
    type Output = Result<Vec<u8>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            if !this.state.spent && !this.state.owed && this.poll_call(cx).is_pending() {
                return Poll::Pending;
            }
            match this.state.settle(&this.name, false) {
                Some(result) => return Poll::Ready(result),
                None if this.state.owed => {
                    // No member had room, and nothing here is woken when
                    // one has: look again on the executor's next turn.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                // Sent again: poll the new call.
                None => {}
            }
        }
    }
}

impl Pending {
    /// Polls `call` until its slot is ready: on tokio's reactor where the
    /// runtime polling has one, else on the executor-neutral path.
    fn poll_call(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        #[cfg(feature = "tokio")]
        if let Some(tokio) = &mut self.tokio {
            // `None`: not in a tokio runtime with I/O, the neutral path.
            if let Some(poll) = tokio.poll(&self.state.call, cx) {
                return poll;
            }
        }
        self.state.call.conn.poll(self.state.call.id, &self.state.call.slot, cx)
    }
}

impl Drop for Pending {
    /// Leaves tokio's reactor first; `state` then abandons the call if it
    /// is not settled.
    fn drop(&mut self) {
        #[cfg(feature = "tokio")]
        if let Some(tokio) = &mut self.tokio {
            tokio.leave();
        }
    }
}

impl CallState {
    pub(crate) fn new(call: Call) -> CallState {
        CallState { call, spent: false, owed: false }
    }

    /// The outcome once `call`'s slot is ready (or `owed`): `None` if the
    /// call was not taken by its server and is (to be) sent again — over a
    /// pool, to another member (docs/DECISIONS.md, "Worker pools"); then
    /// wait for `call` again (unless `owed`: no member had room). With
    /// `block` a resend waits for room; without, it never blocks.
    fn settle(&mut self, name: &Arc<str>, block: bool) -> Option<Result<Vec<u8>>> {
        if self.spent {
            return Some(Err(Error::Closed { name: name.clone() }));
        }
        if !self.owed {
            let outcome = self.call.slot.take();
            if !matches!(outcome, Some(Outcome::NotTaken)) || self.call.resend.is_none() {
                self.spent = true;
                return Some(outcome_result(name, outcome));
            }
            self.owed = true;
        }
        let mut resend = self.call.resend.take().expect("an owed call can be sent again");
        match resend.send_again(self.call.id, block) {
            Ok(Some(mut call)) => {
                call.resend = Some(resend);
                self.call = call;
                self.owed = false;
                None
            }
            Ok(None) => {
                self.call.resend = Some(resend);
                None
            }
            Err(e) => {
                self.spent = true;
                Some(Err(match e {
                    Error::Disconnected { .. } => Error::Disconnected { name: name.clone() },
                    other => other,
                }))
            }
        }
    }

    /// Blocks until the answer arrives.
    pub(crate) fn wait(&mut self, name: &Arc<str>) -> Result<Vec<u8>> {
        loop {
            if !self.spent && !self.owed {
                self.call.conn.wait(self.call.id, &self.call.slot, Deadline::Never);
            }
            if let Some(result) = self.settle(name, true) {
                return result;
            }
        }
    }

    /// Blocks at most `timeout`. On `Timeout` the call is abandoned (its
    /// late answer is discarded) and the call is spent.
    pub(crate) fn wait_timeout(&mut self, name: &Arc<str>, timeout: Duration) -> Result<Vec<u8>> {
        let deadline = Deadline::after(timeout);
        loop {
            if !self.spent && !self.owed && !self.call.conn.wait(self.call.id, &self.call.slot, deadline) {
                self.abandon();
                return Err(Error::Timeout { name: name.clone() });
            }
            if let Some(result) = self.settle(name, true) {
                return result;
            }
        }
    }

    fn abandon(&mut self) {
        if !self.spent {
            self.spent = true;
            // An owed call is in no connection's table: nothing to tell.
            if !self.owed {
                self.call.conn.abandon(self.call.id, &self.call.slot);
            }
        }
    }
}

impl Drop for CallState {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// The caller's result of `outcome`, taken from a ready slot.
pub(crate) fn outcome_result(name: &Arc<str>, outcome: Option<Outcome>) -> Result<Vec<u8>> {
    let name = || name.clone();
    match outcome {
        Some(Outcome::Reply(data)) => Ok(data),
        Some(Outcome::Fail(payload)) => Err(Error::Remote { name: name(), payload }),
        Some(Outcome::NoReply) => Err(Error::NoReply { name: name() }),
        // Not taken, and nowhere else to go: the server went away.
        Some(Outcome::Disconnected) | Some(Outcome::NotTaken) => Err(Error::Disconnected { name: name() }),
        Some(Outcome::Error(error)) => Err(error),
        // The slot was ready, so an outcome was stored; only a second
        // taker could have emptied it, and `spent` rules that out.
        None => Err(Error::Closed { name: name() }),
    }
}
/// A call a blocking caller sent with [`ClientConn::send_here`] and waits
/// for at once: the connection borrowed, not cloned (nor a `Call` made),
/// per call. Dropped unsettled, it abandons the call.
pub(crate) struct LocalCall<'a> {
    conn: &'a dyn ClientConn,
    id: u64,
    slot: Arc<Slot>,
    /// The outcome was taken, or the call abandoned.
    spent: bool,
}

impl<'a> LocalCall<'a> {
    pub(crate) fn new(conn: &'a dyn ClientConn, id: u64, slot: Arc<Slot>) -> LocalCall<'a> {
        LocalCall { conn, id, slot, spent: false }
    }

    /// Blocks until the answer arrives.
    pub(crate) fn wait(self, name: &Arc<str>) -> Result<Vec<u8>> {
        self.wait_until(name, Deadline::Never)
    }

    /// Blocks at most `timeout`; on `Timeout` the call is abandoned.
    pub(crate) fn wait_timeout(self, name: &Arc<str>, timeout: Duration) -> Result<Vec<u8>> {
        self.wait_until(name, Deadline::after(timeout))
    }

    /// Waits in slices of at most `slice` until `deadline` (`Timeout`),
    /// asking `go_on` after each slice that ends without the answer:
    /// `Ok(None)` once it says no. Dropped unspent (both), the call is
    /// abandoned.
    pub(crate) fn wait_sliced(
        mut self,
        name: &Arc<str>,
        deadline: Deadline,
        slice: Duration,
        mut go_on: impl FnMut() -> bool,
    ) -> Result<Option<Vec<u8>>> {
        loop {
            let this_slice = match deadline.remaining() {
                Some(left) => Deadline::after(left.min(slice)),
                None => Deadline::after(slice),
            };
            if let Some(outcome) = self.conn.wait_take(self.id, &self.slot, this_slice) {
                self.spent = true;
                return outcome_result(name, outcome).map(Some);
            }
            if deadline.expired() {
                return Err(Error::Timeout { name: name.clone() });
            }
            if !go_on() {
                return Ok(None);
            }
        }
    }

    fn wait_until(mut self, name: &Arc<str>, deadline: Deadline) -> Result<Vec<u8>> {
        match self.conn.wait_take(self.id, &self.slot, deadline) {
            Some(outcome) => {
                self.spent = true;
                outcome_result(name, outcome)
            }
            // Dropped unspent: abandoned.
            None => Err(Error::Timeout { name: name.clone() }),
        }
    }
}

impl Drop for LocalCall<'_> {
    fn drop(&mut self) {
        if !self.spent {
            self.conn.abandon(self.id, &self.slot);
        }
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending").field("name", &self.name).field("id", &self.state.call.id).finish_non_exhaustive()
    }
}
