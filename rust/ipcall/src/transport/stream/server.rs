//! The server end of stream connections.
//!
//! **One wake-up point.** All connections of a server are registered in one
//! epoll instance, which is also the server's pollable descriptor (together
//! with an eventfd that is readable while decoded requests are queued or the
//! server is finished).
//!
//! **No thread hop.** There is no I/O thread on the request path: a thread in
//! `recv` waits on the epoll descriptor itself, reads whichever connection is
//! readable, decodes its frames and takes the first request (queueing any
//! others). A `Request` holds its connection (`Arc<ServerConn>`), so `reply`
//! writes the answer from whatever thread holds it — also after the server
//! is gone. With exactly one connection and one receiving thread, `recv`
//! blocks in a plain read of that connection instead (see `read_directly`).
//!
//! **Accepting.** One thread per server accepts connections, checks the
//! peer's credentials, sends the server's hello and enforces the handshake
//! timeout, so that connecting never waits for a thread in `recv`.
//!
//! **Several receiving threads.** Connections are registered level-triggered;
//! the thread that got a connection's event reads it under its `reader`
//! lock. A thread that finds that lock taken disarms the connection in epoll
//! (so it does not spin on the same readiness), and the reading thread re-arms
//! it when done; both happen under the state lock, so no re-arm is lost (and
//! the reading thread lets go of the reader in the same look at the state
//! that publishes what it read).
//!
//! **Isolation.** A connection that breaks the protocol, stalls in its
//! handshake, or hangs up is dropped alone; the others keep being served.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::core::error::{Error, ErrorKind, Result};
use crate::core::frame::{self, Event, Frame, FrameKind, Role};
use crate::core::options::ServerOptions;
use crate::core::stats::{self, Counters};
use crate::core::wait::{lock, Deadline};
use crate::sys::epoll::{Epoll, READABLE};
use crate::sys::EventFd;
use crate::transport::access::Access;
use crate::transport::backoff::AcceptBackoff;
use crate::transport::stream::conn::{deliver, Batch, ConnService, Decoded, ServerConn};
use crate::transport::stream::flush::{Flusher, Outbox};
use crate::transport::stream::{readable_bytes, Acceptor, FrameReader, ReadError};
use crate::transport::trace::{self, ConnTrace, DropReason};
use crate::transport::watch::{stop_accepting, wait_accepted, Watch, Watched};
use crate::transport::{Answer, Incoming, Responder, ServerTransport};

// The accepting thread: new connections, handshake and frame deadlines.
#[path = "accept.rs"]
mod accept;
// Reading one connection without epoll: the single-connection fast paths.
#[path = "direct.rs"]
mod direct;

/// epoll token of the wake-up eventfd.
const WAKE: u64 = 0;
/// Tokens of connections start here.
const FIRST_CONN: u64 = 1;
/// How long the single-connection fast path blocks in one read before it
/// looks whether a second connection or receiving thread appeared.
const DIRECT_SLICE: Duration = Duration::from_millis(20);
/// How long no `recv` must have begun before the accepting thread reads
/// the connections itself, to answer control requests (ping, stats) of a
/// server whose application is busy or not receiving.
const IDLE_TICK: Duration = Duration::from_millis(100);

/// What the receiving threads, the accepting thread and `close` share.
/// Invariant: every connection in `conns` is registered in the epoll under
/// its token; one removed from `conns` is deregistered at the same time.
struct State {
    /// Live connections by epoll token.
    conns: HashMap<u64, Arc<ServerConn>>,
    /// The token of the next connection (never reused).
    next_token: u64,
    /// Decoded requests no `recv` has taken yet, oldest first.
    incoming: VecDeque<Decoded>,
    /// Connections still in their handshake, with their deadlines.
    handshakes: Vec<(u64, Instant)>,
    /// `None` once closed, or once a one-shot server has its client.
    acceptor: Option<Box<dyn Acceptor>>,
    /// Connections accepted so far (a one-shot server takes one).
    accepted: usize,
    closed: bool,
    /// The wake eventfd is set (avoids redundant system calls).
    wake_set: bool,
    /// The sole connection while the fast path has taken it out of epoll
    /// (see `read_directly`); it is put back before anyone waits on epoll.
    direct: Option<u64>,
}

