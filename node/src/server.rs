//! `Server` (bind, recv, async iteration) and `Request` (data, peer, reply, fail).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::ptr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use napi::bindgen_prelude::{
    Env, FromNapiValue, Function, JsObjectValue, Object, ObjectFinalize, PromiseRaw, ToNapiValue, Unknown,
};
use napi::sys;
use napi_derive::napi;

use crate::bytes::Bytes;
use crate::error::{to_js, type_error};
use crate::options::{millis, CallOptions, ServerOptions};
use crate::reactor::{self, Driven, Reactor, Settlement, Value};

/// A server bound to a name. Receive with `await server.recv()` or
/// `for await (const req of server)`; `close()` unbinds the name.
///
/// Waiting for a request never blocks the event loop: libuv watches the
/// server's descriptor and the request is taken and handed to JavaScript on
/// the JavaScript thread (no other thread is involved). A pending `recv()`
/// keeps the process alive until a request comes or the server is closed.
#[napi]
pub struct Server {
    /// The core server and the `recv()`s waiting on it, shared with the
    /// libuv handles that watch it.
    shared: Rc<RefCell<Receiving>>,
    /// The name clients connect to (kept to answer without borrowing).
    name: String,
}

/// A server's waiting `recv()`s (and `for await` steps), first come first served.
struct Receiving {
    /// Shared with a `drain()`'s waiting thread.
    server: Arc<ipcall::Server>,
    reactor: Reactor,
    waiters: VecDeque<Waiter>,
    /// Requests handed out straight from `recv()` since libuv last ran this
    /// server's callback (bounded: see [`SERVED_IN_A_ROW`]).
    served_in_a_row: u32,
    /// A request was handed out since the last spin that caught nothing:
    /// the next may follow soon, so spin briefly before the loop sleeps.
    spin_armed: bool,
}

/// How many `recv()`s in a row may be answered at once, inside the caller's
/// own turn, before the next waits for the loop's next turn: a server whose
/// requests never run out would otherwise hold the microtask queue forever
/// and starve timers and I/O.
const SERVED_IN_A_ROW: u32 = 64;

/// One `recv()` or iteration step waiting for a request.
struct Waiter {
    deferred: sys::napi_deferred,
    /// A `for await` step (resolves `{ value, done }`; `CLOSED` ends the loop).
    step: bool,
    deadline: Option<Instant>,
}

impl Waiter {
    fn settle(self, received: ipcall::Result<ipcall::Request>) -> Settlement {
        let value = match (self.step, received) {
            (false, received) => Value::Request(received),
            (true, Ok(request)) => Value::Step(Ok(Some(request))),
            (true, Err(ipcall::Error::Closed { .. })) => Value::Step(Ok(None)),
            (true, Err(e)) => Value::Step(Err(e)),
        };
        Settlement { deferred: self.deferred, value }
    }
}

impl Receiving {
    /// Hands ready requests to the waiters in order; once no request can
    /// come again (`Closed`) every waiter learns it.
    fn pump(&mut self, out: &mut Vec<Settlement>) {
        self.pump_after(false, out);
    }

    /// [`pump`](Self::pump), whose first look may spin briefly for a
    /// request (`Server::try_recv_spin`). Returns how many it handed out.
    fn pump_after(&mut self, mut spin: bool, out: &mut Vec<Settlement>) -> usize {
        let mut served = 0;
        while !self.waiters.is_empty() {
            let received = if std::mem::take(&mut spin) { self.server.try_recv_spin() } else { self.server.try_recv() };
            match received {
                Ok(Some(request)) => {
                    let waiter = self.waiters.pop_front().expect("checked non-empty");
                    out.push(waiter.settle(Ok(request)));
                    served += 1;
                    self.spin_armed = true;
                }
                Ok(None) => break,
                Err(e @ ipcall::Error::Closed { .. }) => {
                    let name: Arc<str> = self.server.name().into();
                    let mut first = Some(e);
                    for waiter in self.waiters.drain(..) {
                        let closed = first.take().unwrap_or_else(|| ipcall::Error::Closed { name: name.clone() });
                        out.push(waiter.settle(Err(closed)));
                    }
                }
                // Anything else (an I/O error) fails the first waiter only;
                // the next readiness tries again for the others.
                Err(e) => {
                    let waiter = self.waiters.pop_front().expect("checked non-empty");
                    out.push(waiter.settle(Err(e)));
                    break;
                }
            }
        }
        served
    }
}

