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
//! it when done; both happen under the `arm` lock, so no re-arm is lost.
//!
//! **Isolation.** A connection that breaks the protocol, stalls in its
//! handshake, or hangs up is dropped alone; the others keep being served.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::frame::{self, Event, FrameKind, Role};
use crate::options::ServerOptions;
use crate::server::{Peer, Request};
use crate::sys::{self, EventFd};
use crate::transport::backoff::AcceptBackoff;
use crate::transport::stream::{
    poll_timeout_ms, readable_bytes, wait_fd, write_all_blocking, Acceptor, FrameReader, ReadError, Wire,
};
use crate::transport::{Answer, Responder, ServerTransport};
use crate::wait::{wait_until, Deadline};

/// epoll token of the wake-up eventfd.
const WAKE: u64 = 0;
/// Tokens of connections start here.
const FIRST_CONN: u64 = 1;
/// How long the single-connection fast path blocks in one read before it
/// looks whether a second connection or receiving thread appeared.
const DIRECT_SLICE: Duration = Duration::from_millis(20);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent; poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Who may connect (DESIGN §7); shared with `shm:`'s rendezvous.
pub(crate) struct Access {
    own_uid: u32,
    uids: Vec<u32>,
    gids: Vec<u32>,
    any: bool,
}

impl Access {
    /// The rules `options` set: this uid, plus allowed uids/gids, or anyone.
    pub(crate) fn from_options(options: &ServerOptions) -> Access {
        Access {
            own_uid: sys::uid(),
            uids: options.allowed_uids.clone(),
            gids: options.allowed_gids.clone(),
            any: options.allow_any_uid,
        }
    }

    /// Whether `peer` may connect.
    pub(crate) fn allows(&self, peer: &Peer) -> bool {
        match (peer.uid, peer.gid) {
            // The transport cannot tell: its file permissions decide.
            (None, _) => true,
            (Some(uid), gid) => {
                self.any
                    || uid == self.own_uid
                    || self.uids.contains(&uid)
                    || gid.is_some_and(|g| self.gids.contains(&g))
            }
        }
    }
}

/// One client connection. Requests hold it (as their `Responder`), so it
/// lives — and its descriptors stay open — until the server dropped it *and*
/// every request from it was answered.
pub(crate) struct ServerConn {
    /// Its epoll token.
    token: u64,
    wire: Box<dyn Wire>,
    peer: Peer,
    /// Serialises whole frames written by answering threads.
    writer: Mutex<()>,
    /// Held by the one thread reading this connection.
    reader: Mutex<FrameReader>,
    /// True while a thread that met a busy `reader` has disarmed the
    /// connection in epoll; cleared by whoever re-arms it (under this lock).
    arm: Mutex<bool>,
    /// The id of the last request a `recv` took (ids only grow), for the
    /// `close` frame. Written under the server's state lock.
    last_taken: AtomicU64,
}

impl Responder for ServerConn {
    fn answer(&self, id: u64, answer: Answer<'_>) -> Result<()> {
        let (kind, payload) = match answer {
            Answer::Reply(data) => (FrameKind::Reply, data),
            Answer::Fail(data) => (FrameKind::Fail, data),
            Answer::NoReply => (FrameKind::NoReply, &[][..]),
        };
        let header = frame::encode_header(kind, id, payload.len() as u32);
        let _writing = lock(&self.writer);
        self.wire.before_write(payload.len());
        if write_all_blocking(&*self.wire, &[&header, payload]).is_err() {
            // The client is gone (or its connection broke): like a late reply
            // to an abandoned call, the answer is discarded. The connection
            // cannot carry another frame after a partial one.
            self.wire.shutdown();
        }
        Ok(())
    }
}

/// A decoded request waiting for a `recv`. Dropping it answers nothing (the
/// server's `close` frame tells the client it was never taken).
struct Incoming {
    conn: Arc<ServerConn>,
    id: u64,
    data: Vec<u8>,
    /// The negotiated maximum on its connection: the largest allowed reply.
    max: u32,
}

/// What the receiving threads, the accepting thread and `close` share.
/// Invariant: every connection in `conns` is registered in the epoll under
/// its token; one removed from `conns` is deregistered at the same time.
struct State {
    /// Live connections by epoll token.
    conns: HashMap<u64, Arc<ServerConn>>,
    /// The token of the next connection (never reused).
    next_token: u64,
    /// Decoded requests no `recv` has taken yet, oldest first.
    incoming: VecDeque<Incoming>,
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
    /// Async `recv`s waiting for readiness.
    wakers: Vec<Waker>,
    /// The watcher thread for async `recv`s runs.
    watcher: bool,
}