struct Shared {
    name: Arc<str>,
    /// The server's statistics: connections, violations, and what control
    /// requests are answered from.
    counters: Arc<Counters>,
    /// The epoll instance: every connection, and `wake`. Also the server's
    /// pollable descriptor.
    epoll: Epoll,
    /// Readable while requests are queued in `incoming` or the server is
    /// finished, so pollers and other receiving threads wake.
    wake: EventFd,
    /// Set once by `close`: ends the accepting thread.
    stop: EventFd,
    /// Signalled when a connection is accepted (for `accept_timeout`).
    accepted_cond: Condvar,
    /// Threads inside a blocking or timed `recv`.
    receivers: AtomicUsize,
    /// `recv`s left to make through epoll before the single-connection
    /// direct read is tried again (`direct::DirectCheck`).
    direct_pause: std::sync::atomic::AtomicU32,
    /// `State::direct`'s token, or `u64::MAX` for none: written with it,
    /// under the state lock, and read without it by the fast path, which
    /// locks the state only when its connection is not out of epoll yet
    /// (a stale read only costs that lock, or leaves the connection in
    /// epoll for one read, as when another thread receives too).
    direct_token: AtomicU64,
    /// `recv`s begun (any form): the accepting thread answers control
    /// requests only once none began for a whole [`IDLE_TICK`].
    recvs: AtomicU64,
    /// The accepting thread watches the connections (idle server); a
    /// `recv` that begins then rings `nudge` so that it stops.
    helping: AtomicBool,
    /// Wakes the accepting thread out of its idle watch, or out of a sleep
    /// without its tick (`untimed`).
    nudge: EventFd,
    /// The accepting thread sleeps without its tick: a blocking `recv` has
    /// been under way for a whole tick, and it reads every connection
    /// itself. The last receiver to leave rings `nudge` (SeqCst with
    /// `receivers`: the thread stores this, then loads `receivers`; a
    /// receiver decrements `receivers`, then loads this), and the ticks
    /// resume.
    untimed: AtomicBool,
    /// Someone took the pollable descriptor or received asynchronously: every
    /// connection must then stay registered in epoll, so that it shows every
    /// request.
    polled: AtomicBool,
    local_max: u32,
    /// Writes replies that had to wait for their clients.
    flusher: Arc<Flusher>,
    /// Most reply bytes that may wait on one connection.
    reply_budget: u64,
    /// Most connections served at once.
    max_connections: usize,
    /// How long a started request frame may take to arrive whole.
    frame_timeout: Duration,
    one_shot: bool,
    handshake_timeout: Duration,
    access: Access,
    state: Mutex<State>,
    /// Async `recv`s waiting for readiness.
    watch: Watch,
}

impl Watched for Shared {
    fn watched(&self) -> (&Watch, BorrowedFd<'_>) {
        (&self.watch, self.epoll.as_fd())
    }
}

