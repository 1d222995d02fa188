//! The transports behind the one public API, and the internal seams they fill.
//!
//! - [`inproc`]: `mem:` — in-process queues in a process-wide registry.
//! - [`unix`]: `unix:` — Unix domain stream sockets (path or abstract).
//! - [`shm`]: `shm:` — memfd rings ([`ring`]) set up over a `unix:` rendezvous.
//! - [`stream`]: the connection layer of the byte-stream transports
//!   (handshake, frames, calls matched by id, one epoll per server).
//! - [`pipe`]: `pipe:` — named pipes: the stream layer over a FIFO pair.
//! - [`fifo`]: `pipe:` connection set-up — server directory, accept FIFO, one FIFO pair per connection.
//!
//! A transport provides a [`ServerTransport`] (what `Server` drives), a
//! [`ClientConn`] (what `Client` and `Pending` drive) and a [`Responder`]
//! (what a `Request` answers through). Calls end by completing a
//! [`Slot`](crate::slot::Slot).

pub(crate) mod backoff;
pub(crate) mod fifo;
pub(crate) mod inproc;
pub(crate) mod pipe;
pub(crate) mod ring;
// Under `--cfg ipcall_loom` the ring uses loom's atomics, which cannot live
// in shared memory: only the ring's model checks are built then.
#[cfg(not(ipcall_loom))]
pub(crate) mod shm;
pub(crate) mod stream;
pub(crate) mod unix;

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::error::{Error, Result};
use crate::name::{Kind, Name};
use crate::options::{ClientOptions, ServerOptions};
use crate::server::Request;
use crate::slot::Slot;
use crate::wait::Deadline;
use crate::Pending;

/// The server side of a transport.
pub(crate) trait ServerTransport: Send + Sync {
    /// The next request; `Timeout` at the deadline, `Closed` when no request
    /// can ever come again.
    fn recv(&self, deadline: Deadline) -> Result<Request>;
    /// Like `recv`, but shows the request's bytes to `in_place` — in the
    /// transport's own buffer when it can (shm: in the ring) — and returns
    /// the request without them.
    fn recv_with(&self, deadline: Deadline, in_place: &mut dyn FnMut(&[u8])) -> Result<Request> {
        let mut request = self.recv(deadline)?;
        let data = request.take_data();
        in_place(&data);
        Ok(request)
    }
    /// Async form of `recv`.
    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<Request>>;
    /// Waits until a client has connected.
    fn accept(&self, deadline: Deadline) -> Result<()>;
    /// Readable when a request may be ready (or the server is finished).
    fn fd(&self) -> BorrowedFd<'_>;
    /// Stops taking requests and unbinds the name; queued requests fail
    /// with `Disconnected`.
    fn close(&self);
}

/// The client side of one connection (shared by all clones of a client).
pub(crate) trait ClientConn: Send + Sync {
    /// Sends a request and returns the pending call.
    fn send(self: Arc<Self>, data: &[u8]) -> Result<Pending>;
    /// Blocks until `slot` (call `id`) completes or the deadline passes.
    /// Transports that read the wire in the caller's thread do so here.
    fn wait(&self, _id: u64, slot: &Slot, deadline: Deadline) -> bool {
        slot.wait_ready(deadline)
    }
    /// Async form of `wait`.
    fn poll(&self, _id: u64, slot: &Slot, cx: &mut Context<'_>) -> Poll<()> {
        slot.poll_ready(cx)
    }
    /// The caller gave up on call `id`; a late answer must be discarded.
    fn abandon(&self, _id: u64, slot: &Slot) {
        slot.abandon();
    }
}

/// How a request's answer travels back.
#[derive(Debug)]
pub(crate) enum Answer<'a> {
    Reply(&'a [u8]),
    Fail(&'a [u8]),
    NoReply,
}

/// The answering end of a request (call `id` on some connection).
pub(crate) trait Responder: Send + Sync {
    fn answer(&self, id: u64, answer: Answer<'_>) -> Result<()>;
}

/// Binds `name` with the transport its kind selects.
pub(crate) fn bind(name: &Name, options: &ServerOptions) -> Result<Box<dyn ServerTransport>> {
    match name.kind() {
        Kind::Mem => inproc::bind(name, options),
        Kind::Unix => unix::bind(name, options),
        Kind::Pipe => pipe::bind(name, options),
        #[cfg(not(ipcall_loom))]
        Kind::Shm => shm::bind(name, options),
        // Reached only in a build without some transport (the loom model
        // check builds no shm:).
        #[allow(unreachable_patterns)]
        _ => Err(unavailable(name)),
    }
}

/// Connects to `name` with the transport its kind selects.
pub(crate) fn connect(name: &Name, options: &ClientOptions) -> Result<Arc<dyn ClientConn>> {
    match name.kind() {
        Kind::Mem => inproc::connect(name, options),
        Kind::Unix => unix::connect(name, options),
        Kind::Pipe => pipe::connect(name, options),
        #[cfg(not(ipcall_loom))]
        Kind::Shm => shm::connect(name, options),
        // Reached only in a build without some transport (the loom model
        // check builds no shm:).
        #[allow(unreachable_patterns)]
        _ => Err(unavailable(name)),
    }
}

fn unavailable(name: &Name) -> Error {
    Error::InvalidName {
        name: name.shared().clone(),
        reason: "this transport is not available in this build of ipcall yet",
    }
}
