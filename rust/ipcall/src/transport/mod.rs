//! The transports behind the one public API, and the seams they fill.
//!
//! - [`mem`]: `mem:` — in-process queues in a process-wide registry.
//! - [`unix`]: `unix:` — Unix domain stream sockets (path or abstract).
//! - [`pipe`]: `pipe:` — named pipes: FIFO set-up, then the stream layer.
//! - [`shm`]: `shm:` — memfd rings set up over a `unix:` rendezvous.
//! - [`stream`]: the connection layer `unix:` and `pipe:` share
//!   (handshake, frames, calls matched by id, one epoll per server).
//! - [`access`]: who may connect (same user, a group, listed uids).
//! - [`backoff`]: pausing an accept loop that is out of descriptors or memory.
//! - [`calls`]: the table of calls in flight on one client connection.
//! - [`evented`]: the client's pollable descriptor for event loops.
//! - [`held`]: a server connection's cancellation flags of requests not
//!   yet answered.
//! - [`pool`]: worker pools on one name (`unix:`, `pipe:`, `shm:`): a
//!   member's endpoint, and the client connection over all members.
//! - [`sweep`]: removing the names of dead servers from the runtime directory.
//! - [`trace`]: `tracing` events at connect, accept, refusal and drop (feature `tracing`).
//! - [`watch`]: a server's async waiters, the thread that wakes them, and
//!   waiting for and stopping its accepting thread.
//! - [`nats`]: `nats:` — request/reply over a NATS server or cluster (feature `nats`).
//! - `reactor`: async waiting on tokio's own reactor (feature `tokio`).
//!
//! A transport provides a [`ServerTransport`] (what a server drives), a
//! [`ClientConn`] (what a client and its calls drive) and a [`Responder`]
//! (what a request is answered through). It hands out neutral values — an
//! [`Incoming`] request, a [`Call`] in flight — that only `api/` turns into
//! public types. Calls end by completing a [`Slot`].

pub(crate) mod access;
pub(crate) mod backoff;
pub(crate) mod calls;
pub(crate) mod evented;
pub(crate) mod held;
pub(crate) mod id_map;
pub(crate) mod mem;
pub(crate) mod nats;
pub(crate) mod pipe;
pub(crate) mod pool;
#[cfg(feature = "tokio")]
pub(crate) mod reactor;
// Under `--cfg ipcall_loom` only the ring's model checks are built: loom's
// atomics cannot live in shared memory.
#[cfg(ipcall_loom)]
#[path = "shm/ring.rs"]
pub(crate) mod ring;
#[cfg(not(ipcall_loom))]
pub(crate) mod shm;
pub(crate) mod stream;
pub(crate) mod sweep;
pub(crate) mod trace;
pub(crate) mod unix;
pub(crate) mod watch;

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::core::cancel::{CancelRef, FlagSource, Source};
use crate::core::error::{Error, Result};
use crate::core::name::{Kind, Name};
use crate::core::options::{ClientOptions, ServerOptions};
use crate::core::peer::Peer;
use crate::core::slot::Slot;
use crate::core::stats::Counters;
use crate::core::wait::Deadline;

/// A request as a transport hands it over: its bytes, its sender and the
/// right to answer it. Dropped unanswered, it answers `NoReply`, so no path
/// (a closed server, a panic, a dropped public `Request`) leaves a caller
/// waiting.
pub(crate) struct Incoming {
    /// The request's bytes (may be taken out by the API).
    pub(crate) data: Vec<u8>,
    /// Who sent it.
    pub(crate) peer: Peer,
    /// The sender's connection name, where the transport tells one (`nats:`).
    pub(crate) peer_name: Option<Box<str>>,
    /// When the caller stops waiting, in this process's clock: `Some` only
    /// if the caller sent its timeout along (see [`request_deadline`]).
    pub(crate) deadline: Option<std::time::Instant>,
    /// The request's cancellation flag, fired when its caller gives up;
    /// `None` where the transport or the peer cannot tell (a peer of the
    /// older protocol). Retired when the request is answered.
    pub(crate) cancel: Option<CancelRef>,
    /// `None` once answered. Invariant: `Some` from `new` until `answer`
    /// or drop takes it, so the call is answered exactly once.
    responder: Option<Arc<dyn Responder>>,
    /// The call's id on the responder's connection.
    id: u64,
    /// Largest answer the caller accepts.
    reply_max: u32,
}