/// A stream server (`ServerTransport`).
pub(crate) struct StreamServer {
    shared: Arc<Shared>,
    /// The accepting thread, joined by `close`.
    accepting: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl StreamServer {
    /// A server taking connections from `acceptor`.
    pub(crate) fn new(
        name: Arc<str>,
        acceptor: Box<dyn Acceptor>,
        options: &ServerOptions,
        counters: Arc<Counters>,
    ) -> io::Result<StreamServer> {
        let epoll = Epoll::new()?;
        let wake = EventFd::new()?;
        epoll.add(wake.as_fd(), READABLE, WAKE)?;
        let access = Access::from_options(options);
        let state = State {
            conns: HashMap::new(),
            next_token: FIRST_CONN,
            incoming: VecDeque::new(),
            handshakes: Vec::new(),
            acceptor: Some(acceptor),
            accepted: 0,
            closed: false,
            wake_set: false,
            direct: None,
        };
        let shared = Shared {
            name,
            counters,
            epoll,
            wake,
            stop: EventFd::new()?,
            accepted_cond: Condvar::new(),
            receivers: AtomicUsize::new(0),
            direct_pause: std::sync::atomic::AtomicU32::new(0),
            direct_token: AtomicU64::new(u64::MAX),
            untimed: AtomicBool::new(false),
            recvs: AtomicU64::new(0),
            helping: AtomicBool::new(false),
            nudge: EventFd::new()?,
            polled: AtomicBool::new(false),
            local_max: options.max_message_size,
            flusher: Arc::new(Flusher::new(options.reply_timeout)?),
            reply_budget: options.get_max_queued_reply_bytes(),
            max_connections: options.max_connections,
            frame_timeout: options.frame_timeout,
            one_shot: options.one_shot,
            handshake_timeout: options.handshake_timeout,
            access,
            state: Mutex::new(state),
            watch: Watch::new(),
        };
        let shared = Arc::new(shared);
        let accepting = shared.clone();
        let accepting =
            std::thread::Builder::new().name("ipcall-accept".into()).spawn(move || accepting.accept_loop())?;
        Ok(StreamServer { shared, accepting: Mutex::new(Some(accepting)) })
    }
}

impl ConnService for Shared {
    fn service_now(&self, token: u64) {
        // Nothing is taken here: what it decodes is queued (in order).
        self.service(token, None);
    }
}

impl Shared {
    /// No request can come any more.
    fn finished(&self, state: &State) -> bool {
        state.closed || (self.one_shot && state.accepted > 0 && state.conns.is_empty() && state.incoming.is_empty())
    }

    /// Keeps `wake` readable exactly while requests are queued or the server is finished.
    fn update_wake(&self, state: &mut State) {
        let want = !state.incoming.is_empty() || self.finished(state);
        if want != state.wake_set {
            state.wake_set = want;
            if want {
                self.wake.set();
            } else {
                self.wake.clear();
            }
        }
        if want {
            self.watch.wake_all();
        }
    }

    /// Takes the next queued request, or says why there is none.
    fn take(&self, state: &mut State) -> Option<Result<Incoming>> {
        if state.closed {
            return Some(Err(Error::Closed { name: self.name.clone() }));
        }
        if let Some(incoming) = state.incoming.pop_front() {
            self.update_wake(state);
            return Some(Ok(deliver(incoming)));
        }
        if self.finished(state) {
            return Some(Err(Error::Closed { name: self.name.clone() }));
        }
        None
    }

    /// Drops a connection from the server (it stays open for requests still
    /// holding it, but is shut down so the client sees the end at once):
    /// the requests it still holds are cancelled, those still queued are
    /// forgotten — their caller is gone.
    fn drop_conn(&self, conn: &ServerConn, reason: DropReason) {
        if reason.is_violation() {
            self.counters.error(ErrorKind::Protocol);
        }
        conn.trace.dropped(conn.token, &conn.peer, reason);
        let mut state = lock(&self.state);
        if state.direct == Some(conn.token) {
            self.set_direct(&mut state, None);
        }
        // Not there after `close`, which took every connection: requests
        // the server keeps answering while it closes are not cancelled.
        let dropped = state.conns.remove(&conn.token).is_some();
        if dropped {
            self.counters.connections_closed(1);
            let _ = self.epoll.delete(conn.wire.read_fd());
            // Its requests no `recv` took yet are never delivered, as over
            // `shm:` (whose ring is not read again): nobody waits for them.
            state.incoming.retain(|decoded| decoded.conn.token != conn.token);
        }
        state.handshakes.retain(|(token, _)| *token != conn.token);
        // Never `shutdown`: no server thread blocks writing (replies queue),
        // and the replies already written stay readable for the client.
        conn.wire.hang_up();
        self.update_wake(&mut state);
        drop(state);
        if dropped {
            conn.held.caller_gone();
        }
    }

