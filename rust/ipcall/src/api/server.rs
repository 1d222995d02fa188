//! `Server`: binds a name and receives requests.

use std::fmt;
use std::future::poll_fn;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "tokio")]
use crate::api::on_tokio;
use crate::api::request::Request;
use crate::api::taken::Taken;
use crate::core::error::{Error, Result};
use crate::core::name::{Kind, Name};
use crate::core::options::ServerOptions;
use crate::core::pool_dir::{self, MemberEntry};
use crate::core::registry::{self, Registration};
use crate::core::stats::{Counters, ServerStats};
use crate::core::wait::Deadline;
#[cfg(feature = "tokio")]
use crate::transport::reactor::Registry;
use crate::transport::{self, pool, ServerTransport};

/// A server bound to a name.
///
/// All methods take `&self`: a server can be shared (e.g. in an `Arc`) by
/// several receiving threads, and `close` from one wakes the others.
pub struct Server {
    name: Name,
    /// Registrations of the descriptor with tokio runtimes (feature
    /// `tokio`). Before `transport`: dropped while its descriptor is open.
    #[cfg(feature = "tokio")]
    reactors: Registry,
    transport: Box<dyn ServerTransport>,
    /// This server's entry in the registry `ipcall ls` reads (`None` for
    /// `mem:`, once closed, or if it could not be written); taken by close.
    registration: std::sync::Mutex<Option<Registration>>,
    /// The requests handed out and not yet answered, for `drain`.
    taken: Arc<Taken>,
    /// A pool member's entry in its pool's directory (`None` for a plain
    /// server, and once closed): while it exists, clients find the member.
    pool_entry: std::sync::Mutex<Option<MemberEntry>>,
}

impl Server {
    /// Listens on `name` with default options.
    ///
    /// Fails with `AddrInUse` if a live server holds the name (or a live
    /// worker pool serves it), `InvalidName` if it does not parse.
    pub fn bind(name: &str) -> Result<Server> {
        Server::bind_with(name, &ServerOptions::default())
    }

    /// Listens on `name` with `options`; with
    /// [`ServerOptions::pool`], as one member of the worker pool of `name`
    /// (then [`name`](Self::name) is the pool's name, which clients connect
    /// to; the member's own endpoint is in its [`registry`](crate::registry)
    /// entry).
    pub fn bind_with(name: &str, options: &ServerOptions) -> Result<Server> {
        let name = Name::parse(name)?;
        options.check(name.shared())?;
        if options.is_pool() && name.kind() != Kind::Nats {
            return Server::bind_pool_member(name, options);
        }
        if pool::is_pool_kind(name.kind()) && pool_dir::has_members(&name) {
            return Err(Error::AddrInUse { name: name.shared().clone() });
        }
        let counters = Counters::new();
        let transport = transport::bind(&name, options, &counters)?;
        Ok(Server::from_transport(name, transport, counters).registered(options, None))
    }

    /// Binds a member of the worker pool `name` (see [`ServerOptions::pool`]).
    fn bind_pool_member(name: Name, options: &ServerOptions) -> Result<Server> {
        let refuse = |reason| Err(Error::InvalidName { name: name.shared().clone(), reason });
        if !pool::is_pool_kind(name.kind()) {
            return refuse("a worker pool needs a unix:, pipe: or shm: name (nats: names are pools by themselves)");
        }
        if options.is_one_shot() {
            return refuse("a one-shot server cannot be a member of a worker pool");
        }
        // A plain server holding the name keeps it (best effort: found
        // through its registry entry, docs/DECISIONS.md).
        let held =
            registry::list().unwrap_or_default().iter().any(|e| e.name == name.as_str() && e.pool_member.is_none());
        if held {
            return Err(Error::AddrInUse { name: name.shared().clone() });
        }
        let counters = Counters::new();
        let member = pool::bind_member(&name, options, &counters)?;
        let server =
            Server::from_transport(name, member.transport, counters).registered(options, Some(&member.endpoint));
        *server.pool_entry.lock().unwrap_or_else(|e| e.into_inner()) = Some(member.entry);
        Ok(server)
    }