struct Shared {
    name: Arc<str>,
    /// The epoll instance: every connection, and `wake`. Also the server's
    /// pollable descriptor.
    epoll: OwnedFd,
    /// Readable while requests are queued in `incoming` or the server is
    /// finished, so pollers and other receiving threads wake.
    wake: EventFd,
    /// Set once by `close`: ends the accepting thread.
    stop: EventFd,
    /// Signalled when a connection is accepted (for `accept_timeout`).
    accepted_cond: Condvar,
    /// Threads inside a blocking or timed `recv`.
    receivers: AtomicUsize,
    /// Someone took the pollable descriptor or received asynchronously: every
    /// connection must then stay registered in epoll, so that it shows every
    /// request.
    polled: AtomicBool,
    local_max: u32,
    one_shot: bool,
    handshake_timeout: Duration,
    access: Access,
    state: Mutex<State>,
    /// Wakes the async watcher when wakers are registered or the server closes.
    watch_cond: Condvar,
}

/// A stream server (`ServerTransport`).
pub(crate) struct StreamServer {
    shared: Arc<Shared>,
    /// The accepting thread, joined by `close`.
    accepting: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn epoll_ctl(epoll: &OwnedFd, op: libc::c_int, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
    let mut event = libc::epoll_event { events, u64: token };
    // SAFETY: (1) both descriptors are open for the call's duration;
    // (2) `event` is a live epoll_event (ignored by EPOLL_CTL_DEL).
    let rc = unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd.as_raw_fd(), &mut event) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl StreamServer {
    /// A server taking connections from `acceptor`.
    pub(crate) fn new(
        name: Arc<str>,
        acceptor: Box<dyn Acceptor>,
        options: &ServerOptions,
    ) -> io::Result<StreamServer> {
        // SAFETY: (1) epoll_create1 takes no pointers; the result is checked.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: (1) `raw` is a fresh descriptor owned by nothing else.
        let epoll = unsafe { OwnedFd::from_raw_fd(raw) };
        let wake = EventFd::new()?;
        epoll_ctl(&epoll, libc::EPOLL_CTL_ADD, wake.as_fd(), libc::EPOLLIN as u32, WAKE)?;
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
            wakers: Vec::new(),
            watcher: false,
        };
        let shared = Shared {
            name,
            epoll,
            wake,
            stop: EventFd::new()?,
            accepted_cond: Condvar::new(),
            receivers: AtomicUsize::new(0),
            polled: AtomicBool::new(false),
            local_max: options.max_message_size,
            one_shot: options.one_shot,
            handshake_timeout: options.handshake_timeout,
            access,
            state: Mutex::new(state),
            watch_cond: Condvar::new(),
        };
        let shared = Arc::new(shared);
        let accepting = shared.clone();
        let accepting =
            std::thread::Builder::new().name("ipcall-accept".into()).spawn(move || accepting.accept_loop())?;
        Ok(StreamServer { shared, accepting: Mutex::new(Some(accepting)) })
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
        if want && !state.wakers.is_empty() {
            for waker in state.wakers.drain(..) {
                waker.wake();
            }
        }
    }