impl Incoming {
    pub(crate) fn new(data: Vec<u8>, peer: Peer, responder: Arc<dyn Responder>, id: u64, reply_max: u32) -> Incoming {
        Incoming {
            data,
            peer,
            peer_name: None,
            deadline: None,
            cancel: None,
            responder: Some(responder),
            id,
            reply_max,
        }
    }

    /// Answers the call (once; later answers are ignored). An answer over
    /// the caller's limit is refused with `TooLarge` before anything is
    /// sent, and the request then answers `NoReply` when dropped.
    pub(crate) fn answer(&mut self, answer: Answer<'_>) -> Result<()> {
        let len = match answer {
            Answer::Reply(ref d) => d.as_slice().len(),
            Answer::Fail(d) | Answer::Control(d) => d.len(),
            Answer::NoReply => 0,
        };
        self.check(len)?;
        match self.responder.take() {
            Some(responder) => {
                self.retire_cancel();
                responder.answer(self.id, answer)
            }
            None => Ok(()),
        }
    }

    /// What this request's lazy cancellation flag is made by: its
    /// connection, while it is unanswered.
    pub(crate) fn flag_source(&self) -> Source<'_> {
        self.responder.as_deref().and_then(|r| r.flag_source())
    }

    /// The request is answered: nobody waits for its cancel any more.
    fn retire_cancel(&self) {
        if let Some(cancel) = &self.cancel {
            cancel.retire();
        }
    }
}

impl Incoming {
    /// `TooLarge` if an answer of `len` bytes is over the caller's limit.
    pub(crate) fn check(&self, len: usize) -> Result<()> {
        if len as u64 > u64::from(self.reply_max) {
            return Err(Error::TooLarge { size: len as u64, max: u64::from(self.reply_max) });
        }
        Ok(())
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if let Some(responder) = self.responder.take() {
            self.retire_cancel();
            let _ = responder.answer(self.id, Answer::NoReply);
        }
    }
}

/// The longest remaining time a request's deadline carries: a caller's
/// longer timeout (a "forever" one, or an absurd value from the wire) is
/// clamped to it, so that every face can represent the deadline (docs/DECISIONS.md).
pub(crate) const MAX_REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// The deadline of a request received now whose caller had `remaining`
/// time left when it sent it: the receiver's own clock plus `remaining`
/// (clamped to [`MAX_REQUEST_DEADLINE`]), so no clock is shared between
/// hosts — the time in transit only makes the deadline later by that much.
pub(crate) fn request_deadline(remaining: std::time::Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(remaining.min(MAX_REQUEST_DEADLINE)).unwrap_or(now)
}

/// A timeout as the wire carries it: nanoseconds, saturated at `u64::MAX`
/// (585 years: the receiver clamps it further).
pub(crate) fn timeout_ns(timeout: std::time::Duration) -> u64 {
    u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX)
}

/// A call in flight as a transport hands it over: the connection that
/// carries it, its id there, and the slot its outcome lands in.
pub(crate) struct Call {
    pub(crate) conn: Arc<dyn ClientConn>,
    pub(crate) id: u64,
    pub(crate) slot: Arc<Slot>,
    /// What sending it again takes, should its server close without taking
    /// it (`Outcome::NotTaken`): only a pool's calls have it (the request's
    /// bytes, kept until the call ends; see [`pool::Resend`]).
    pub(crate) resend: Option<Box<pool::Resend>>,
}

impl Call {
    /// A call that cannot be sent again (every transport's own).
    pub(crate) fn new(conn: Arc<dyn ClientConn>, id: u64, slot: Arc<Slot>) -> Call {
        Call { conn, id, slot, resend: None }
    }
}

/// What [`ClientConn::try_call_here`] did with a request.
pub(crate) enum Tried {
    /// No room now: nothing was sent.
    NoRoom,
    /// Sent; the answer was not there yet. Wait for it as for a
    /// `try_send`'s call: the slot is armed for the descriptor.
    Sent(u64, Arc<Slot>),
    /// Sent and answered: the outcome, which is in no slot (the call's
    /// entry is out of the table, so nobody else completes it).
    Answered(crate::core::slot::Outcome),
}

/// How a wire client's wait for one call ended (`unix:`, `pipe:`, `shm:`).
pub(crate) enum Waited {
    /// The call's slot is completed.
    Ready,
    /// The caller read its own answer as the holder of the reading role;
    /// it is in no slot (nobody else can complete it: its entry is out).
    Own(crate::core::slot::Outcome),
    /// The deadline passed first.
    TimedOut,
}

impl Waited {
    pub(crate) fn ready_if(ready: bool) -> Waited {
        if ready {
            Waited::Ready
        } else {
            Waited::TimedOut
        }
    }

