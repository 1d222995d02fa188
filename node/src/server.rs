//! `Server` (bind, recv, async iteration) and `Request` (data, peer, reply, fail).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::ptr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use napi::bindgen_prelude::{Env, PromiseRaw, ToNapiValue, Unknown};
use napi::sys;
use napi_derive::napi;

use crate::error::to_js;
use crate::ids::Ids;
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
    /// Its index in [`SERVERS`], by which the setup script's fast path
    /// (`takeOrWait`) finds it; freed in `drop`.
    id: u32,
}

thread_local! {
    /// This thread's servers; a freed id is reused by the next server. A
    /// number is all JavaScript passes to `takeOrWait`, so any number is
    /// safe: one that names no server is refused.
    static SERVERS: RefCell<Ids<Rc<RefCell<Receiving>>>> = const { RefCell::new(Ids::new()) };
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
        Settlement { to: reactor::Settle::Deferred(self.deferred), value }
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
        let shared = Rc::new(RefCell::new(Receiving {
            server: Arc::new(server),
            reactor,
            waiters: VecDeque::new(),
            served_in_a_row: 0,
            spin_armed: false,
        }));
        let id = SERVERS.with(|servers| servers.borrow_mut().insert(shared.clone()));
        Server { shared, name, id }
    }
}

/// Queues a waiter, serves what is ready now (unless the caller just found
/// nothing: `pump` false), and lets libuv watch for the rest.
fn wait(
    shared: &Rc<RefCell<Receiving>>,
    env: &Env,
    step: bool,
    timeout: Option<Duration>,
    pump: bool,
) -> napi::Result<sys::napi_value> {
    let (deferred, promise) = reactor::promise(env)?;
    let mut out = Vec::new();
    {
        let mut state = shared.borrow_mut();
        // Too far away to represent: the same as none.
        let deadline = timeout.and_then(|limit| Instant::now().checked_add(limit));
        state.waiters.push_back(Waiter { deferred, step, deadline });
        if pump && state.served_in_a_row < SERVED_IN_A_ROW {
            state.pump(&mut out);
            state.served_in_a_row += out.len() as u32;
        }
        if timeout == Some(Duration::ZERO) {
            state.expire(Instant::now(), &mut out);
        }
    }
    reactor::settle_all(env, out);
    reactor::update(shared)?;
    Ok(promise)
}

impl Drop for Server {
    fn drop(&mut self) {
        // `try_with`: at thread exit the table may already be gone.
        let _ = SERVERS.try_with(|servers| {
            if let Ok(mut servers) = servers.try_borrow_mut() {
                servers.remove(self.id);
            }
        });
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
        let promise = wait(&self.shared, env, false, timeout, true)?;
        // SAFETY: (1) `promise` was just created in `env`, on this thread.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), promise) })
    }