    /// Takes the next queued request, or says why there is none.
    fn take(&self, state: &mut State) -> Option<Result<Request>> {
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
    /// holding it, but is shut down so the client sees the end at once).
    fn drop_conn(&self, conn: &ServerConn) {
        let mut state = lock(&self.state);
        if state.direct == Some(conn.token) {
            state.direct = None;
        }
        if state.conns.remove(&conn.token).is_some() {
            let _ = epoll_ctl(&self.epoll, libc::EPOLL_CTL_DEL, conn.wire.read_fd(), 0, conn.token);
        }
        state.handshakes.retain(|(token, _)| *token != conn.token);
        conn.wire.shutdown();
        self.update_wake(&mut state);
    }

    /// Accepts every waiting connection; `Err` if `accept` failed (the
    /// caller backs off: see `transport::backoff`).
    fn accept_all(&self) -> io::Result<()> {
        loop {
            let accepted = {
                let state = lock(&self.state);
                match &state.acceptor {
                    Some(acceptor) => acceptor.accept(),
                    None => return Ok(()),
                }
            };
            let Some(accepted) = accepted? else { return Ok(()) };
            if !self.access.allows(&accepted.peer) {
                // Tell it why, then hang up; it does not count as a client.
                let hello = frame::encode_hello(frame::STATUS_REFUSED, self.local_max);
                let _ = accepted.wire.write_now(&[io::IoSlice::new(&hello)]);
                accepted.wire.shutdown();
                continue;
            }
            let hello = frame::encode_hello(frame::STATUS_OK, self.local_max);
            if write_all_blocking(&*accepted.wire, &[&hello]).is_err() {
                continue;
            }
            let mut state = lock(&self.state);
            if state.closed {
                return Ok(());
            }
            let token = state.next_token;
            state.next_token += 1;
            let conn = Arc::new(ServerConn {
                token,
                wire: accepted.wire,
                peer: accepted.peer,
                writer: Mutex::new(()),
                reader: Mutex::new(FrameReader::new(Role::Server, self.local_max)),
                arm: Mutex::new(false),
                last_taken: AtomicU64::new(0),
            });
            if epoll_ctl(&self.epoll, libc::EPOLL_CTL_ADD, conn.wire.read_fd(), libc::EPOLLIN as u32, token).is_err() {
                continue;
            }
            state.conns.insert(token, conn);
            state.handshakes.push((token, Instant::now() + self.handshake_timeout));
            state.accepted += 1;
            if self.one_shot {
                // Its one client is here: nobody else may find the name.
                if let Some(acceptor) = state.acceptor.take() {
                    acceptor.unbind();
                }
                self.accepted_cond.notify_all();
                return Ok(());
            }
            self.accepted_cond.notify_all();
        }
    }

    /// The accepting thread. Connection set-up is the one thing that does
    /// not wait for a thread in `recv`: a client's `connect` completes (and
    /// learns the server's limits) even while the server is busy, and a
    /// handshake that stalls is dropped on time. It exits when the server
    /// closes, or when a one-shot server has its client and its handshake
    /// is over.
    fn accept_loop(self: Arc<Self>) {
        let mut backoff = AcceptBackoff::default();
        loop {
            let (acceptor_fd, next_handshake) = {
                let state = lock(&self.state);
                if state.closed || (state.acceptor.is_none() && state.handshakes.is_empty()) {
                    return;
                }
                let fd = state.acceptor.as_ref().map(|a| a.fd().as_raw_fd());
                (fd, state.handshakes.iter().map(|(_, at)| *at).min())
            };
            let wake_at = match (next_handshake, backoff.paused_until()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let deadline = wake_at.map_or(Deadline::Never, Deadline::At);
            let mut fds = [
                libc::pollfd { fd: self.stop.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
                // A negative descriptor is ignored by poll (no acceptor, or paused).
                libc::pollfd { fd: backoff.listener_fd(acceptor_fd.unwrap_or(-1)), events: libc::POLLIN, revents: 0 },
            ];
            // SAFETY: (1) `fds` is a live, writable array of two pollfds.
            // (2) If `close` drops the acceptor while we poll, poll reports
            // the stale slot (POLLNVAL) or the `stop` eventfd, and we only
            // ever touch the acceptor again through `state`, where it is gone.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, poll_timeout_ms(deadline)) };
            if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return;
            }
            if fds[1].revents != 0 {
                match self.accept_all() {
                    Ok(()) => backoff.succeeded(),
                    Err(_) => backoff.failed(),
                }
            }
            self.expire_handshakes();
        }
    }

    /// Reads what connection `token` has to say, queueing its requests.
    fn service(&self, token: u64, out: &mut Vec<Incoming>) {
        let Some(conn) = lock(&self.state).conns.get(&token).cloned() else { return };
        let mut reader = {
            let mut disarmed = lock(&conn.arm);
            match conn.reader.try_lock() {
                Ok(reader) => reader,
                Err(TryLockError::Poisoned(e)) => e.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    // Another thread reads it; stop reporting it until that
                    // thread re-arms it, instead of spinning on it.
                    if !*disarmed && epoll_ctl(&self.epoll, libc::EPOLL_CTL_MOD, conn.wire.read_fd(), 0, token).is_ok()
                    {
                        *disarmed = true;
                    }
                    return;
                }
            }
        };
        let batch = out;
        let first_new = batch.len();
        let outcome = loop {
            // Epoll is level-triggered: whatever is left in the socket is
            // reported again, so stop once a request is out and nothing is
            // buffered here (no extra read just to see EAGAIN).
            if batch.len() > first_new && !reader.has_buffered() {
                break Ok(());
            }
            match reader.next(&*conn.wire, Deadline::Now) {
                Ok(Some(Event::Hello(hello))) => {
                    if hello.status != frame::STATUS_OK {
                        break Err(());
                    }
                    lock(&self.state).handshakes.retain(|(t, _)| *t != token);
                }
                Ok(Some(Event::Frame(f))) => match f.kind {
                    FrameKind::Request => {
                        batch.push(Incoming { conn: conn.clone(), id: f.id, data: f.payload, max: reader.max() })
                    }
                    // The client sends nothing more: it is gone.
                    _ => break Err(()),
                },
                Ok(None) => break Ok(()),
                Err(ReadError::Eof) | Err(ReadError::Io(_)) | Err(ReadError::Protocol(_)) => break Err(()),
            }
        };
        self.release_reader(&conn, reader);
        if outcome.is_err() {
            // Hung up, or broke the protocol: only this connection goes.
            self.drop_conn(&conn);
        }
    }

    /// Drops connections whose handshake did not finish in time.
    ///
    /// A handshake finishes when a receiving thread decodes the client's
    /// hello, which may be long after the client sent it if nobody calls
    /// `recv` for a while. So a connection whose hello bytes are waiting in
    /// the kernel (`FIONREAD`) did its part and is kept: the next receiver
    /// decodes it (and drops the connection if it is not a valid hello).
    fn expire_handshakes(&self) {
        let now = Instant::now();
        let expired: Vec<Arc<ServerConn>> = {
            let mut state = lock(&self.state);
            let expired = state
                .handshakes
                .iter()
                .filter(|(_, at)| *at <= now)
                .filter_map(|(token, _)| state.conns.get(token).cloned())
                .collect();
            state.handshakes.retain(|(_, at)| *at > now);
            expired
        };
        for conn in expired {
            let hello_waiting = readable_bytes(conn.wire.read_fd()).is_ok_and(|n| n >= frame::HELLO_LEN);
            if !hello_waiting {
                self.drop_conn(&conn);
            }
        }
    }

    /// One turn of the event loop: waits on epoll until `deadline` (or the
    /// next handshake deadline) and handles what it reports.
    /// Decoded requests are appended to `out`.
    fn turn(&self, deadline: Deadline, out: &mut Vec<Incoming>) -> Result<()> {
        let wait = deadline;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
        // SAFETY: (1) `events` is a live, writable array of 16 epoll_events.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                poll_timeout_ms(wait),
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(Error::Io { name: self.name.clone(), source: err });
        }
        for event in &events[..n as usize] {
            match event.u64 {
                WAKE => {}
                token => self.service(token, out),
            }
        }
        Ok(())
    }

