//! `Pending`: one call in flight.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::core::error::{Error, Result};
use crate::core::slot::Outcome;
use crate::core::wait::Deadline;
use crate::transport::Call;

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
    /// The transport's call: its connection, id and slot.
    call: Call,
    /// The outcome was handed out (or the call abandoned); later waits
    /// report `Closed` without blocking.
    spent: bool,
}

impl Pending {
    pub(crate) fn new(name: Arc<str>, call: Call) -> Pending {
        Pending {
            #[cfg(feature = "tokio")]
            tokio: None,
            name,
            call,
            spent: false,
        }
    }

    /// A call that waits on tokio's reactor when polled in a runtime.
    #[cfg(feature = "tokio")]
    pub(crate) fn on_tokio(mut self, registry: Option<Arc<crate::transport::reactor::Registry>>) -> Pending {
        self.tokio = registry.map(crate::api::on_tokio::TokioWait::new);
        self
    }

    fn finish(&mut self) -> Result<Vec<u8>> {
        if self.spent {
            return Err(Error::Closed { name: self.name.clone() });
        }
        let outcome = self.call.slot.take();
        self.spent = true;
        let name = || self.name.clone();
        match outcome {
            Some(Outcome::Reply(data)) => Ok(data),
            Some(Outcome::Fail(payload)) => Err(Error::Remote { name: name(), payload }),
            Some(Outcome::NoReply) => Err(Error::NoReply { name: name() }),
            Some(Outcome::Disconnected) => Err(Error::Disconnected { name: name() }),
            Some(Outcome::Error(error)) => Err(error),
            // `is_ready` was true, so an outcome was stored; only a second
            // taker could have emptied it, and `spent` rules that out.
            None => Err(Error::Closed { name: name() }),
        }
    }

    /// Blocks until the answer arrives.
    pub fn wait(mut self) -> Result<Vec<u8>> {
        if !self.spent {
            self.call.conn.wait(self.call.id, &self.call.slot, Deadline::Never);
        }
        self.finish()
    }

    /// Blocks at most `timeout`. On `Timeout` the call is abandoned (its
    /// late answer is discarded) and the `Pending` is spent.
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<Vec<u8>> {
        if !self.spent && !self.call.conn.wait(self.call.id, &self.call.slot, Deadline::after(timeout)) {
            self.abandon();
            return Err(Error::Timeout { name: self.name.clone() });
        }
        self.finish()
    }

    /// The answer if it has arrived, `None` if not yet. Never blocks. After
    /// it returned `Some`, the `Pending` is spent and further waits report
    /// `Closed`.
    ///
    /// Once the client's [`fd`](crate::Client::fd) was asked for, it does
    /// no I/O: it only looks whether the call completed, and the event
    /// loop's [`progress`](crate::Client::progress) does the reading.
    /// Before that, it reads what the connection has without blocking.
    pub fn try_wait(&mut self) -> Option<Result<Vec<u8>>> {
        if self.spent {
            return Some(self.finish());
        }
        if self.call.slot.is_ready() {
            return Some(self.finish());
        }
        if self.call.conn.is_evented() {
            return None;
        }
        if self.call.conn.wait(self.call.id, &self.call.slot, Deadline::Now) {
            Some(self.finish())
        } else {
            None
        }
    }

    /// Waits at most `timeout` for the answer; `None` if it has not arrived
    /// yet. Unlike [`wait_timeout`](Self::wait_timeout) this never abandons
    /// the call, so a caller can wait in slices (e.g. to notice a signal
    /// between them) and keep waiting. After it returned `Some`, the
    /// `Pending` is spent and further waits report `Closed`.
    pub fn try_wait_timeout(&mut self, timeout: Duration) -> Option<Result<Vec<u8>>> {
        if self.spent {
            return Some(self.finish());
        }
        if self.call.conn.wait(self.call.id, &self.call.slot, Deadline::after(timeout)) {
            Some(self.finish())
        } else {
            None
        }
    }

    fn abandon(&mut self) {
        #[cfg(feature = "tokio")]
        if let Some(tokio) = &mut self.tokio {
            tokio.leave();
        }
        if !self.spent {
            self.spent = true;
            self.call.conn.abandon(self.call.id, &self.call.slot);
        }
    }
}

impl Future for Pending {
    type Output = Result<Vec<u8>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        #[cfg(feature = "tokio")]
        if let (false, Some(tokio)) = (this.spent, &mut this.tokio) {
            match tokio.poll(&this.call, cx) {
                Some(Poll::Pending) => return Poll::Pending,
                Some(Poll::Ready(())) => return Poll::Ready(this.finish()),
                // Not in a tokio runtime with I/O: the neutral path.
                None => {}
            }
        }
        if !this.spent && this.call.conn.poll(this.call.id, &this.call.slot, cx).is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(this.finish())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.abandon();
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending").field("name", &self.name).field("id", &self.call.id).finish_non_exhaustive()
    }
}