    /// Listens on a new, unguessable name of `kind`; read it with [`name`](Self::name).
    pub fn bind_unique(kind: Kind) -> Result<Server> {
        Server::bind_unique_with(kind, &ServerOptions::default())
    }

    /// [`bind_unique`](Self::bind_unique) with options.
    pub fn bind_unique_with(kind: Kind, options: &ServerOptions) -> Result<Server> {
        let name = Name::unique(kind)?;
        options.check(name.shared())?;
        if options.is_pool() && kind != Kind::Nats {
            let reason = "a worker pool is found by its name: bind a chosen name with the pool option";
            return Err(Error::InvalidName { name: name.shared().clone(), reason });
        }
        // Generated names are never reused: remove those of dead servers.
        if let Some(dir) = name.path().and_then(std::path::Path::parent) {
            crate::transport::sweep::sweep(dir);
        }
        let counters = Counters::new();
        let transport = transport::bind(&name, options, &counters)?;
        Ok(Server::from_transport(name, transport, counters).registered(options, None))
    }

    /// With its registry entry written (best effort: see `core::registry`);
    /// a pool member's names its private endpoint.
    fn registered(mut self, options: &ServerOptions, endpoint: Option<&Name>) -> Server {
        *self.registration.get_mut().unwrap_or_else(|e| e.into_inner()) =
            registry::register(&self.name, options.is_one_shot(), endpoint);
        self
    }

    pub(crate) fn from_transport(name: Name, transport: Box<dyn ServerTransport>, counters: Arc<Counters>) -> Server {
        Server {
            name,
            #[cfg(feature = "tokio")]
            reactors: Registry::new(),
            transport,
            registration: std::sync::Mutex::new(None),
            taken: Arc::new(Taken::new(counters)),
            pool_entry: std::sync::Mutex::new(None),
        }
    }

    fn request(&self, incoming: transport::Incoming) -> Request {
        let len = incoming.data.len();
        Request::new(incoming, self.taken.mark(len))
    }

    /// What this server has done since it was bound: calls, answers,
    /// errors by kind, bytes, a latency histogram, open connections (see
    /// [`ServerStats`]). Counted by the library itself on every transport,
    /// with a few atomic additions per request; a client reads the same
    /// with [`Client::server_stats`](crate::Client::server_stats).
    pub fn stats(&self) -> ServerStats {
        self.taken.counters.snapshot()
    }

    /// The name clients connect to.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// Waits for the next request. `Closed` once no request can come again.
    pub fn recv(&self) -> Result<Request> {
        self.transport.recv(Deadline::Never).map(|r| self.request(r))
    }

    /// Waits for the next request and shows its bytes to `f` *in place* —
    /// for `shm:`, straight from the shared ring, without copying — then
    /// returns `f`'s result with the request (whose [`data`](Request::data)
    /// is then empty) to answer.
    ///
    /// Cost: while `f` runs, the request's ring slot is held, so that
    /// client's later requests wait behind it (others are unaffected); keep
    /// `f` short, or copy what you need. A message too large to sit whole in
    /// the ring (over an eighth of `ring_size`) is assembled first and `f`
    /// sees the copy; other transports show their received buffer.
    /// `timeout` as in [`recv_timeout`](Self::recv_timeout); `None` waits forever.
    pub fn recv_with<R>(&self, timeout: Option<Duration>, f: impl FnOnce(&[u8]) -> R) -> Result<(Request, R)> {
        let deadline = timeout.map_or(Deadline::Never, Deadline::after);
        let mut f = Some(f);
        let mut out = None;
        let mut len = 0;
        let request = self.transport.recv_with(deadline, &mut |bytes: &[u8]| {
            if let Some(f) = f.take() {
                len = bytes.len();
                out = Some(f(bytes));
            }
        })?;
        match out {
            Some(out) => Ok((Request::new(request, self.taken.mark(len)), out)),
            // A transport always shows the bytes of the request it returns.
            None => Err(Error::Closed { name: self.name.shared().clone() }),
        }
    }