    fn recv(&self, deadline: Deadline) -> Result<Request> {
        let blocking = deadline != Deadline::Now;
        if blocking {
            self.receivers.fetch_add(1, Ordering::AcqRel);
        }
        let result = self.recv_loop(deadline);
        if blocking {
            self.receivers.fetch_sub(1, Ordering::AcqRel);
        }
        result
    }

    fn recv_loop(&self, deadline: Deadline) -> Result<Request> {
        let mut turned = false;
        let mut fresh = Vec::new();
        loop {
            let sole = {
                let mut state = lock(&self.state);
                if !state.closed && !fresh.is_empty() {
                    if state.incoming.is_empty() {
                        // The common case: take the first new request
                        // directly, queue only the rest (no wake-up needed
                        // when there is no rest).
                        let mut fresh = fresh.drain(..);
                        let first = fresh.next().expect("not empty");
                        state.incoming.extend(fresh);
                        self.update_wake(&mut state);
                        return Ok(deliver(first));
                    }
                    state.incoming.extend(fresh.drain(..));
                    self.update_wake(&mut state);
                }
                // Decoded after `close`: their callers learn from the close
                // frame that these were never taken.
                fresh.clear();
                if let Some(result) = self.take(&mut state) {
                    return result;
                }
                if turned && deadline.expired() {
                    return Err(Error::Timeout { name: self.name.clone() });
                }
                let sole = self.sole_connection(&state, deadline);
                if sole.is_none() {
                    self.restore_direct(&mut state);
                }
                sole
            };
            match sole {
                Some(conn) => {
                    if let Some(first) = self.read_directly(&conn, deadline, &mut fresh) {
                        let mut state = lock(&self.state);
                        if !state.closed {
                            if !fresh.is_empty() {
                                state.incoming.extend(fresh.drain(..));
                                self.update_wake(&mut state);
                            }
                            return Ok(deliver(first));
                        }
                    }
                }
                None => self.turn(deadline, &mut fresh)?,
            }
            turned = true;
        }
    }