impl Driven for Receiving {
    fn reactor(&mut self) -> &mut Reactor {
        &mut self.reactor
    }

    fn readable(&mut self, failed: Option<std::io::Error>, out: &mut Vec<Settlement>) {
        if let Some(source) = failed {
            let name: Arc<str> = self.server.name().into();
            for waiter in self.waiters.drain(..) {
                let error = std::io::Error::new(source.kind(), source.to_string());
                out.push(waiter.settle(Err(ipcall::Error::Io { name: name.clone(), source: error })));
            }
            return;
        }
        self.served_in_a_row = 0;
        self.pump(out);
    }

    fn expire(&mut self, now: Instant, out: &mut Vec<Settlement>) {
        // A request that is ready wins over a timeout that is due.
        self.pump(out);
        let mut kept = VecDeque::with_capacity(self.waiters.len());
        for waiter in self.waiters.drain(..) {
            if waiter.deadline.is_some_and(|at| at <= now) {
                let timeout = ipcall::Error::Timeout { name: self.server.name().into() };
                out.push(waiter.settle(Err(timeout)));
            } else {
                kept.push_back(waiter);
            }
        }
        self.waiters = kept;
    }

    fn woken(&mut self, _out: &mut Vec<Settlement>) {}

    fn wants_poll(&self) -> bool {
        !self.waiters.is_empty()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.waiters.iter().filter_map(|waiter| waiter.deadline).min()
    }

    fn wants_waker(&self) -> bool {
        false
    }

    fn abandon(&mut self) {
        self.waiters.clear();
    }

    fn wants_spin(&self) -> bool {
        self.spin_armed && !self.waiters.is_empty()
    }

    fn spin(&mut self, out: &mut Vec<Settlement>) -> bool {
        // A new turn of the loop, as in `readable`.
        self.served_in_a_row = 0;
        let before = out.len();
        let served = self.pump_after(true, out);
        if served == 0 {
            // Nothing came (or the server ended): disarm until the next
            // request, so an idle server never spins.
            self.spin_armed = false;
        }
        out.len() > before
    }
}

impl Server {
    fn new(env: &Env, server: ipcall::Server) -> Server {
        // Asking for the descriptor makes the core keep it current from now on.
        let fd = server.as_raw_fd();
        let name = server.name().to_owned();
        let reactor = Reactor::new(env, fd);
        Server {
            shared: Rc::new(RefCell::new(Receiving {
                server: Arc::new(server),
                reactor,
                waiters: VecDeque::new(),
                served_in_a_row: 0,
                spin_armed: false,
            })),
            name,
        }
    }

    /// Queues a waiter, serves what is ready now, and lets libuv watch for the rest.
    fn wait(&self, env: &Env, step: bool, timeout: Option<Duration>) -> napi::Result<sys::napi_value> {
        let (deferred, promise) = reactor::promise(env)?;
        let mut out = Vec::new();
        {
            let mut state = self.shared.borrow_mut();
            // Too far away to represent: the same as none.
            let deadline = timeout.and_then(|limit| Instant::now().checked_add(limit));
            state.waiters.push_back(Waiter { deferred, step, deadline });
            if state.served_in_a_row < SERVED_IN_A_ROW {
                state.pump(&mut out);
                state.served_in_a_row += out.len() as u32;
            }
            if timeout == Some(Duration::ZERO) {
                state.expire(Instant::now(), &mut out);
            }
        }
        reactor::settle_all(env, out);
        reactor::update(&self.shared)?;
        Ok(promise)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // `recv()`s still waiting keep the core server (and its name) until
        // they are answered; then the handles close and it is dropped.
        if let Ok(mut state) = self.shared.try_borrow_mut() {
            reactor::owner_gone(&mut *state);
        }
    }
}