    /// [`ClientConn::wait`]'s answer: an own answer is stored in `slot`.
    pub(crate) fn into_ready(self, slot: &Slot) -> bool {
        match self {
            Waited::Ready => true,
            Waited::Own(outcome) => slot.complete(outcome) || slot.is_ready(),
            Waited::TimedOut => false,
        }
    }

    /// [`ClientConn::wait_take`]'s answer: an own answer goes straight to
    /// the caller, without the slot's claim, publish and take.
    pub(crate) fn into_outcome(self, slot: &Slot) -> Option<Option<crate::core::slot::Outcome>> {
        match self {
            Waited::Ready => Some(slot.take()),
            Waited::Own(outcome) => Some(Some(outcome)),
            Waited::TimedOut => None,
        }
    }
}

/// The server side of a transport.
pub(crate) trait ServerTransport: Send + Sync {
    /// The next request; `Timeout` at the deadline, `Closed` when no request
    /// can ever come again.
    fn recv(&self, deadline: Deadline) -> Result<Incoming>;
    /// Like `recv`, but shows the request's bytes to `in_place` — in the
    /// transport's own buffer when it can (shm: in the ring) — and returns
    /// the request without them.
    fn recv_with(&self, deadline: Deadline, in_place: &mut dyn FnMut(&[u8])) -> Result<Incoming> {
        let mut request = self.recv(deadline)?;
        let data = std::mem::take(&mut request.data);
        in_place(&data);
        Ok(request)
    }
    /// `recv(Deadline::Now)` for an event loop about to sleep after
    /// answering: a transport whose server spins (`shm:`) may spin briefly
    /// for the next request first; never sleeps. The default never spins.
    fn try_recv_spin(&self) -> Result<Incoming> {
        self.recv(Deadline::Now)
    }
    /// Async form of `recv`.
    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<Incoming>>;
    /// True if `poll_recv` waits through the descriptor (a watcher thread):
    /// under tokio the runtime's reactor watches it instead. The default
    /// (`mem:`, `nats:`) wakes async receivers from its queue, no thread.
    // Asked only with the `tokio` feature.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    fn waits_on_fd(&self) -> bool {
        false
    }
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
    fn send(self: Arc<Self>, data: &[u8]) -> Result<Call>;
    /// Sends a control request (`core::stats`: ping, stats), which the
    /// server's transport answers itself; its answer completes the call as
    /// a reply. `Protocol` if the server did not announce control requests.
    fn control(self: Arc<Self>, request: &[u8]) -> Result<Call>;
    /// Like `send`, for a caller that will wait at most `timeout` (a
    /// transport that can tell the server, as `nats:` does, sends it along).
    fn send_timeout(self: Arc<Self>, data: &[u8], _timeout: std::time::Duration) -> Result<Call> {
        self.send(data)
    }
    /// Like `send` (or `send_timeout` with a timeout), for a caller that
    /// waits for the answer itself at once (`Client::call`): nothing is
    /// announced for an event loop, whose descriptor would otherwise be
    /// made readable for this answer (over `shm:`, by the server: a wake-up
    /// and a write a call). The default is `send`'s.
    fn send_to_wait(self: Arc<Self>, data: &[u8], timeout: Option<std::time::Duration>) -> Result<Call> {
        match timeout {
            None => self.send(data),
            Some(timeout) => self.send_timeout(data, timeout),
        }
    }
    /// Like `send_to_wait`, borrowing the connection (no clone of it, and
    /// no `Call`, per call): the call's id and slot, for a caller that
    /// waits on them with [`wait`](Self::wait) at once and
    /// [`abandon`](Self::abandon)s them if it gives up. `None`: this
    /// transport sends only through `send_to_wait` (the default; a pool's
    /// call, which may be sent again to another member, needs a `Call`).
    fn send_here(&self, _data: &[u8], _timeout: Option<std::time::Duration>) -> Option<Result<(u64, Arc<Slot>)>> {
        None
    }
    /// Like `send` (or `send_timeout` with a timeout), taking the buffer:
    /// the default copies as `send` does; `mem:` and `nats:` keep it.
    fn send_owned(self: Arc<Self>, data: Vec<u8>, timeout: Option<std::time::Duration>) -> Result<Call> {
        match timeout {
            None => self.send(&data),
            Some(timeout) => self.send_timeout(&data, timeout),
        }
    }
    /// Blocks until `slot` (call `id`) completes or the deadline passes.
    /// Transports that read the wire in the caller's thread do so here.
    fn wait(&self, _id: u64, slot: &Slot, deadline: Deadline) -> bool {
        slot.wait_ready(deadline)
    }
    /// `wait`, then the outcome: `None` if the deadline passed first.
    /// A transport whose waiting caller may read its own answer hands it
    /// over without putting it in the slot first (`Some(None)`, a ready
    /// slot found empty, does not happen).
    fn wait_take(&self, id: u64, slot: &Slot, deadline: Deadline) -> Option<Option<crate::core::slot::Outcome>> {
        self.wait(id, slot, deadline).then(|| slot.take())
    }
    /// Async form of `wait`.
    fn poll(&self, _id: u64, slot: &Slot, cx: &mut Context<'_>) -> Poll<()> {
        slot.poll_ready(cx)
    }
    /// The caller gave up on call `id`; a late answer must be discarded.
    fn abandon(&self, _id: u64, slot: &Slot) {
        slot.abandon();
    }
    /// The connection's notifier (see [`evented`]), if the default
    /// `fd`/`progress` below serve it: transports whose calls are completed
    /// by someone else (`mem:`, `nats:`) need nothing more.
    fn notifier(&self) -> &evented::Notifier;
    /// Readable when some call may have completed (level-triggered); made
    /// on first use. The default is the notifier's eventfd.
    fn fd(&self) -> std::io::Result<BorrowedFd<'_>> {
        self.notifier().get_or_make()
    }
    /// Never blocks: reads what the connection has, completes the calls it
    /// answers, flushes what waits to be written, and clears the
    /// descriptor's readiness.
    fn progress(&self) {
        self.notifier().clear();
    }
    /// True once `fd` was asked for: then a `try_wait` only looks at its
    /// slot (the event loop's `progress` does the reading).
    fn is_evented(&self) -> bool {
        self.notifier().is_armed()
    }
    /// Sends without blocking: `Ok(None)` if there is no room now and
    /// nothing was sent. With `timeout`, like `send_timeout` (the request
    /// carries its deadline where the peer takes one). The default suits
    /// transports whose send never blocks (`mem:`'s queue and `nats:`'s
    /// command channel are unbounded).
    fn try_send(self: Arc<Self>, data: &[u8], timeout: Option<std::time::Duration>) -> Result<Option<Call>> {
        match timeout {
            None => self.send(data),
            Some(timeout) => self.send_timeout(data, timeout),
        }
        .map(Some)
    }
    /// For [`Client::try_call`] (and, with `spin`,
    /// [`Client::try_call_spin`]): sends without blocking and looks for
    /// the answer at once, taking it as the blocking `call` does (not
    /// through the call's slot nor the descriptor) if it is there; with
    /// `spin`, after a brief spin under [`progress_spin`](Self::progress_spin)'s
    /// policy. `None`: this transport has no such path (the default), and
    /// the caller sends with `try_send` and looks with `try_wait`.
    ///
    /// [`Client::try_call`]: crate::Client::try_call
    /// [`Client::try_call_spin`]: crate::Client::try_call_spin
    fn try_call_here(&self, _data: &[u8], _spin: bool) -> Option<Result<Tried>> {
        None
    }
    /// True if replies are read by whoever calls `progress` or waits (a
    /// wire: `unix:`, `pipe:`, `shm:`), so that under tokio the runtime's
    /// reactor watches `fd` and its tasks make progress. The default
    /// (`mem:`, `nats:`): calls are completed by someone else, whose
    /// completion wakes the task, with no thread of ours.
    // Asked only with the `tokio` feature.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    fn needs_progress(&self) -> bool {
        false
    }
    /// `progress`, for an edge-triggered watcher (tokio's reactor): true
    /// if afterwards the descriptor is readable only for what happens from
    /// now on, so its readiness may be cleared without a second look;
    /// false if this step may have left it readable (another thread held
    /// the reading role; `shm:` leaves a hang-up look to the next step).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    fn progress_edge(&self) -> bool {
        self.progress();
        true
    }
    /// An event loop about to sleep with calls pending: spins briefly for
    /// a reply where that may pay, then makes progress; true if it caught
    /// one. Never sleeps. The default (every transport but `shm:`) never
    /// spins: their replies come through the descriptor.
    fn progress_spin(&self) -> bool {
        false
    }
    /// How many calls wait for their answer on this connection: a pool
    /// sends to the member with the fewest. The default (transports no
    /// pool has) says none.
    fn in_flight(&self) -> usize {
        0
    }
    /// True once no new call can go through this connection (it died,
    /// its server closed, or a request broke off mid-write): a pool sends
    /// elsewhere. The calls already sent may still be answered.
    fn is_closed(&self) -> bool {
        false
    }
}