    /// Answers a control request (ping, stats) on `conn` at once: it never
    /// reaches a `recv`.
    fn answer_control(&self, conn: &ServerConn, frame: &Frame) {
        let answer = stats::answer_control(&self.counters, &frame.payload);
        let _ = conn.answer(frame.id, Answer::Control(&answer));
    }

    /// Reads what connection `token` has to say and publishes its requests
    /// (see [`publish`](Self::publish)): into `taken` if it is `Some` and
    /// empty and nothing is queued, the rest into the queue.
    fn service(&self, token: u64, taken: Option<&mut Option<Incoming>>) {
        let state = lock(&self.state);
        let Some(conn) = state.conns.get(&token).cloned() else { return };
        let mut reader = match conn.reader.try_lock() {
            Ok(reader) => reader,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => {
                // Another thread reads it; stop reporting it until that
                // thread re-arms it, instead of spinning on it.
                if !conn.disarmed.load(Ordering::Relaxed) && self.epoll.modify(conn.wire.read_fd(), 0, token).is_ok() {
                    conn.disarmed.store(true, Ordering::Relaxed);
                }
                return;
            }
        };
        drop(state);
        let mut batch = Batch::default();
        let outcome = loop {
            // Epoll is level-triggered: whatever is left in the socket is
            // reported again, so stop once a request is out and nothing is
            // buffered here (no extra read just to see EAGAIN).
            if !batch.is_empty() && !reader.has_buffered() {
                break Ok(());
            }
            match reader.next(&*conn.wire, Deadline::Now) {
                Ok(Some(Event::Hello(hello))) => {
                    if hello.status != frame::STATUS_OK {
                        break Err(DropReason::Misbehaved("a client's hello with a status other than ok"));
                    }
                    lock(&self.state).handshakes.retain(|(t, _)| *t != token);
                }
                Ok(Some(Event::Frame(f))) => match f.kind {
                    FrameKind::Request => batch.push(Decoded::new(&conn, f, &reader)),
                    FrameKind::Cancel => conn.held.cancel(f.id),
                    FrameKind::ControlRequest => self.answer_control(&conn, &f),
                    // The client sends nothing more: it is gone.
                    _ => break Err(DropReason::ClientLeft),
                },
                Ok(None) => break Ok(()),
                Err(ReadError::Eof) | Err(ReadError::Io(_)) => break Err(DropReason::ClientLeft),
                Err(ReadError::Protocol(e)) => break Err(DropReason::Protocol(e)),
            }
        };
        let outcome = match outcome {
            Ok(()) if conn.frame_overdue(reader.in_frame(), self.frame_timeout) => Err(DropReason::FrameTimeout),
            other => other,
        };
        self.publish_and_release(batch, taken, &conn, reader);
        if let Err(reason) = outcome {
            // Hung up, or broke the protocol: only this connection goes.
            self.drop_conn(&conn, reason);
        }
    }

    /// One turn of the event loop: waits on epoll until `deadline` (or the
    /// next handshake deadline) and handles what it reports. Decoded
    /// requests are published: the first into `taken` if it is `Some` (a
    /// `recv`, which then returns it; also when this fails), the others
    /// queued.
    fn turn(&self, deadline: Deadline, mut taken: Option<&mut Option<Incoming>>) -> Result<()> {
        let wait = deadline;
        self.epoll
            .wait(wait, |token| {
                if token != WAKE {
                    self.service(token, taken.as_deref_mut());
                }
            })
            .map_err(|source| Error::Io { name: self.name.clone(), source })?;
        Ok(())
    }