    /// Waits at most `timeout` for the next request (`Timeout` after it).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Request> {
        self.transport.recv(Deadline::after(timeout)).map(|r| self.request(r))
    }

    /// The next request if one is ready now, `Ok(None)` if not.
    pub fn try_recv(&self) -> Result<Option<Request>> {
        match self.transport.recv(Deadline::Now) {
            Ok(incoming) => Ok(Some(self.request(incoming))),
            Err(Error::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// [`try_recv`](Self::try_recv) for an event loop about to sleep
    /// after answering a request: over `shm:`, if no request is ready, it
    /// first spins briefly for the next one, under the same policy and
    /// budget rules as [`Client::progress_spin`](crate::Client::progress_spin)
    /// (some client last ran on another CPU, a spin slot is free, a budget
    /// of at most ~50 µs that drops to zero after a few failed spins). It
    /// never sleeps. Other transports: the same as `try_recv`. Call it at
    /// most once per turn of the loop, and only after answering (an idle
    /// server should just wait on its descriptor).
    pub fn try_recv_spin(&self) -> Result<Option<Request>> {
        match self.transport.try_recv_spin() {
            Ok(incoming) => Ok(Some(self.request(incoming))),
            Err(Error::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits for the next request without blocking a thread; works under any
    /// executor.
    ///
    /// With the `tokio` feature, inside a tokio runtime whose I/O driver is
    /// on, a `unix:`, `pipe:` or `shm:` server's descriptor is registered
    /// with that runtime's reactor (once per runtime) and watched there.
    /// Elsewhere, one thread per server sleeps on it while async receivers
    /// wait; `mem:` and `nats:` wake them from their queue.
    pub async fn recv_async(&self) -> Result<Request> {
        #[cfg(feature = "tokio")]
        if self.transport.waits_on_fd() {
            if let Some(reactor) = on_tokio::server_reactor(&self.reactors, &*self.transport) {
                return on_tokio::recv(self.name.shared(), reactor, &*self.transport).await.map(|r| self.request(r));
            }
        }
        poll_fn(|cx| self.transport.poll_recv(cx)).await.map(|r| self.request(r))
    }

    /// Waits at most `timeout` until a client has connected (for a one-shot
    /// server: its one client). `Timeout` if none came, so a child process
    /// that died before connecting never hangs its parent.
    pub fn accept_timeout(&self, timeout: Duration) -> Result<()> {
        self.transport.accept(Deadline::after(timeout))
    }

    /// Stops taking requests and unbinds the name. Requests still queued fail
    /// with `Disconnected`; requests already received can still be answered.
    /// `recv` then reports `Closed`. Dropping the server does the same.
    pub fn close(&self) {
        // Unlisted first: whoever sees the server closed (a thread in
        // `recv` that then exits the process) finds its entry gone too.
        self.registration.lock().unwrap_or_else(|e| e.into_inner()).take();
        // Out of its pool before it stops: new clients no longer find it.
        self.pool_entry.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.transport.close();
    }

    /// Closes gracefully: stops taking calls at once, then waits at most
    /// `timeout` (`None`: as long as it takes) until every request already
    /// received has been answered or dropped. True if all were; false if
    /// the timeout passed first.
    ///
    /// At once, as [`close`](Self::close): the name is unbound (`connect`
    /// gets `NotFound`), no new connection is accepted, and calls not yet
    /// received — queued in the server, or sent later on an open
    /// connection — fail at once with `Disconnected` (the server never saw
    /// them, so they are safe to send elsewhere). Over `nats:` the server
    /// leaves the queue group first: the other members serve new calls.
    /// `recv` reports `Closed`, so a receiving loop ends while its requests
    /// in hand are still answered. A request still unanswered at the
    /// timeout stays answerable as after `close`; dropping it answers
    /// `NoReply`, and its caller gets `Disconnected` if the process exits.
    /// Call it from a thread other than the one that holds the requests.
    pub fn drain(&self, timeout: Option<Duration>) -> bool {
        self.close();
        self.taken.wait_idle(timeout.map_or(Deadline::Never, Deadline::after))
    }
}

impl AsFd for Server {
    /// Readable when a request may be ready, or the server is finished:
    /// for epoll/poll/select, asyncio `add_reader`, libuv. Spurious
    /// readiness is possible; follow it with `try_recv`.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.transport.fd()
    }
}

impl AsRawFd for Server {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.pool_entry.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        self.transport.close();
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server").field("name", &self.name.as_str()).finish_non_exhaustive()
    }
}