/// How a request's answer travels back.
#[derive(Debug)]
pub(crate) enum Answer<'a> {
    Reply(Body<'a>),
    Fail(&'a [u8]),
    NoReply,
    /// The transport's own answer to a control request (ping, stats):
    /// never from the application (see `core::stats`).
    Control(&'a [u8]),
}

/// Bytes to send, borrowed from the caller or handed over with their
/// buffer. A transport that keeps bytes as they are (`mem:` queues them,
/// `nats:` gives them to its socket writer) takes an owned buffer without
/// copying it; the others write either form from the slice.
#[derive(Debug)]
pub(crate) enum Body<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl Body<'_> {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Body::Borrowed(data) => data,
            Body::Owned(data) => data,
        }
    }

    /// The bytes in a buffer of their own: the owned one, or a copy.
    pub(crate) fn into_vec(self) -> Vec<u8> {
        match self {
            Body::Borrowed(data) => data.to_vec(),
            Body::Owned(data) => data,
        }
    }
}

/// The answering end of a request (call `id` on some connection).
pub(crate) trait Responder: Send + Sync {
    fn answer(&self, id: u64, answer: Answer<'_>) -> Result<()>;

    /// Where a `CancelRef::Lazy` of its requests makes its flag: the
    /// connection itself, for the wire transports that hand out lazy flags.
    fn flag_source(&self) -> Option<&dyn FlagSource> {
        None
    }
}

/// The error of a control request to a server that does not take them.
pub(crate) fn no_control(name: &std::sync::Arc<str>) -> Error {
    Error::Protocol {
        name: name.clone(),
        reason: "the server does not answer control requests (ping, stats): it did not announce them (an older ipcall)"
            .into(),
    }
}

/// Binds `name` with the transport its kind selects; the transport
/// counts connections and violations in `counters` and answers control
/// requests from them.
pub(crate) fn bind(name: &Name, options: &ServerOptions, counters: &Arc<Counters>) -> Result<Box<dyn ServerTransport>> {
    let bound = bind_by_kind(name, options, counters);
    trace::bound(name, &bound);
    bound
}

/// [`bind`] with the transport `name`'s kind selects.
fn bind_by_kind(name: &Name, options: &ServerOptions, counters: &Arc<Counters>) -> Result<Box<dyn ServerTransport>> {
    let counters = counters.clone();
    match name.kind() {
        Kind::Mem => mem::bind(name, options, counters),
        Kind::Unix => unix::bind(name, options, counters),
        Kind::Pipe => pipe::bind(name, options, counters),
        #[cfg(not(ipcall_loom))]
        Kind::Shm => shm::bind(name, options, counters),
        #[cfg(feature = "nats")]
        Kind::Nats => nats::bind(name, options, counters),
        // Reached only in a build without some transport (the loom model
        // check builds no shm:).
        #[allow(unreachable_patterns)]
        _ => Err(unavailable(name)),
    }
}

/// Connects to `name` with the transport its kind selects; where no
/// server is bound to a local name, to the worker pool of that name if it
/// has live members ([`pool`]). A plain name pays nothing for pools: the
/// pool's directory is read only after the plain connect found no server.
pub(crate) fn connect(name: &Name, options: &ClientOptions) -> Result<Arc<dyn ClientConn>> {
    let connected = match connect_by_kind(name, options) {
        Err(e @ Error::NotFound { .. }) if pool::is_pool_kind(name.kind()) => {
            pool::connect(name, options, e).map(|pool| pool as Arc<dyn ClientConn>)
        }
        other => other,
    };
    trace::connected(name, &connected);
    connected
}

/// Connects to exactly the server bound at `name`, never to a pool (a
/// pool's members: their endpoints are plain names).
pub(crate) fn connect_plain(name: &Name, options: &ClientOptions) -> Result<Arc<dyn ClientConn>> {
    connect_by_kind(name, options)
}

/// [`connect`] with the transport `name`'s kind selects.
fn connect_by_kind(name: &Name, options: &ClientOptions) -> Result<Arc<dyn ClientConn>> {
    match name.kind() {
        Kind::Mem => mem::connect(name, options),
        Kind::Unix => unix::connect(name, options),
        Kind::Pipe => pipe::connect(name, options),
        #[cfg(not(ipcall_loom))]
        Kind::Shm => shm::connect(name, options),
        #[cfg(feature = "nats")]
        Kind::Nats => nats::connect(name, options),
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
