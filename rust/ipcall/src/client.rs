//! `Client` (sends requests) and `Pending` (one call in flight).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::name::Name;
use crate::options::ClientOptions;
use crate::slot::{Outcome, Slot};
use crate::transport::{self, ClientConn};
use crate::wait::Deadline;

/// A connection to a server.
///
/// Many calls may be in flight at once, from several threads or pipelined
/// from one; replies are matched to calls by id, never by order. Clones
/// share the connection (it closes when the last clone is dropped) and are
/// otherwise independent.
#[derive(Clone)]
pub struct Client {
    name: Arc<str>,
    conn: Arc<dyn ClientConn>,
}

impl Client {
    /// Connects to `name`; `NotFound` if no server is bound to it.
    pub fn connect(name: &str) -> Result<Client> {
        Client::connect_with(name, &ClientOptions::default())
    }

    /// Connects, retrying until the server appears or `timeout` passes;
    /// `NotFound` if it never appeared (`Timeout` is kept for a server that
    /// is there but did not complete the handshake in time).
    pub fn connect_timeout(name: &str, timeout: Duration) -> Result<Client> {
        Client::connect_with(name, &ClientOptions::default().connect_timeout(timeout))
    }

    /// Connects with `options`.
    pub fn connect_with(name: &str, options: &ClientOptions) -> Result<Client> {
        let parsed = Name::parse(name)?;
        let deadline = options.connect_timeout.map_or(Deadline::Now, Deadline::after);
        let mut pause = Duration::from_micros(200);
        loop {
            match transport::connect(&parsed, options) {
                Ok(conn) => return Ok(Client { name: parsed.shared().clone(), conn }),
                Err(Error::NotFound { .. }) if !deadline.expired() => {
                    std::thread::sleep(deadline.remaining().map_or(pause, |left| left.min(pause)));
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn from_conn(name: Arc<str>, conn: Arc<dyn ClientConn>) -> Client {
        Client { name, conn }
    }

    /// The name of the server this client talks to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends `data` and waits for the answer.
    pub fn call(&self, data: &[u8]) -> Result<Vec<u8>> {
        self.send(data)?.wait()
    }

    /// Sends `data` and waits at most `timeout`. On `Timeout` the call is
    /// abandoned: its late answer is discarded, never given to another call.
    pub fn call_timeout(&self, data: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        self.send(data)?.wait_timeout(timeout)
    }

    /// Sends `data` and returns the call in flight, to wait for (or await) later.
    pub fn send(&self, data: &[u8]) -> Result<Pending> {
        self.conn.clone().send(data)
    }

    /// Sends `data` and awaits the answer without blocking a thread; works
    /// under any executor.
    pub async fn call_async(&self, data: &[u8]) -> Result<Vec<u8>> {
        self.send(data)?.await
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("name", &self.name).finish_non_exhaustive()
    }
}

/// A call in flight. Wait for it, poll it, or `.await` it (it is a `Future`).
///
/// Dropping it abandons the call: a late answer is discarded.
pub struct Pending {
    name: Arc<str>,
    conn: Arc<dyn ClientConn>,
    /// The call's id on `conn`.
    id: u64,
    slot: Arc<Slot>,
    /// The outcome was handed out (or the call abandoned); later waits
    /// report `Closed` without blocking.
    spent: bool,
}

impl Pending {
    pub(crate) fn new(name: Arc<str>, conn: Arc<dyn ClientConn>, id: u64, slot: Arc<Slot>) -> Pending {
        Pending { name, conn, id, slot, spent: false }
    }

    fn finish(&mut self) -> Result<Vec<u8>> {
        if self.spent {
            return Err(Error::Closed { name: self.name.clone() });
        }
        let outcome = self.slot.take();
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
            self.conn.wait(self.id, &self.slot, Deadline::Never);
        }
        self.finish()
    }

    /// Blocks at most `timeout`. On `Timeout` the call is abandoned (its
    /// late answer is discarded) and the `Pending` is spent.
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<Vec<u8>> {
        if !self.spent && !self.conn.wait(self.id, &self.slot, Deadline::after(timeout)) {
            self.abandon();
            return Err(Error::Timeout { name: self.name.clone() });
        }
        self.finish()
    }

    /// The answer if it has arrived, `None` if not yet. After it returned
    /// `Some`, the `Pending` is spent and further waits report `Closed`.
    pub fn try_wait(&mut self) -> Option<Result<Vec<u8>>> {
        if self.spent {
            return Some(self.finish());
        }
        if self.conn.wait(self.id, &self.slot, Deadline::Now) {
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
        if self.conn.wait(self.id, &self.slot, Deadline::after(timeout)) {
            Some(self.finish())
        } else {
            None
        }
    }

    fn abandon(&mut self) {
        if !self.spent {
            self.spent = true;
            self.conn.abandon(self.id, &self.slot);
        }
    }
}

impl Future for Pending {
    type Output = Result<Vec<u8>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if !this.spent && this.conn.poll(this.id, &this.slot, cx).is_pending() {
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
        f.debug_struct("Pending").field("name", &self.name).field("id", &self.id).finish_non_exhaustive()
    }
}