#[napi]
impl Server {
    /// Listens on `name` (`'mem:jobs'`, `'unix:/path.sock'`, ...). Throws
    /// `ADDR_IN_USE` if a live server holds it, `INVALID_NAME` if it does not parse.
    #[napi(factory)]
    pub fn bind(env: &Env, name: String, options: Option<ServerOptions>) -> napi::Result<Server> {
        let options = options.unwrap_or_default().to_core(env)?;
        let server = ipcall::Server::bind_with(&name, &options).map_err(|e| to_js(env, e))?;
        Ok(Server::new(env, server))
    }

    /// Listens on a new, unguessable name of transport `kind` (`'mem'`,
    /// `'unix'`, `'pipe'`, `'shm'`, `'nats'`); read it from `server.name`.
    #[napi(factory)]
    pub fn bind_unique(env: &Env, kind: String, options: Option<ServerOptions>) -> napi::Result<Server> {
        let kind: ipcall::Kind = kind.parse().map_err(|e| to_js(env, e))?;
        let options = options.unwrap_or_default().to_core(env)?;
        let server = ipcall::Server::bind_unique_with(kind, &options).map_err(|e| to_js(env, e))?;
        Ok(Server::new(env, server))
    }

    /// The name clients connect to.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// Resolves with the next request. Rejects with `CLOSED` once no request
    /// can come again, `TIMEOUT` after `options.timeout` milliseconds.
    #[napi(ts_return_type = "Promise<Request>")]
    pub fn recv<'env>(&self, env: &'env Env, options: Option<CallOptions>) -> napi::Result<Unknown<'env>> {
        let timeout = millis(env, "timeout", options.and_then(|o| o.timeout))?;
        let promise = self.wait(env, false, timeout)?;
        // SAFETY: (1) `promise` was just created in `env`, on this thread.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), promise) })
    }

    /// One step of `for await (const req of server)` (the iterator is made
    /// in JavaScript, see `faces.rs`): resolves `{ value: request, done:
    /// false }`, or `{ value: undefined, done: true }` once the server is
    /// closed; any other error rejects.
    #[napi(js_name = "__ipcallNext", skip_typescript)]
    pub fn next_step<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        let promise = self.wait(env, true, None)?;
        // SAFETY: (1) `promise` was just created in `env`, on this thread.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), promise) })
    }

    /// The next request if one is ready now, `null` if not (never waits).
    #[napi]
    pub fn try_recv(&self, env: &Env) -> napi::Result<Option<Request>> {
        let received = self.shared.borrow().server.try_recv();
        match received {
            Ok(request) => Ok(request.map(Request::new)),
            Err(e) => Err(to_js(env, e)),
        }
    }

    /// What this server has done since it was bound, counted by ipcall
    /// itself: calls, replies, fails, no-replies, errors by code, bytes,
    /// a latency histogram, open connections. A client reads the same with
    /// `client.serverStats()`.
    #[napi]
    pub fn stats(&self) -> crate::stats::ServerStats {
        (&self.shared.borrow().server.stats()).into()
    }

    /// Closes gracefully: as `close()` at once (the name is unbound, calls
    /// not yet received reject with `DISCONNECTED`, pending `recv()`s with
    /// `CLOSED`), then resolves once every request already received is
    /// answered or closed — `true` — or after `timeoutMs` milliseconds —
    /// `false`. The wait runs on a thread of napi's runtime: the JavaScript
    /// thread stays free to answer.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn drain<'env>(&self, env: &'env Env, timeout_ms: Option<f64>) -> napi::Result<PromiseRaw<'env, bool>> {
        let timeout = millis(env, "timeoutMs", timeout_ms)?;
        self.close(env)?;
        let server = self.shared.borrow().server.clone();
        let waiting = async move {
            let joined = tokio::task::spawn_blocking(move || server.drain(timeout)).await;
            joined.map_err(|e| napi::Error::from_reason(format!("drain thread failed: {e}")))
        };
        env.spawn_future(waiting)
    }

    /// Stops taking requests and unbinds the name. Pending `recv()`s reject
    /// with `CLOSED` (a `for await` loop ends); requests already received
    /// can still be answered.
    #[napi]
    pub fn close(&self, env: &Env) -> napi::Result<()> {
        let mut out = Vec::new();
        {
            let mut state = self.shared.borrow_mut();
            state.server.close();
            state.pump(&mut out);
        }
        reactor::settle_all(env, out);
        reactor::update(&self.shared)
    }
}