    /// The connection to read directly, if the single-connection fast path
    /// applies: this is the only thread receiving (blocking), exactly one
    /// connection exists, its handshake is done, and nothing is queued.
    fn sole_connection(&self, state: &State, deadline: Deadline) -> Option<Arc<ServerConn>> {
        if deadline == Deadline::Now
            || self.receivers.load(Ordering::Acquire) != 1
            || state.conns.len() != 1
            || !state.handshakes.is_empty()
            || !state.incoming.is_empty()
        {
            return None;
        }
        state.conns.values().next().cloned()
    }

    /// The single-connection fast path: blocks in a plain read of the one
    /// connection instead of in epoll (waking from epoll costs a cross-CPU
    /// round trip ~10 µs more, see docs/DECISIONS.md). It reads in slices of
    /// [`DIRECT_SLICE`] and goes back to epoll as soon as a second
    /// connection, a second receiving thread or `close` shows up — so a new
    /// client's first request waits at most one slice when the only
    /// receiving thread is busy here.
    /// Returns the first request read; any others that one read brought are
    /// appended to `out`.
    fn read_directly(&self, conn: &Arc<ServerConn>, deadline: Deadline, out: &mut Vec<Incoming>) -> Option<Incoming> {
        let mut reader = match conn.reader.try_lock() {
            Ok(reader) => reader,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        if !self.polled.load(Ordering::Acquire) {
            // While it is the only connection and nobody polls the server,
            // keep it out of epoll: a registered socket makes every send to
            // it also run epoll's wake-up callback (~0.5 µs per round trip).
            let mut state = lock(&self.state);
            if state.direct != Some(conn.token) && !state.closed {
                self.restore_direct(&mut state);
                if epoll_ctl(&self.epoll, libc::EPOLL_CTL_DEL, conn.wire.read_fd(), 0, conn.token).is_ok() {
                    state.direct = Some(conn.token);
                }
            }
        }
        let mut failed = false;
        let mut first = None;
        loop {
            let read = match deadline {
                Deadline::At(at) if at < Instant::now() + DIRECT_SLICE => reader.next(&*conn.wire, deadline),
                _ => reader.next_within(&*conn.wire, DIRECT_SLICE),
            };
            match read {
                Ok(Some(Event::Frame(f))) if f.kind == FrameKind::Request => {
                    first = Some(Incoming { conn: conn.clone(), id: f.id, data: f.payload, max: reader.max() });
                    // Decode whatever else that read brought, without reading more.
                    while reader.has_buffered() {
                        match reader.next(&*conn.wire, Deadline::Now) {
                            Ok(Some(Event::Frame(f))) if f.kind == FrameKind::Request => {
                                out.push(Incoming { conn: conn.clone(), id: f.id, data: f.payload, max: reader.max() })
                            }
                            Ok(None) => break,
                            _ => {
                                failed = true;
                                break;
                            }
                        }
                    }
                    break;
                }
                Ok(None) => {
                    let state = lock(&self.state);
                    if deadline.expired() || state.closed || self.sole_connection(&state, deadline).is_none() {
                        break;
                    }
                }
                // The decoder yields the hello once, first: a client whose
                // hello waited in the kernel past the handshake deadline
                // (nobody was receiving) finishes its handshake here.
                Ok(Some(Event::Hello(hello))) if hello.status == frame::STATUS_OK => {}
                // Anything else from the client (close, a reply, a refused
                // hello, bad bytes, end of stream) ends it.
                _ => {
                    failed = true;
                    break;
                }
            }
        }
        self.release_reader(conn, reader);
        if failed && !lock(&self.state).closed {
            self.drop_conn(conn);
        }
        first
    }

    /// Puts the connection the fast path took out of epoll back in.
    fn restore_direct(&self, state: &mut State) {
        if let Some(token) = state.direct.take() {
            if let Some(conn) = state.conns.get(&token) {
                let _ = epoll_ctl(&self.epoll, libc::EPOLL_CTL_ADD, conn.wire.read_fd(), libc::EPOLLIN as u32, token);
            }
        }
    }

    /// Unlocks a connection's reader and re-arms it in epoll if a thread
    /// disarmed it meanwhile (both under the `arm` lock: no re-arm is lost).
    fn release_reader(&self, conn: &ServerConn, reader: MutexGuard<'_, FrameReader>) {
        let mut disarmed = lock(&conn.arm);
        drop(reader);
        if std::mem::take(&mut *disarmed) {
            let _ = epoll_ctl(&self.epoll, libc::EPOLL_CTL_MOD, conn.wire.read_fd(), libc::EPOLLIN as u32, conn.token);
        }
    }

    /// The async watcher: while async `recv`s wait, blocks on the epoll
    /// descriptor and wakes them when it is readable. Exits once the server
    /// is closed and nobody waits.
    fn watch(self: Arc<Self>) {
        loop {
            {
                let mut state = lock(&self.state);
                while state.wakers.is_empty() {
                    if state.closed {
                        state.watcher = false;
                        return;
                    }
                    state = self.watch_cond.wait(state).unwrap_or_else(|e| e.into_inner());
                }
            }
            let _ = wait_fd(self.epoll.as_fd(), libc::POLLIN, Deadline::Never);
            let wakers: Vec<Waker> = std::mem::take(&mut lock(&self.state).wakers);
            for waker in wakers {
                waker.wake();
            }
        }
    }
}

/// Turns a decoded request into a `Request`; called under the state lock
/// (which orders `last_taken` against `close`).
fn deliver(incoming: Incoming) -> Request {
    let Incoming { conn, id, data, max } = incoming;
    let peer = conn.peer;
    conn.last_taken.store(id, Ordering::Release);
    Request::new(data, peer, conn, id, max)
}

impl ServerTransport for StreamServer {
    fn recv(&self, deadline: Deadline) -> Result<Request> {
        self.shared.recv(deadline)
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<Request>> {
        let shared = &self.shared;
        // Async receiving waits on the epoll descriptor (in the watcher), so
        // from now on every connection stays registered there.
        if !shared.polled.swap(true, Ordering::AcqRel) {
            shared.restore_direct(&mut lock(&shared.state));
        }
        match shared.recv(Deadline::Now) {
            Err(Error::Timeout { .. }) => {}
            other => return Poll::Ready(other),
        }
        let start_watcher = {
            let mut state = lock(&shared.state);
            if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                state.wakers.push(cx.waker().clone());
            }
            let start = !state.watcher;
            state.watcher = true;
            start
        };
        if start_watcher {
            let watcher = shared.clone();
            if std::thread::Builder::new().name("ipcall-server-watch".into()).spawn(move || watcher.watch()).is_err() {
                lock(&shared.state).watcher = false;
                return Poll::Ready(Err(Error::Io {
                    name: shared.name.clone(),
                    source: io::Error::other("cannot start the async watcher thread"),
                }));
            }
        } else {
            shared.watch_cond.notify_all();
        }
        // Anything that arrived before the waker was registered makes the
        // epoll descriptor readable, which the watcher sees: no lost wake-up.
        Poll::Pending
    }