    /// The number the setup script's fast path passes to `takeOrWait` (see `faces.rs`).
    #[napi(js_name = "__ipcallId", skip_typescript)]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The next request if one is ready now, `null` if not (never waits).
    #[napi(ts_return_type = "Request | null")]
    pub fn try_recv<'env>(&self, env: &'env Env) -> napi::Result<Option<Unknown<'env>>> {
        let received = self.shared.borrow().server.try_recv();
        match received {
            Ok(Some(request)) => {
                // SAFETY: (1) `env` is live, on its JavaScript thread, inside the call's handle scope.
                let value = unsafe { crate::requests::request_value(env.raw(), request, false) }?;
                // SAFETY: (2) `value` was just made in `env`.
                Ok(Some(unsafe { Unknown::from_raw_unchecked(env.raw(), value) }))
            }
            Ok(None) => Ok(None),
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

/// The iteration result that ends a `for await` loop: `{ value: undefined, done: true }`.
pub(crate) fn step_done(env: &Env) -> napi::Result<sys::napi_value> {
    let raw = env.raw();
    // SAFETY: (1) `env` is live, on its JavaScript thread, inside a handle scope.
    let value = unsafe { <()>::to_napi_value(raw, ()) }?;
    let mut object = ptr::null_mut();
    // SAFETY: (1) as above; (2) `object` is a live out-pointer.
    let status = unsafe { sys::napi_create_object(raw, &mut object) };
    if status != sys::Status::napi_ok {
        return Err(napi::Error::new(napi::Status::from(status), "could not create an iteration result"));
    }
    // SAFETY: (1) as above.
    let done_value = unsafe { bool::to_napi_value(raw, true) }?;
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

/// `takeOrWait(id, step)`, what the setup script's `recv()` (no options)
/// and `for await` steps call: a request ready now is admitted (see
/// `requests.rs`) and the `data` argument of `adoptRequest` returned, with
/// the shared array's `TOOK` set (the script makes the object: no Promise
/// is made here); otherwise a Promise of the request (or, if `step`, of
/// the iteration result) is returned, as the native `recv()` does, without
/// a second look for a request just found missing. `recv()`s already
/// waiting come first, and after [`SERVED_IN_A_ROW`] handed out the next
/// waits for the loop to turn. Another error of the core rejects.
///
/// # Safety
/// Called by Node on `env`'s JavaScript thread with `call`.
pub(crate) unsafe extern "C" fn take_or_wait(env: sys::napi_env, call: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: (1) per the contract.
    unsafe {
        crate::requests::boundary(env, || {
            let [id, step] = crate::requests::arguments::<2>(env, call)?;
            let id = crate::requests::number(env, id);
            let step = crate::abort::is_true(env, step);
            let shared = SERVERS.with(|servers| servers.try_borrow().ok()?.get(id));
            let Some(shared) = shared else {
                return Err(crate::error::type_error(&Env::from_raw(env), "not a Server"));
            };
            let env_ref = Env::from_raw(env);
            let mut pump = true;
            let taken = {
                let mut state = shared.try_borrow_mut().map_err(|_| napi::Error::from_reason("ipcall: server busy"))?;
                if state.waiters.is_empty() && state.served_in_a_row < SERVED_IN_A_ROW {
                    // A request was handed out lately, so the next may be on
                    // its way (a client on another CPU answers in ~1 µs):
                    // look with the core's brief spin here, inside the
                    // caller's turn, as `call()`'s eager look does for
                    // replies. The core spins only under its adaptive policy
                    // and budget (never for a client on this CPU); a spin
                    // that catches nothing disarms, as the loop's does.
                    let spin = state.spin_armed;
                    let received = if spin { state.server.try_recv_spin() } else { state.server.try_recv() };
                    match received {
                        Ok(Some(request)) => {
                            state.served_in_a_row += 1;
                            state.spin_armed = true;
                            Some(Ok(Box::new(request)))
                        }
                        Ok(None) => {
                            state.spin_armed = false;
                            pump = false;
                            None
                        }
                        // Closed: the waiter's pump settles it (`CLOSED` is sticky).
                        Err(ipcall::Error::Closed { .. }) => None,
                        Err(e) => Some(Err(e)),
                    }
                } else {
                    None
                }
            };
            match taken {
                Some(Ok(request)) => crate::requests::admit(env, request).map(Some),
                Some(Err(e)) => {
                    // Rejects (as the native path would), never throws.
                    let (deferred, promise) = reactor::promise(&env_ref)?;
                    let out = vec![Waiter { deferred, step, deadline: None }.settle(Err(e))];
                    reactor::settle_all(&env_ref, out);
                    Ok(Some(promise))
                }
                None => wait(&shared, &env_ref, step, None, pump).map(Some),
            }
        })
    }
}

/// One received request: its bytes (`data`), its sender (`peer`), and the
/// duty to answer with `reply(buf)` or `fail(buf)`, exactly once. A request
/// garbage-collected without an answer makes the call fail with `NO_REPLY`.
/// It stays answerable after its server was closed.
// The class users see (`instanceof`, `constructor`, its prototype's
// members); its instances are made by the setup script (`faces.rs`) over a
// token into this thread's request table (`requests.rs`), and its members
// are declared in `dts-header.d.ts`. Not constructible from JavaScript.
#[napi]
pub struct Request {}