    /// Publishes requests just decoded from one connection, while its
    /// reader is still held: the first is taken (delivered into `taken`)
    /// if `taken` is `Some` and empty and nothing is queued, the rest are
    /// queued; after `close` they are dropped (the close frame tells their
    /// callers they were never taken).
    ///
    /// Under the reader, so that a connection's requests are taken in id
    /// order: a thread that decoded the next ones cannot publish before
    /// these (the `close` frame's "taken up to `id`" counts on it, and a
    /// pool sends a call again only when its id is above that).
    ///
    /// Then lets go of `conn`'s reader (see
    /// [`release_locked`](Self::release_locked)), in the same look at the
    /// state.
    fn publish_and_release(
        &self,
        batch: Batch,
        taken: Option<&mut Option<Incoming>>,
        conn: &ServerConn,
        reader: MutexGuard<'_, FrameReader>,
    ) {
        let mut state = lock(&self.state);
        if !batch.is_empty() {
            self.publish(&mut state, batch, taken);
        }
        Self::release_locked(&state, conn, reader, &self.epoll);
    }

    fn publish(&self, state: &mut State, batch: Batch, taken: Option<&mut Option<Incoming>>) {
        if state.closed {
            return;
        }
        let Batch { mut first, rest } = batch;
        if let Some(taken) = taken.filter(|taken| taken.is_none()) {
            if state.incoming.is_empty() {
                // The common case: take the first new request directly,
                // queue only the rest (no wake-up needed when there is no
                // rest).
                *taken = first.take().map(deliver);
            }
        }
        // A chained extend of nothing cost ~170 instructions a request.
        if first.is_some() || !rest.is_empty() {
            state.incoming.extend(first.into_iter().chain(rest));
        }
        self.update_wake(state);
    }

    fn recv(&self, deadline: Deadline) -> Result<Incoming> {
        // SeqCst with the accepting thread's `helping` then `recvs`: either
        // it sees this `recv`, or we see it helping and wake it (its watch
        // may miss a connection the fast path takes out of epoll).
        self.recvs.fetch_add(1, Ordering::SeqCst);
        if self.helping.load(Ordering::SeqCst) {
            self.nudge.set();
        }
        let blocking = deadline != Deadline::Now;
        if blocking {
            self.count_down_direct_pause();
            self.receivers.fetch_add(1, Ordering::SeqCst);
        }
        let result = self.recv_loop(deadline);
        // Loaded before it is swapped: the swap is a locked instruction,
        // and the thread is timed again for most requests.
        if blocking
            && self.receivers.fetch_sub(1, Ordering::SeqCst) == 1
            && self.untimed.load(Ordering::SeqCst)
            && self.untimed.swap(false, Ordering::SeqCst)
        {
            self.nudge.set();
        }
        result
    }

    fn recv_loop(&self, deadline: Deadline) -> Result<Incoming> {
        let mut turned = false;
        loop {
            let sole = {
                let mut state = lock(&self.state);
                if let Some(result) = self.take(&mut state) {
                    return result;
                }
                if turned && deadline.expired() {
                    return Err(Error::Timeout { name: self.name.clone() });
                }
                let sole =
                    self.sole_connection(&state, deadline).or_else(|| self.sole_polled_now(&state, deadline, turned));
                if sole.is_none() {
                    self.restore_direct(&mut state);
                }
                sole
            };
            let mut taken = None;
            let turn = match sole {
                Some(conn) => {
                    taken = self.read_directly(&conn, deadline);
                    Ok(())
                }
                None => self.turn(deadline, Some(&mut taken)),
            };
            // A request taken is returned even if the turn then failed:
            // dropped, it would answer `NoReply`.
            if let Some(incoming) = taken {
                return Ok(incoming);
            }
            turn?;
            turned = true;
        }
    }