/// A received request as the JavaScript `Request` object.
pub(crate) fn request_value(env: &Env, request: ipcall::Request) -> napi::Result<sys::napi_value> {
    // SAFETY: (1) `env` is live, on its JavaScript thread, inside a handle scope.
    unsafe { Request::to_napi_value(env.raw(), Request::new(request)) }
}

/// An iteration result: `{ value: request, done: false }`, or
/// `{ value: undefined, done: true }` for `None`.
pub(crate) fn step_value(env: &Env, step: Option<ipcall::Request>) -> napi::Result<sys::napi_value> {
    let raw = env.raw();
    let done = step.is_none();
    let value = match step {
        Some(request) => request_value(env, request)?,
        // SAFETY: (1) as in `request_value`.
        None => unsafe { <()>::to_napi_value(raw, ()) }?,
    };
    let mut object = ptr::null_mut();
    // SAFETY: (1) as above; (2) `object` is a live out-pointer.
    let status = unsafe { sys::napi_create_object(raw, &mut object) };
    if status != sys::Status::napi_ok {
        return Err(napi::Error::new(napi::Status::from(status), "could not create an iteration result"));
    }
    // SAFETY: (1) as above.
    let done_value = unsafe { bool::to_napi_value(raw, done) }?;
    for (key, field) in [(c"value", value), (c"done", done_value)] {
        // SAFETY: (1) as above; (3) `object` and `field` are live values of
        // this env; `key` is NUL-terminated.
        let status = unsafe { sys::napi_set_named_property(raw, object, key.as_ptr(), field) };
        if status != sys::Status::napi_ok {
            return Err(napi::Error::new(napi::Status::from(status), "could not fill an iteration result"));
        }
    }
    Ok(object)
}

/// Who sent a request, as far as the transport can tell (absent fields are unknown).
#[napi(object)]
pub struct Peer {
    /// The sender's process id.
    pub pid: Option<u32>,
    /// The sender's user id.
    pub uid: Option<u32>,
    /// The sender's group id.
    pub gid: Option<u32>,
    /// `nats:` only: the client id the sender's NATS server assigned to its
    /// connection, as the sender states it (unchecked). Absent elsewhere, and
    /// when above `Number.MAX_SAFE_INTEGER` (not exact as a number).
    pub nats_client_id: Option<f64>,
    /// `nats:` only: the sender's NATS connection name (its `connectionName`,
    /// by default `ipcall client (pid N)`), as the sender states it.
    pub name: Option<String>,
}

/// The largest integer a JavaScript number holds exactly (2^53 − 1).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// One received request: its bytes (`data`), its sender (`peer`), and the
/// duty to answer with `reply(buf)` or `fail(buf)`, exactly once. A request
/// garbage-collected without an answer makes the call fail with `NO_REPLY`.
/// It stays answerable after its server was closed.
#[napi(custom_finalize)]
pub struct Request {
    /// The core request; `None` once answered.
    inner: Option<ipcall::Request>,
    /// The sender, copied out so it stays readable after the answer.
    peer: ipcall::Peer,
    /// The sender's connection name (`nats:`), copied out likewise.
    peer_name: Option<String>,
    /// The caller's deadline (copied out so it stays readable after the answer).
    deadline: Option<Instant>,
    /// `deadline` on the `performance.now()` clock, converted on first read
    /// so that every read returns the same number.
    deadline_ms: Option<f64>,
    /// The request's bytes until `data` is first read (then given to the Buffer).
    bytes: Option<Vec<u8>>,
    /// A strong reference to the Buffer `data` returns, created on first
    /// read so every read returns the same object; deleted in `finalize`.
    /// Invariant: null, or a live reference created in this object's environment.
    data_ref: sys::napi_ref,
    /// Whether its caller gave up, readable after the answer too.
    cancellation: ipcall::Cancelled,
    /// The `AbortController` behind `signal`, made on first read so every
    /// read returns the same signal; deleted in `finalize`.
    /// Invariant: null, or a live reference created in this object's environment.
    abort_ref: sys::napi_ref,
}

