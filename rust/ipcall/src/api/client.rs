//! `Client`: connects to a name and makes calls.

use std::fmt;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "tokio")]
use crate::api::on_tokio;
use crate::api::pending::{outcome_result, CallState, LocalCall, Pending, TryCall};
use crate::core::error::{Error, Result};
use crate::core::name::Name;
use crate::core::options::ClientOptions;
use crate::core::stats::{self, ServerStats};
use crate::core::wait::Deadline;
#[cfg(feature = "tokio")]
use crate::transport::reactor::Registry;
use crate::transport::{self, Call, ClientConn, Tried};

/// A connection to a server.
///
/// Many calls may be in flight at once, from several threads or pipelined
/// from one; replies are matched to calls by id, never by order. Clones
/// share the connection (it closes when the last clone is dropped) and are
/// otherwise independent.
#[derive(Clone)]
pub struct Client {
    name: Arc<str>,
    /// The connection's registrations with tokio runtimes (feature
    /// `tokio`), shared by the clones; `None` for transports whose calls
    /// need nobody's progress (`mem:`, `nats:`).
    #[cfg(feature = "tokio")]
    reactors: Option<Arc<Registry>>,
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
        options.check(parsed.shared())?;
        let deadline = options.connect_timeout.map_or(Deadline::Now, Deadline::after);
        let mut pause = Duration::from_micros(200);
        loop {
            match transport::connect(&parsed, options) {
                Ok(conn) => return Ok(Client::from_conn(parsed.shared().clone(), conn)),
                Err(Error::NotFound { .. }) if !deadline.expired() => {
                    std::thread::sleep(deadline.remaining().map_or(pause, |left| left.min(pause)));
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn from_conn(name: Arc<str>, conn: Arc<dyn ClientConn>) -> Client {
        Client {
            name,
            #[cfg(feature = "tokio")]
            reactors: conn.needs_progress().then(|| Arc::new(Registry::new())),
            conn,
        }
    }

    /// A call in flight, to be awaited on tokio's reactor where there is one.
    fn pending(&self, call: Call) -> Pending {
        let pending = Pending::new(self.name.clone(), call);
        #[cfg(feature = "tokio")]
        let pending = pending.on_tokio(self.reactors.clone());
        pending
    }

    /// The name of the server this client talks to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends control request `op` and waits for its answer's body.
    fn control(&self, op: u8, timeout: Option<Duration>) -> Result<Vec<u8>> {
        let call = self.conn.clone().control(&stats::control_request(op))?;
        let pending = Pending::new(self.name.clone(), call);
        let answer = match timeout {
            Some(timeout) => pending.wait_timeout(timeout)?,
            None => pending.wait()?,
        };
        stats::check_answer(&self.name, op, &answer).map(<[u8]>::to_vec)
    }

    /// Checks that the server is there and answering, in one round trip
    /// that its transport answers itself: the request never reaches the
    /// application (no `recv` returns it, nothing is counted as a call).
    /// Returns the round trip's time. `timeout` bounds the wait (`None`:
    /// wait as long as it takes); `Timeout` after it.
    ///
    /// A `unix:`, `pipe:` or `shm:` server answers while some thread of it
    /// reads its connections: a thread in `recv` (any form, also an event
    /// loop's), or, when none has for a while, its accepting thread. A
    /// `nats:` server answers from its NATS connection, a `mem:` one at
    /// once. `Protocol` if the server's ipcall is too old to take control
    /// requests (it did not announce them; the connection stays usable).
    pub fn ping(&self, timeout: Option<Duration>) -> Result<Duration> {
        let start = std::time::Instant::now();
        self.control(stats::OP_PING, timeout)?;
        Ok(start.elapsed())
    }

    /// The server's statistics ([`ServerStats`], what
    /// [`Server::stats`](crate::Server::stats) returns in its own process),
    /// answered by its transport as [`ping`](Self::ping) is. Over `nats:`
    /// the answer comes from one member of the name's queue group, and
    /// over a local worker pool from its least loaded member (`ipcall
    /// stats` asks each member through the endpoint
    /// [`registry::list`](crate::registry::list) shows).
    pub fn server_stats(&self, timeout: Option<Duration>) -> Result<ServerStats> {
        let body = self.control(stats::OP_STATS, timeout)?;
        stats::decode_stats(&self.name, &body)
    }

    /// Sends `data` and waits for the answer.
    pub fn call(&self, data: &[u8]) -> Result<Vec<u8>> {
        // Waited on here, not as a `Pending`: no clone of the name (nor,
        // where the transport sends borrowed, of the connection) per call.
        if let Some(sent) = self.conn.send_here(data, None) {
            let (id, slot) = sent?;
            return LocalCall::new(&*self.conn, id, slot).wait(&self.name);
        }
        let call = self.conn.clone().send_to_wait(data, None)?;
        CallState::new(call).wait(&self.name)
    }

    /// Sends `data` and waits at most `timeout`. On `Timeout` the call is
    /// abandoned: its late answer is discarded, never given to another call.
    pub fn call_timeout(&self, data: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        if let Some(sent) = self.conn.send_here(data, Some(timeout)) {
            let (id, slot) = sent?;
            return LocalCall::new(&*self.conn, id, slot).wait_timeout(&self.name, timeout);
        }
        let call = self.conn.clone().send_to_wait(data, Some(timeout))?;
        CallState::new(call).wait_timeout(&self.name, timeout)
    }

    /// Sends `data` and waits for the answer in slices of at most `slice`,
    /// asking `go_on` after each slice that ends without it: `Ok(None)`
    /// once `go_on` returns false (the call is then abandoned, its late
    /// answer discarded). `timeout` bounds the whole wait as in
    /// [`call_timeout`](Self::call_timeout) (`Timeout`, the call abandoned;
    /// the server sees it as the request's deadline). For a caller that
    /// must look at something while it waits, e.g. a language runtime's
    /// pending signals (Python's Ctrl+C); it costs what `call` does.
    pub fn call_sliced(
        &self,
        data: &[u8],
        timeout: Option<Duration>,
        slice: Duration,
        mut go_on: impl FnMut() -> bool,
    ) -> Result<Option<Vec<u8>>> {
        let deadline = timeout.map_or(Deadline::Never, Deadline::after);
        if let Some(sent) = self.conn.send_here(data, timeout) {
            let (id, slot) = sent?;
            return LocalCall::new(&*self.conn, id, slot).wait_sliced(&self.name, deadline, slice, go_on);
        }
        let call = self.conn.clone().send_to_wait(data, timeout)?;
        let mut pending = Pending::new(self.name.clone(), call);
        loop {
            let this_slice = deadline.remaining().map_or(slice, |left| left.min(slice));
            if let Some(answer) = pending.try_wait_timeout(this_slice) {
                return answer.map(Some);
            }
            // Dropped unanswered below, the call is abandoned.
            if deadline.expired() {
                return Err(Error::Timeout { name: self.name.clone() });
            }
            if !go_on() {
                return Ok(None);
            }
        }
    }

    /// Like [`call`](Self::call), handing over the buffer: over `mem:` and
    /// `nats:` the request goes out without a copy (the other transports
    /// write it from the buffer as `call` does).
    pub fn call_owned(&self, data: Vec<u8>) -> Result<Vec<u8>> {
        let call = self.conn.clone().send_owned(data, None)?;
        CallState::new(call).wait(&self.name)
    }

    /// Like [`call_timeout`](Self::call_timeout), handing over the buffer
    /// as [`call_owned`](Self::call_owned) does.
    pub fn call_timeout_owned(&self, data: Vec<u8>, timeout: Duration) -> Result<Vec<u8>> {
        let call = self.conn.clone().send_owned(data, Some(timeout))?;
        CallState::new(call).wait_timeout(&self.name, timeout)
    }

    /// Like [`send`](Self::send), handing over the buffer as
    /// [`call_owned`](Self::call_owned) does.
    pub fn send_owned(&self, data: Vec<u8>) -> Result<Pending> {
        self.conn.clone().send_owned(data, None).map(|call| self.pending(call))
    }

    /// Sends `data` and returns the call in flight, to wait for (or await) later.
    pub fn send(&self, data: &[u8]) -> Result<Pending> {
        self.conn.clone().send(data).map(|call| self.pending(call))
    }

    /// Like [`send`](Self::send), for a caller that will wait at most
    /// `timeout`: the server sees it as the request's
    /// [`deadline`](crate::Request::deadline). The returned `Pending` is
    /// not bounded by it: wait with [`Pending::wait_timeout`] (or a timer)
    /// as you meant to.
    pub fn send_timeout(&self, data: &[u8], timeout: Duration) -> Result<Pending> {
        self.conn.clone().send_timeout(data, timeout).map(|call| self.pending(call))
    }

    /// Sends `data` without blocking: `Ok(None)` if the transport has no
    /// room now, and then nothing was sent (retry after [`progress`](Self::progress),
    /// when [`fd`](Self::fd) is readable, or fall back to [`send`](Self::send)
    /// on a worker thread). Otherwise the same as `send`, with the same
    /// errors (`TooLarge`, `Disconnected`, ...).
    ///
    /// Over `unix:` and `pipe:` a request the socket or pipe takes only in
    /// part is still sent whole: its tail waits in the connection's outbox,
    /// which [`progress`](Self::progress) (when `fd()` reports writability)
    /// or the next send finishes before anything else is written. Over
    /// `shm:` it is `None` while the request ring is full. `mem:` and
    /// `nats:` queue without limit, so they never say `None`.
    pub fn try_send(&self, data: &[u8]) -> Result<Option<Pending>> {
        Ok(self.conn.clone().try_send(data, None)?.map(|call| self.pending(call)))
    }

    /// Like [`try_send`](Self::try_send), for a caller that will wait at
    /// most `timeout`: the server sees it as the request's
    /// [`deadline`](crate::Request::deadline), as with
    /// [`send_timeout`](Self::send_timeout) (an event loop's timed call).
    /// The returned `Pending` is not bounded by it.
    ///
    /// Over `shm:` a request whose deadline record fits in the ring is
    /// sent even if the request itself does not fit yet: it waits whole in
    /// the outbox, as a partly written one does.
    pub fn try_send_timeout(&self, data: &[u8], timeout: Duration) -> Result<Option<Pending>> {
        Ok(self.conn.clone().try_send(data, Some(timeout))?.map(|call| self.pending(call)))
    }

    /// Like [`try_send`](Self::try_send), for an event loop that looks for
    /// the answer right away (a call alone in flight that may be answered
    /// at once: a server on the same CPU often answers while the send
    /// wakes it). [`TryCall::Answered`] if the answer was already here:
    /// then nothing is left to collect for this call, and its answer may
    /// not have made [`fd`](Self::fd) readable (over `shm:` the caller
    /// reads it out of the reply ring, as a blocking [`call`](Self::call)
    /// does, and the server rings no bell for it). Otherwise
    /// [`TryCall::Sent`], to wait for as a `try_send`'s call, or
    /// [`TryCall::NoRoom`] (nothing was sent). Errors as `try_send`.
    pub fn try_call(&self, data: &[u8]) -> Result<TryCall> {
        self.try_call_as(data, false)
    }

    /// [`try_call`](Self::try_call), then, if the answer is not here yet,
    /// a brief spin for it under [`progress_spin`](Self::progress_spin)'s
    /// policy and budget (over `shm:`; elsewhere `progress_spin` returns
    /// at once). It never sleeps. For an event loop's call alone in flight,
    /// in place of `try_call` followed by `progress_spin`: over `shm:` an
    /// answer caught by the spin is taken directly, as by a blocking
    /// [`call`](Self::call), with none of the work of completing a call for
    /// the loop. Keep the spin to one per turn of the loop, as
    /// `progress_spin`'s.
    pub fn try_call_spin(&self, data: &[u8]) -> Result<TryCall> {
        self.try_call_as(data, true)
    }

    fn try_call_as(&self, data: &[u8], spin: bool) -> Result<TryCall> {
        if let Some(tried) = self.conn.try_call_here(data, spin) {
            return Ok(match tried? {
                Tried::NoRoom => TryCall::NoRoom,
                Tried::Sent(id, slot) => TryCall::Sent(self.pending(Call::new(self.conn.clone(), id, slot))),
                Tried::Answered(outcome) => TryCall::Answered(outcome_result(&self.name, Some(outcome))),
            });
        }
        let Some(call) = self.conn.clone().try_send(data, None)? else { return Ok(TryCall::NoRoom) };
        let mut pending = self.pending(call);
        if spin {
            self.conn.progress_spin();
        }
        Ok(match pending.try_wait() {
            Some(answer) => TryCall::Answered(answer),
            None => TryCall::Sent(pending),
        })
    }

    /// A descriptor for an event loop (poll, epoll, libuv, asyncio's
    /// `add_reader`): readable, level-triggered, when some pending call of
    /// this client may have completed, when the connection died, or when a
    /// request's unsent tail can be written. On readable, call
    /// [`progress`](Self::progress), then [`Pending::try_wait`] the calls.
    ///
    /// Made on the first call and shared by the clones of this client; the
    /// client owns it (do not close it). Calls sent before the first `fd()`,
    /// and calls `.await`ed, are not announced on it: ask for it before
    /// sending. It is idle (not readable) while nothing is pending and
    /// nothing is to be written; once the connection died it stays readable.
    /// Which descriptor it is depends on the transport (an eventfd, or an
    /// epoll set of the connection's descriptors and an eventfd); treat it
    /// as opaque.
    pub fn fd(&self) -> Result<BorrowedFd<'_>> {
        self.conn.fd().map_err(|e| Error::from_io(&self.name, e))
    }

    /// Makes progress without blocking: reads what the connection has,
    /// completes the calls it answers, writes what waits in the outbox, and
    /// clears [`fd`](Self::fd)'s readiness. After it returns, every call
    /// completed so far is visible through [`Pending::try_wait`].
    ///
    /// A dead connection completes its calls with their error
    /// (`Disconnected`, `Protocol`); `progress` itself does not fail for it.
    /// Safe to call from any thread, also while other threads block in
    /// `wait` on the same client: if another thread is reading the
    /// connection, it returns at once, and that thread makes `fd()`
    /// readable again when it completes calls sent after `fd()`.
    pub fn progress(&self) -> Result<()> {
        self.conn.progress();
        Ok(())
    }

    /// For an event loop about to sleep with calls pending: over `shm:`,
    /// spins briefly until a reply comes, then makes
    /// [`progress`](Self::progress); returns whether it caught one (then
    /// [`Pending::try_wait`] the calls). It never sleeps and never blocks.
    ///
    /// It spins only where a blocking wait would (`WaitMode::Adaptive`:
    /// the server last ran on another CPU and one of the process's spin
    /// slots is free; never with `WaitMode::Block`), for at most a budget
    /// of ~50 µs that follows its outcomes: every failed spin halves it and
    /// a few in a row drop it to zero, so a slow server soon costs nothing
    /// (one short probe in 32 calls finds a server that became fast again).
    /// Call it at most once per turn of the loop (so other work is not
    /// starved), after the loop's own work, only while calls are pending;
    /// keep watching [`fd`](Self::fd) as usual. Other transports, and a
    /// client with nothing pending, return `false` at once: their replies
    /// come through the descriptor.
    pub fn progress_spin(&self) -> Result<bool> {
        Ok(self.conn.progress_spin())
    }

    /// Sends `data` and awaits the answer without blocking a thread; works
    /// under any executor.
    ///
    /// With the `tokio` feature, inside a tokio runtime whose I/O driver is
    /// on, `unix:`, `pipe:` and `shm:` calls are driven by that runtime's
    /// reactor: the connection's [`fd`](Self::fd) is registered with it
    /// (once per connection and runtime), requests go out with
    /// [`try_send`](Self::try_send) (one that finds no room waits for the
    /// descriptor, never blocking the executor thread), and readiness is
    /// answered with [`progress`](Self::progress) on the runtime's threads.
    /// Elsewhere (and for `mem:` and `nats:`, whose calls are completed by
    /// someone else) a blocking send and the connection's reader thread
    /// serve the future.
    pub async fn call_async(&self, data: &[u8]) -> Result<Vec<u8>> {
        #[cfg(feature = "tokio")]
        if let Some(reactor) = self.reactors.as_ref().and_then(|r| on_tokio::client_reactor(r, &self.conn)) {
            let call = on_tokio::send(&self.name, reactor, &self.conn, data).await?;
            return self.pending(call).await;
        }
        self.send(data)?.await
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("name", &self.name).finish_non_exhaustive()
    }
}