    /// Why a read that was not a request (nor nothing) ends a connection.
    fn why_failed(read: std::result::Result<Option<Event>, ReadError>) -> DropReason {
        match read {
            Err(ReadError::Protocol(e)) => DropReason::Protocol(e),
            Ok(Some(Event::Hello(_))) => DropReason::Misbehaved("a client's hello with a status other than ok"),
            // Its close frame (the decoder refuses any other kind from a
            // client), end of stream, or an I/O error: it left.
            _ => DropReason::ClientLeft,
        }
    }

    /// Records the connection the fast path took out of epoll (`None`: none).
    fn set_direct(&self, state: &mut State, token: Option<u64>) {
        state.direct = token;
        self.direct_token.store(token.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Puts the connection the fast path took out of epoll back in.
    fn restore_direct(&self, state: &mut State) {
        if let Some(token) = state.direct {
            self.set_direct(state, None);
            if let Some(conn) = state.conns.get(&token) {
                let _ = self.epoll.add(conn.wire.read_fd(), READABLE, token);
            }
        }
    }

    /// Unlocks a connection's reader and re-arms it in epoll if a thread
    /// disarmed it meanwhile (both under the state lock: no re-arm is lost).
    fn release_locked(_state: &State, conn: &ServerConn, reader: MutexGuard<'_, FrameReader>, epoll: &Epoll) {
        drop(reader);
        if conn.disarmed.load(Ordering::Relaxed) {
            conn.disarmed.store(false, Ordering::Relaxed);
            let _ = epoll.modify(conn.wire.read_fd(), READABLE, conn.token);
        }
    }
}

impl ServerTransport for StreamServer {
    fn recv(&self, deadline: Deadline) -> Result<Incoming> {
        self.shared.recv(deadline)
    }

    fn waits_on_fd(&self) -> bool {
        true
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<Incoming>> {
        let shared = &self.shared;
        // Async receiving waits on the epoll descriptor (in the watcher), so
        // from now on every connection stays registered there.
        if !shared.polled.swap(true, Ordering::AcqRel) {
            shared.restore_direct(&mut lock(&shared.state));
        }
        // Anything that arrived before the waker was registered makes the
        // epoll descriptor readable, which the watcher sees: no lost wake-up.
        Watch::poll_recv(shared, cx.waker(), "ipcall-server-watch", &shared.name, shared.recv(Deadline::Now))
    }

    fn accept(&self, deadline: Deadline) -> Result<()> {
        let shared = &self.shared;
        wait_accepted(&shared.state, &shared.accepted_cond, deadline, &shared.name, |state| {
            (state.accepted, state.closed)
        })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        let shared = &self.shared;
        if !shared.polled.swap(true, Ordering::AcqRel) {
            shared.restore_direct(&mut lock(&shared.state));
        }
        shared.epoll.as_fd()
    }

    fn close(&self) {
        let shared = &self.shared;
        let conns: Vec<Arc<ServerConn>> = {
            let mut state = lock(&shared.state);
            if state.closed {
                return;
            }
            state.closed = true;
            if let Some(acceptor) = state.acceptor.take() {
                acceptor.unbind();
            }
            // Requests decoded but never taken: the `close` frames below tell
            // their callers `Disconnected`.
            state.incoming.clear();
            state.handshakes.clear();
            shared.set_direct(&mut state, None);
            for conn in state.conns.values() {
                let _ = shared.epoll.delete(conn.wire.read_fd());
            }
            shared.update_wake(&mut state);
            shared.counters.connections_closed(state.conns.len());
            state.conns.drain().map(|(_, c)| c).collect()
        };
        shared.watch.close();
        stop_accepting(&shared.accepted_cond, &shared.stop, &self.accepting);
        for conn in conns {
            // The server reads nothing more; this also ends a direct read.
            conn.wire.stop_reading();
            // Never blocking: behind any replies still queued for it.
            let last = conn.last_taken.load(Ordering::Acquire);
            let close = frame::encode_header(FrameKind::Close, last, 0);
            conn.send_frame(&[&close]);
        }
    }
}

impl Drop for StreamServer {
    fn drop(&mut self) {
        self.close();
    }
}