    fn accept(&self, deadline: Deadline) -> Result<()> {
        let shared = &self.shared;
        let name = || shared.name.clone();
        let accepted = wait_until(lock(&shared.state), &shared.accepted_cond, deadline, |state| {
            if state.accepted > 0 {
                Some(Ok(()))
            } else if state.closed {
                Some(Err(Error::Closed { name: name() }))
            } else {
                None
            }
        });
        accepted.unwrap_or_else(|| Err(Error::Timeout { name: name() }))
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
            state.direct = None;
            for (token, conn) in &state.conns {
                let _ = epoll_ctl(&shared.epoll, libc::EPOLL_CTL_DEL, conn.wire.read_fd(), 0, *token);
            }
            shared.update_wake(&mut state);
            state.conns.drain().map(|(_, c)| c).collect()
        };
        shared.watch_cond.notify_all();
        shared.accepted_cond.notify_all();
        shared.stop.set();
        if let Some(accepting) = lock(&self.accepting).take() {
            // It exits at once on `stop`; afterwards the listening socket is
            // certainly closed.
            let _ = accepting.join();
        }
        for conn in conns {
            // The server reads nothing more; this also ends a direct read.
            conn.wire.stop_reading();
            // Best effort and never blocking: a client that does not read
            // still sees the end of stream once its answered requests are gone.
            if let Ok(_writing) = conn.writer.try_lock() {
                let last = conn.last_taken.load(Ordering::Acquire);
                let close = frame::encode_header(FrameKind::Close, last, 0);
                let _ = conn.wire.write_now(&[io::IoSlice::new(&close)]);
            }
        }
    }
}

impl Drop for StreamServer {
    fn drop(&mut self) {
        self.close();
    }
}
