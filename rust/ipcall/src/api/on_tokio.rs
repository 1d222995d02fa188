//! `.await` under tokio without a thread of ours (feature `tokio`).
//!
//! When a call's or a `recv_async`'s future is polled inside a tokio
//! runtime whose I/O driver is on, the client's [`fd`](crate::Client::fd)
//! (or the server's descriptor) is registered with that runtime's reactor
//! — once per connection and runtime, see
//! [`transport::reactor`](crate::transport::reactor) — and the tasks
//! waiting on it make progress on readiness, on the runtime's own threads.
//! Requests go out with `try_send`; one that finds no room waits for the
//! descriptor to report it, so the executor thread never blocks.
//!
//! Anywhere else (futures' executor, smol, a runtime without I/O) the
//! executor-neutral path is taken, as without the feature. `mem:` and
//! `nats:` take it under tokio too: their calls and requests are completed
//! by someone else, whose completion wakes the task directly.

use std::future::poll_fn;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::core::error::{Error, Result};
use crate::core::wait::Deadline;
use crate::transport::reactor::{Reactor, Registry};
use crate::transport::{Call, ClientConn, Incoming, ServerTransport};

/// One task's turn at a reactor: its token there, left when dropped (so a
/// leader that finishes or is cancelled hands the watching on).
struct Turn {
    reactor: Arc<Reactor>,
    token: Option<u64>,
    round: u32,
}

impl Turn {
    fn new(reactor: Arc<Reactor>) -> Turn {
        Turn { reactor, token: None, round: 0 }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.reactor.leave(self.token.take());
    }
}

/// The reactor of the runtime polling now for a client connection `conn`.
pub(crate) fn client_reactor(registry: &Registry, conn: &Arc<dyn ClientConn>) -> Option<Arc<Reactor>> {
    registry.current(|| {
        let fd = conn.fd()?.as_raw_fd();
        // The reactor keeps the connection, so the descriptor, alive.
        let owner: Box<dyn Send + Sync> = Box::new(conn.clone());
        Ok((fd, Some(owner)))
    })
}

/// Sends `data` with `try_send` on `reactor`'s runtime: when the transport
/// has no room, waits for the descriptor to report it (making progress,
/// which flushes what waits to be written) and tries again.
pub(crate) async fn send(
    name: &Arc<str>,
    reactor: Arc<Reactor>,
    conn: &Arc<dyn ClientConn>,
    data: &[u8],
) -> Result<Call> {
    let mut turn = Turn::new(reactor);
    poll_fn(|cx| loop {
        match conn.clone().try_send(data, None) {
            Ok(Some(call)) => return Poll::Ready(Ok(call)),
            Ok(None) => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
        let turn = &mut turn;
        match turn.reactor.poll_wait(&mut turn.token, true, cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::from_io(name, e))),
            Poll::Ready(Ok(guard)) => {
                let look = !conn.progress_edge();
                if turn.reactor.settle(guard, look, &mut turn.round, cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
    })
    .await
}

/// A call's wait under tokio, kept in its `Pending`.
pub(crate) struct TokioWait {
    /// The connection's reactors (shared with the client).
    registry: Arc<Registry>,
    /// The turn at the reactor of the runtime that polled last.
    turn: Option<Turn>,
}

impl TokioWait {
    pub(crate) fn new(registry: Arc<Registry>) -> TokioWait {
        TokioWait { registry, turn: None }
    }

    /// Polls `call` on the reactor of the runtime polling now; `None` if
    /// there is none (then the caller takes the executor-neutral path).
    pub(crate) fn poll(&mut self, call: &Call, cx: &mut Context<'_>) -> Option<Poll<()>> {
        if !self.turn.as_ref().is_some_and(|turn| turn.reactor.is_current()) {
            // First poll, or polled by another runtime since.
            self.turn = None;
            self.turn = Some(Turn::new(client_reactor(&self.registry, &call.conn)?));
        }
        let step = {
            let turn = self.turn.as_mut()?;
            loop {
                // The slot wakes this task when the call completes — by the
                // progress of whichever task leads, or by another thread.
                if call.slot.poll_ready(cx).is_ready() {
                    break Poll::Ready(true);
                }
                match turn.reactor.poll_wait(&mut turn.token, false, cx) {
                    Poll::Pending => {
                        // A lone call about to wait: over `shm:` the reply
                        // may be a short spin away (the core spins only
                        // where that pays, within a budget); others: no-op.
                        if turn.reactor.is_alone(turn.token) && call.conn.progress_spin() {
                            continue;
                        }
                        break Poll::Pending;
                    }
                    // The runtime shuts down: no more readiness from it.
                    Poll::Ready(Err(_)) => break Poll::Ready(false),
                    Poll::Ready(Ok(guard)) => {
                        let look = !call.conn.progress_edge();
                        if turn.reactor.settle(guard, look, &mut turn.round, cx).is_pending() {
                            break Poll::Pending;
                        }
                    }
                }
            }
        };
        match step {
            Poll::Pending => Some(Poll::Pending),
            Poll::Ready(done) => {
                self.turn = None;
                done.then_some(Poll::Ready(()))
            }
        }
    }

    /// The call is over (answered, abandoned): another task leads.
    pub(crate) fn leave(&mut self) {
        self.turn = None;
    }
}

/// The reactor of the runtime polling now for a server's descriptor.
pub(crate) fn server_reactor(registry: &Registry, transport: &dyn ServerTransport) -> Option<Arc<Reactor>> {
    // The server drops its registry before its transport (field order).
    registry.current(|| Ok((transport.fd().as_raw_fd(), None)))
}

/// A `recv_async` on `reactor`'s runtime: `try_recv` first, then on every
/// readiness of the server's descriptor.
pub(crate) async fn recv(name: &Arc<str>, reactor: Arc<Reactor>, transport: &dyn ServerTransport) -> Result<Incoming> {
    let mut turn = Turn::new(reactor);
    poll_fn(|cx| loop {
        match transport.recv(Deadline::Now) {
            Err(Error::Timeout { .. }) => {}
            other => return Poll::Ready(other),
        }
        let turn = &mut turn;
        match turn.reactor.poll_wait(&mut turn.token, false, cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::from_io(name, e))),
            Poll::Ready(Ok(guard)) => match transport.recv(Deadline::Now) {
                Err(Error::Timeout { .. }) => {
                    if turn.reactor.settle(guard, true, &mut turn.round, cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                // Readiness is left set: the next receiver looks first.
                other => return Poll::Ready(other),
            },
        }
    })
    .await
}