impl Request {
    fn new(mut request: ipcall::Request) -> Request {
        let bytes = request.take_data();
        let peer_name = request.peer_name().map(str::to_owned);
        Request {
            peer: request.peer(),
            peer_name,
            deadline: request.deadline(),
            deadline_ms: None,
            cancellation: request.cancelled(),
            abort_ref: ptr::null_mut(),
            inner: Some(request),
            bytes: Some(bytes),
            data_ref: ptr::null_mut(),
        }
    }

    fn take_inner(&mut self, env: &Env) -> napi::Result<ipcall::Request> {
        self.inner.take().ok_or_else(|| type_error(env, "this request was already answered"))
    }
}

#[napi]
impl Request {
    /// The request's bytes (the same Buffer on every read).
    #[napi(getter, ts_return_type = "Buffer")]
    pub fn data(&mut self, env: &Env) -> napi::Result<Unknown<'_>> {
        let raw = env.raw();
        if self.data_ref.is_null() {
            // SAFETY: (1) `raw` is the live environment of this call, on the JavaScript thread.
            let value = unsafe { crate::bytes::buffer_value(raw, self.bytes.take().unwrap_or_default()) }?;
            let mut reference = ptr::null_mut();
            // SAFETY: (1) as above; (2) `value` was just created in `raw`; (3) `reference` is a live local.
            let status = unsafe { sys::napi_create_reference(raw, value, 1, &mut reference) };
            if status != sys::Status::napi_ok {
                return Err(napi::Error::new(napi::Status::from(status), "could not keep the request's Buffer"));
            }
            self.data_ref = reference;
        }
        let mut value = ptr::null_mut();
        // SAFETY: (1) `data_ref` is a live reference created in this environment
        // (struct invariant), not yet deleted (only `finalize` deletes it).
        let status = unsafe { sys::napi_get_reference_value(raw, self.data_ref, &mut value) };
        if status != sys::Status::napi_ok {
            return Err(napi::Error::new(napi::Status::from(status), "could not read the request's Buffer"));
        }
        // SAFETY: (1) `value` is a live value of this environment.
        unsafe { Unknown::from_napi_value(raw, value) }
    }

    /// Who sent the request.
    #[napi(getter)]
    pub fn peer(&self) -> Peer {
        Peer {
            pid: self.peer.pid,
            uid: self.peer.uid,
            gid: self.peer.gid,
            nats_client_id: self.peer.nats_client_id.filter(|&id| id <= MAX_SAFE_INTEGER).map(|id| id as f64),
            name: self.peer_name.clone(),
        }
    }

    /// When the caller stops waiting, in milliseconds on the
    /// `performance.now()` clock (so `req.deadline - performance.now()` is
    /// the time left; it may be negative: the caller gave up), or `null` if
    /// the caller set no timeout (a `call`/`callSync` without
    /// `options.timeout`). The caller's remaining time is added to this
    /// process's clock on arrival (no clock is shared); over 100 years is
    /// clamped to 100 years. The same number on every read.
    #[napi(getter, ts_return_type = "number | null")]
    pub fn deadline(&mut self, env: &Env) -> napi::Result<Option<f64>> {
        let Some(at) = self.deadline else { return Ok(None) };
        if self.deadline_ms.is_none() {
            let now = Instant::now();
            let performance: Object<'_> = env.get_global()?.get_named_property("performance")?;
            let performance_now: Function<'_, (), f64> = performance.get_named_property("now")?;
            let js_now = performance_now.apply(performance, ())?;
            let ms = match at.checked_duration_since(now) {
                Some(ahead) => js_now + ahead.as_secs_f64() * 1000.0,
                None => js_now - now.duration_since(at).as_secs_f64() * 1000.0,
            };
            self.deadline_ms = Some(ms);
        }
        Ok(self.deadline_ms)
    }

    /// An `AbortSignal` that aborts when the caller gives up: its timeout
    /// passed, it dropped the call, or its own `AbortSignal` aborted
    /// (`call(data, {signal})`) — or when it is gone: its `unix:`/`pipe:`/
    /// `shm:` connection ended (closed, its process died, or dropped by the
    /// server; not the server's own `close`/`drain`). Pass it on to `fetch`,
    /// timers, streams...
    /// Answering after it aborted is allowed and harmless (the caller
    /// discards the answer). Never aborts where the caller cannot tell (an
    /// older peer; a `nats:` call not yet acknowledged). The same signal on
    /// every read.
    #[napi(getter, ts_return_type = "AbortSignal")]
    pub fn signal(&mut self, env: &Env) -> napi::Result<Unknown<'_>> {
        let raw = env.raw();
        if self.abort_ref.is_null() {
            // SAFETY: (1) `raw` is the live environment of this call, on its thread.
            let controller = unsafe { crate::abort::new_controller(raw) }?;
            let cancelled = match &self.inner {
                Some(request) => request.is_cancelled(),
                None => self.cancellation.is_cancelled(),
            };
            if cancelled {
                // SAFETY: (1) as above; `controller` was just made in `raw`.
                unsafe { crate::abort::abort(raw, controller) }?;
            } else if let Some(request) = &self.inner {
                // SAFETY: (1) as above.
                let aborter = unsafe { crate::abort::Aborter::new(raw, controller) }?;
                // Dropped unrun once the request is answered.
                request.on_cancel(move || aborter.fire());
            }
            // SAFETY: (1) as above.
            self.abort_ref = unsafe { crate::abort::reference(raw, controller) }?;
        }
        // SAFETY: (1) as above; (2) `abort_ref` is live (struct invariant).
        let signal = unsafe {
            let controller = crate::abort::referenced(raw, self.abort_ref)?;
            crate::abort::property(raw, controller, "signal")?
        };
        // SAFETY: (1) `signal` is a live value of `raw`.
        unsafe { Unknown::from_napi_value(raw, signal) }
    }

    /// True once the caller gave up (see `signal`); reading it looks at the
    /// connection without blocking, so a busy handler can poll it.
    #[napi(getter)]
    pub fn cancelled(&self) -> bool {
        match &self.inner {
            Some(request) => request.is_cancelled(),
            None => self.cancellation.is_cancelled(),
        }
    }

    /// Whether the request has been answered (by `reply` or `fail`).
    #[napi(getter)]
    pub fn answered(&self) -> bool {
        self.inner.is_none()
    }

    /// Answers with `data`. Throws `TOO_LARGE` if it exceeds the caller's
    /// limit (the caller then gets `NO_REPLY`), a `TypeError` if the request
    /// was already answered.
    #[napi(ts_args_type = "data: Buffer | ArrayBufferView | ArrayBuffer | string")]
    pub fn reply(&mut self, env: &Env, data: Bytes) -> napi::Result<()> {
        self.take_inner(env)?.reply(data.as_slice()).map_err(|e| to_js(env, e))
    }

    /// Answers with an application error: the caller's call rejects with
    /// code `REMOTE` and this `payload`.
    #[napi(ts_args_type = "payload: Buffer | ArrayBufferView | ArrayBuffer | string")]
    pub fn fail(&mut self, env: &Env, payload: Bytes) -> napi::Result<()> {
        self.take_inner(env)?.fail(payload.as_slice()).map_err(|e| to_js(env, e))
    }

    /// Declines to answer: the caller's call rejects with `NO_REPLY` at once
    /// (what happens anyway when an unanswered request is garbage-collected,
    /// made deterministic). Harmless on an answered request.
    #[napi]
    pub fn close(&mut self) {
        self.inner = None;
    }
}

impl ObjectFinalize for Request {
    fn finalize(self, env: Env) -> napi::Result<()> {
        if !self.data_ref.is_null() {
            // SAFETY: (1) napi runs finalizers on the JavaScript thread with a
            // live `env`; (2) `data_ref` is live (struct invariant) and deleted
            // exactly once, here.
            unsafe { sys::napi_delete_reference(env.raw(), self.data_ref) };
        }
        if !self.abort_ref.is_null() {
            // SAFETY: (1) as above, for `abort_ref`.
            unsafe { sys::napi_delete_reference(env.raw(), self.abort_ref) };
        }
        // Dropping an unanswered `inner` tells the caller NO_REPLY.
        Ok(())
    }
}
