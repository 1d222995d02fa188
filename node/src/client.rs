//! `Client`: `connect`, `call` (a Promise), `callSync`, `close`.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::os::fd::AsRawFd;
use std::ptr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use napi::bindgen_prelude::{Env, FromNapiValue, JsValue, PromiseRaw, Unknown};
use napi::sys;
use napi_derive::napi;

use crate::bytes::Bytes;
use crate::error::{js_error_value, js_error_value_with, to_js, to_js_message, type_error};
use crate::options::{millis, CallOptions, ConnectOptions};
use crate::reactor::{self, Driven, Reactor, Settle, Settlement, Value};
use crate::writer::{Handoff, Writer};

pub(crate) mod natives;

/// A connection to a server. Many calls may be in flight at once; each
/// resolves with its own reply (matched by id, never by order).
#[napi]
pub struct Client {
    /// The core client and its calls in flight, shared with the libuv
    /// handles that watch it.
    shared: Rc<RefCell<Calling>>,
    /// The server's name (kept for errors after `close()`).
    name: String,
    /// Its index in [`natives::CLIENTS`], by which the setup script's fast
    /// paths (`callSync`, `call` without options) find it; freed in `drop`.
    id: u32,
}

/// A client's calls in flight, driven on the JavaScript thread.
struct Calling {
    /// The core client; `None` after `close()`. Behind an `Rc` so that a
    /// call holds it with one plain count, not a clone of each `Arc`
    /// inside an `ipcall::Client` (three locked additions and subtractions).
    client: Option<Rc<ipcall::Client>>,
    name: Arc<str>,
    reactor: Reactor,
    /// Whether the core's event-loop descriptor was asked for (on the
    /// first `call()`: calls before it were synchronous and are finished).
    evented: bool,
    calls: HashMap<u64, Call>,
    /// `(deadline, id)` of the calls with a timeout, earliest first.
    deadlines: BTreeSet<(Instant, u64)>,
    next_id: u64,
    /// Started on the first request that found no room; `None` before and after `close()`.
    writer: Option<Writer>,
    handoff: Arc<Handoff>,
    /// Requests given to the writer thread and not handed back yet; while
    /// non-zero, new requests queue behind them (call order is kept).
    queued: usize,
    /// A reply is expected soon (a request left or a reply came since the
    /// last spin that caught nothing): spin briefly before the loop sleeps.
    spin_armed: bool,
    /// Calls settled inside `call()` itself since libuv last ran one of
    /// this client's callbacks (bounded: see [`EAGER_IN_A_ROW`]).
    eager_in_a_row: u32,
    /// Looks for a reply right after sending that found none, in a row
    /// (a server on this CPU has mostly answered while `try_send` woke it;
    /// one on another CPU mostly not).
    eager_misses: u32,
    /// While looking does not pay: calls left before the next probe.
    eager_probe_in: u32,
}

/// How many calls in a row may settle inside `call()`, before the next
/// one waits for the loop's next turn: a client whose answers always come
/// at once would otherwise hold the microtask queue forever and starve
/// timers and I/O.
const EAGER_IN_A_ROW: u32 = 64;

/// After this many looks right after sending found no reply in a row,
/// only one call in [`EAGER_PROBE_EVERY`] looks (a look that finds nothing
/// costs a system call on most transports).
const EAGER_MISSES: u32 = 4;

/// See [`EAGER_MISSES`].
const EAGER_PROBE_EVERY: u32 = 32;

/// One call in flight.
struct Call {
    /// Its Promise.
    to: Settle,
    /// `None` while the writer thread still holds the request.
    pending: Option<ipcall::Pending>,
    deadline: Option<Instant>,
}

impl Calling {
    fn closed_error(&self) -> ipcall::Error {
        ipcall::Error::Closed { name: self.name.clone() }
    }

    /// Sends a request (or queues it for the writer thread) and records the
    /// call, to be settled through `to`; or its outcome at once (refused,
    /// or answered already), which the caller settles.
    fn start(&mut self, data: &[u8], to: Settle, timeout: Option<Duration>) -> Started {
        let reject = |err| Started::Settled(Err(err));
        let Some(client) = self.client.clone() else {
            return reject(self.closed_error());
        };
        if !self.evented {
            // Asked before the first request, so that every request from
            // now on is announced on it.
            match client.fd() {
                Ok(fd) => self.reactor.set_fd(fd.as_raw_fd()),
                Err(e) => return reject(e),
            }
            self.evented = true;
        }
        // Read only for a timeout (a clock read is ~25 ns of a ~1 µs call).
        let since = timeout.map(|_| Instant::now());
        let id = self.next_id;
        self.next_id += 1;
        // Whether the send already spun for the answer (`try_call_spin`).
        let mut spun = false;
        let mut pending = if self.queued > 0 {
            None
        } else {
            // The server sees the timeout as the request's deadline.
            let sent = match timeout {
                // A call that may settle at once (see `eager`) looks, and
                // spins, as it sends: over `shm:` an answer found so is
                // taken as a blocking call takes it (no readiness, no
                // completion for the loop).
                None if self.may_settle_eagerly() => match client.try_call_spin(data) {
                    Ok(ipcall::TryCall::Answered(answer)) => {
                        self.eager_in_a_row += 1;
                        return Started::Settled(answer);
                    }
                    Ok(ipcall::TryCall::Sent(pending)) => {
                        spun = true;
                        Ok(Some(pending))
                    }
                    Ok(ipcall::TryCall::NoRoom) => Ok(None),
                    Err(e) => Err(e),
                },
                None => client.try_send(data),
                Some(limit) => client.try_send_timeout(data, limit),
            };
            match sent {
                Ok(sent) => sent,
                Err(e) => return reject(e),
            }
        };
        if let Some(answer) = pending.as_mut().and_then(|sent| self.eager(&client, sent, spun)) {
            // Answered already: no handle is armed, no loop turn is needed.
            return Started::Settled(answer);
        }
        if pending.is_none() {
            // No room now: the writer thread waits for it.
            if self.writer.is_none() {
                match Writer::start(ipcall::Client::clone(&client), self.handoff.clone()) {
                    Ok(writer) => self.writer = Some(writer),
                    Err(source) => return reject(ipcall::Error::Io { name: self.name.clone(), source }),
                }
            }
            let writer = self.writer.as_ref().expect("started above");
            if !writer.send(id, data.to_vec(), timeout.zip(since)) {
                return reject(ipcall::Error::Disconnected { name: self.name.clone() });
            }
            self.queued += 1;
        } else {
            self.spin_armed = true;
        }
        // Too far away to represent: the same as none.
        let deadline = timeout.zip(since).and_then(|(limit, since)| since.checked_add(limit));
        if let Some(at) = deadline {
            self.deadlines.insert((at, id));
        }
        self.calls.insert(id, Call { to, pending, deadline });
        Started::InFlight(id)
    }

    /// Gives up on call `id` (its `AbortSignal` aborted): dropping its
    /// `Pending` abandons it, which tells the server; returns its Promise,
    /// for the caller to reject, if the call was still in flight.
    fn abort(&mut self, id: u64) -> Option<Settle> {
        let call = self.calls.remove(&id)?;
        if let Some(at) = call.deadline {
            self.deadlines.remove(&(at, id));
        }
        Some(call.to)
    }

    /// The answer of the call just sent, if it is here before the call
    /// returns to JavaScript: over `shm:` a brief spin (the core's adaptive
    /// policy: the server on another CPU; `spun`: `try_call_spin` spun
    /// already), else — while it pays — one non-blocking look (a server on
    /// this CPU has often answered while `try_send` woke it). Then the
    /// Promise settles at once: no poll, no loop turn. Only for a call
    /// alone in flight (a look completes no other call, so nothing else
    /// needs collecting), and at most [`EAGER_IN_A_ROW`] times per loop turn.
    fn eager(
        &mut self,
        client: &ipcall::Client,
        sent: &mut ipcall::Pending,
        spun: bool,
    ) -> Option<ipcall::Result<Vec<u8>>> {
        if !self.may_settle_eagerly() {
            return None;
        }
        let answer = if !spun && client.progress_spin().unwrap_or(false) {
            sent.try_wait()
        } else {
            if self.eager_misses >= EAGER_MISSES {
                if self.eager_probe_in > 0 {
                    self.eager_probe_in -= 1;
                    return None;
                }
                self.eager_probe_in = EAGER_PROBE_EVERY;
            }
            let answer = client.progress().ok().and_then(|()| sent.try_wait());
            self.eager_misses = if answer.is_some() { 0 } else { self.eager_misses.saturating_add(1) };
            answer
        };
        if answer.is_some() {
            self.eager_in_a_row += 1;
        }
        answer
    }

    /// Whether a call sent now may settle inside `call()` (see [`eager`](Self::eager)).
    fn may_settle_eagerly(&self) -> bool {
        self.calls.is_empty() && self.eager_in_a_row < EAGER_IN_A_ROW
    }

    /// Settles every call whose answer has arrived (after `progress`).
    fn collect(&mut self, out: &mut Vec<Settlement>) {
        let Calling { calls, deadlines, spin_armed, .. } = self;
        calls.retain(|id, call| {
            let Some(answer) = call.pending.as_mut().and_then(ipcall::Pending::try_wait) else {
                return true;
            };
            if let Some(at) = call.deadline {
                deadlines.remove(&(at, *id));
            }
            out.push(Settlement { to: call.to, value: Value::Reply(answer) });
            // Replies are flowing: more may follow soon.
            *spin_armed = true;
            false
        });
    }

    /// Rejects every call with what `error` makes for it.
    fn fail_all(&mut self, out: &mut Vec<Settlement>, error: impl Fn() -> ipcall::Error) {
        self.deadlines.clear();
        for (_, call) in self.calls.drain() {
            out.push(Settlement { to: call.to, value: Value::Reply(Err(error())) });
        }
    }
}

impl Driven for Calling {
    fn reactor(&mut self) -> &mut Reactor {
        &mut self.reactor
    }

    fn readable(&mut self, failed: Option<std::io::Error>, out: &mut Vec<Settlement>) {
        // The loop turned: calls may settle inside `call()` again.
        self.eager_in_a_row = 0;
        let progressed = match (&self.client, failed) {
            (_, Some(source)) => Err(ipcall::Error::Io { name: self.name.clone(), source }),
            (Some(client), None) => client.progress(),
            (None, None) => Ok(()),
        };
        match progressed {
            Ok(()) => self.collect(out),
            // The connection cannot be read: no call can complete.
            Err(e) => {
                let (kind, message) = (e.kind(), e.to_string());
                let name = self.name.clone();
                self.fail_all(out, || match kind {
                    ipcall::ErrorKind::Disconnected => ipcall::Error::Disconnected { name: name.clone() },
                    _ => ipcall::Error::Io { name: name.clone(), source: std::io::Error::other(message.clone()) },
                });
            }
        }
    }

    fn expire(&mut self, now: Instant, out: &mut Vec<Settlement>) {
        // An answer that is already here wins over a timeout that is due.
        self.readable(None, out);
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            // Dropping its `Pending` abandons the call: a late answer is discarded.
            if let Some(call) = self.calls.remove(&id) {
                let timeout = ipcall::Error::Timeout { name: self.name.clone() };
                out.push(Settlement { to: call.to, value: Value::Reply(Err(timeout)) });
            }
        }
    }

    fn woken(&mut self, out: &mut Vec<Settlement>) {
        for (id, sent) in self.handoff.take() {
            self.queued -= 1;
            let Some(call) = self.calls.get_mut(&id) else {
                // Given up (timeout) meanwhile: dropping the `Pending` abandons it.
                continue;
            };
            match sent {
                Ok(pending) => call.pending = Some(pending),
                Err(e) => {
                    let call = self.calls.remove(&id).expect("found above");
                    if let Some(at) = call.deadline {
                        self.deadlines.remove(&(at, id));
                    }
                    out.push(Settlement { to: call.to, value: Value::Reply(Err(e)) });
                }
            }
        }
        // An answer may have been read before its `Pending` came back.
        self.collect(out);
    }

    fn wants_poll(&self) -> bool {
        !self.calls.is_empty()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(at, _)| at)
    }

    fn wants_waker(&self) -> bool {
        self.queued > 0
    }

    fn abandon(&mut self) {
        self.calls.clear();
        self.deadlines.clear();
        self.writer = None;
    }

    fn wants_spin(&self) -> bool {
        self.spin_armed && self.evented && !self.calls.is_empty()
    }

    fn spin(&mut self, out: &mut Vec<Settlement>) -> bool {
        // A new turn of the loop, as in `readable`.
        self.eager_in_a_row = 0;
        // The core spins only over shm:, under its adaptive policy and
        // budget; a spin that catches nothing disarms until the next
        // request or reply (an idle client never spins).
        let caught = self.client.as_ref().is_some_and(|client| client.progress_spin().unwrap_or(false));
        if caught {
            self.collect(out);
        } else {
            self.spin_armed = false;
        }
        caught
    }
}

/// What [`start_call`] did with a call.
enum Started {
    /// In flight under this id; settled through its `Settle` later.
    InFlight(u64),
    /// Its outcome now (refused, or answered already), for the caller to
    /// settle: nothing else will.
    Settled(ipcall::Result<Vec<u8>>),
}

/// Starts call `data` on `shared` for Promise `to`, and lets libuv watch
/// for its answer. A call that libuv cannot watch would never end: it is
/// given up at once and settled with `IO`.
fn start_call(shared: &Rc<RefCell<Calling>>, data: &[u8], to: Settle, timeout: Option<Duration>) -> Started {
    let started = shared.borrow_mut().start(data, to, timeout);
    let watched = reactor::update(shared);
    match (started, watched) {
        (Started::InFlight(id), Err(e)) if shared.borrow_mut().abort(id).is_some() => {
            let name = shared.borrow().name.clone();
            Started::Settled(Err(ipcall::Error::Io { name, source: std::io::Error::other(e.reason) }))
        }
        (started, _) => started,
    }
}

/// `callSync`'s round trip: the reply, or the error to throw.
fn call_blocking(
    shared: &Rc<RefCell<Calling>>,
    env: &Env,
    data: &[u8],
    timeout: Option<Duration>,
) -> napi::Result<Vec<u8>> {
    let client = {
        let state = shared.borrow();
        state.client.clone().ok_or_else(|| call_error(env, state.closed_error()))?
    };
    let answer = match timeout {
        None => client.call(data),
        Some(limit) => client.call_timeout(data, limit),
    };
    answer.map_err(|e| call_error(env, e))
}

impl Client {
    fn from_core(env: &Env, client: ipcall::Client) -> Client {
        let name: Arc<str> = client.name().into();
        let handoff = Arc::new(Handoff::default());
        let mut reactor = Reactor::new(env, -1);
        let (opened, closing) = (handoff.clone(), handoff.clone());
        reactor.with_waker(Box::new(move |waker| opened.opened(waker)), Box::new(move || closing.closing()));
        let calling = Calling {
            client: Some(Rc::new(client)),
            name: name.clone(),
            reactor,
            evented: false,
            calls: HashMap::new(),
            deadlines: BTreeSet::new(),
            next_id: 0,
            writer: None,
            handoff,
            queued: 0,
            spin_armed: false,
            eager_in_a_row: 0,
            eager_misses: 0,
            eager_probe_in: 0,
        };
        let shared = Rc::new(RefCell::new(calling));
        let id = natives::register(&shared);
        Client { shared, name: name.to_string(), id }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        natives::unregister(self.id);
        // Calls still in flight keep the connection until they are answered;
        // then the handles close and the core client is dropped.
        if let Ok(mut state) = self.shared.try_borrow_mut() {
            reactor::owner_gone(&mut *state);
        }
    }
}

/// `to_js` for a call's error. A call only ends in `Closed` because this
/// client was closed (the core's message speaks of a closed server, which
/// would mislead here).
fn call_error(env: &Env, err: ipcall::Error) -> napi::Error {
    match err {
        ipcall::Error::Closed { name } => to_js_message(env, ipcall::ErrorKind::Closed, closed_message(&name)),
        other => to_js(env, other),
    }
}

/// [`call_error`] as a value to reject a call's Promise with.
pub(crate) fn call_error_value(env: &Env, err: ipcall::Error) -> napi::Result<napi::sys::napi_value> {
    match err {
        ipcall::Error::Closed { ref name } => {
            let message = closed_message(name);
            js_error_value_with(env, err, message)
        }
        other => js_error_value(env, other),
    }
}

fn closed_message(name: &str) -> String {
    format!("{name}: this client is closed")
}

/// Connects to the server bound to `name`; throws `NOT_FOUND` at once if there
/// is none (use `connectAsync` with a `timeout` to wait for it to appear).
#[napi]
pub fn connect(env: &Env, name: String, options: Option<ConnectOptions>) -> napi::Result<Client> {
    let options = options.unwrap_or_default();
    if options.timeout.is_some() {
        return Err(type_error(
            env,
            "connect() never waits: use connectAsync(name, { timeout }) to wait for the server",
        ));
    }
    let client = ipcall::Client::connect_with(&name, &options.to_core(env)?).map_err(|e| to_js(env, e))?;
    Ok(Client::from_core(env, client))
}

/// Connects without blocking the event loop; with `options.timeout` it keeps
/// retrying until the server appears (then rejects with `NOT_FOUND`;
/// `TIMEOUT` if a server is there but does not complete the handshake).
#[napi(ts_return_type = "Promise<Client>")]
pub fn connect_async<'env>(
    env: &'env Env,
    name: String,
    options: Option<ConnectOptions>,
) -> napi::Result<PromiseRaw<'env, Client>> {
    let options = options.unwrap_or_default().to_core(env)?;
    // Connecting may sleep between retries: do it on a blocking thread of the
    // runtime (one per connect, never one per call).
    let connecting = async move {
        let joined = tokio::task::spawn_blocking(move || ipcall::Client::connect_with(&name, &options)).await;
        joined.map_err(|e| napi::Error::from_reason(format!("connect thread failed: {e}")))
    };
    env.spawn_future_with_callback(connecting, |env, connected| match connected {
        Ok(client) => Ok(Client::from_core(env, client)),
        Err(e) => Err(to_js(env, e)),
    })
}

#[napi]
impl Client {
    /// The name of the server this client talks to.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// This client's index in this thread's table (for the setup script).
    #[napi(js_name = "__ipcallClientId", skip_typescript)]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Sends `data` and resolves with the reply. Rejects with `REMOTE`
    /// (`err.payload` holds the server's error payload), `NO_REPLY`,
    /// `DISCONNECTED`, `TIMEOUT` (after `options.timeout` ms; the call is
    /// abandoned), `TOO_LARGE`, or `CLOSED` (this client was closed).
    ///
    /// Requests leave in call order. The request is written on the
    /// JavaScript thread when the transport has room, and the reply is read
    /// and the Promise settled there too, when libuv reports the client's
    /// descriptor readable: no thread hop. Only a request that finds no room
    /// (e.g. a full `shm:` ring) is copied to this client's writer thread,
    /// so a full transport never blocks the event loop.
    ///
    /// With `options.timeout`, the server sees the caller's deadline as
    /// `req.deadline` (what is left of the timeout when the request leaves).
    ///
    /// With `options.signal` (an `AbortSignal`), the call is given up when
    /// it aborts, like a timeout: the Promise rejects at once with an
    /// `AbortError` (`err.name === 'AbortError'`, `err.code ===
    /// 'ABORT_ERR'`, `err.cause` the signal's reason), the late answer is
    /// discarded, and the server's `req.signal` aborts. An already aborted
    /// signal rejects without sending anything.
    #[napi(
        ts_args_type = "data: Buffer | ArrayBufferView | ArrayBuffer | string, options?: AsyncCallOptions",
        ts_return_type = "Promise<Buffer>"
    )]
    pub fn call<'env>(
        &self,
        env: &'env Env,
        data: Bytes,
        options: Option<Unknown<'env>>,
    ) -> napi::Result<Unknown<'env>> {
        let raw = env.raw();
        let (options, signal) = match options {
            None => (None, None),
            Some(options) => {
                let value = options.raw();
                // SAFETY: (1) as above.
                if unsafe { crate::abort::is_nullish(raw, value) }? {
                    (None, None)
                } else {
                    // SAFETY: (1) as above; the typed options read only their own fields.
                    let typed = unsafe { CallOptions::from_napi_value(raw, value) }?;
                    // SAFETY: (1) as above (an object: it just converted).
                    let signal = unsafe { crate::abort::property(raw, value, "signal") }?;
                    // SAFETY: (1) as above.
                    let signal = (!unsafe { crate::abort::is_nullish(raw, signal) }?).then_some(signal);
                    (Some(typed), signal)
                }
            }
        };
        let timeout = millis(env, "timeout", options.and_then(|o| o.timeout))?;
        // Checked before the Promise exists: a bad signal throws, nothing is sent.
        let aborted = match signal {
            None => false,
            Some(signal) => {
                let not_a_signal = || type_error(env, "options.signal must be an AbortSignal");
                // SAFETY: (1) `signal` is a live value of `raw`.
                let listen =
                    unsafe { crate::abort::property(raw, signal, "addEventListener") }.map_err(|_| not_a_signal())?;
                // SAFETY: (1) as above.
                if !unsafe { crate::abort::is_function(raw, listen) }? {
                    return Err(not_a_signal());
                }
                // SAFETY: (1) as above.
                let aborted = unsafe { crate::abort::property(raw, signal, "aborted") }.map_err(|_| not_a_signal())?;
                // SAFETY: (1) as above.
                unsafe { crate::abort::is_true(raw, aborted) }
            }
        };
        let (deferred, promise) = reactor::promise(env)?;
        // SAFETY: (1) `promise` was just created in `env`, on this thread.
        let promise = unsafe { Unknown::from_raw_unchecked(raw, promise) };
        if let (true, Some(signal)) = (aborted, signal) {
            // Given up before it began: nothing is sent.
            // SAFETY: (1) as above; (2) `deferred` is new and settled once, here.
            unsafe {
                let reason = crate::abort::property(raw, signal, "reason")?;
                let error = crate::abort::abort_error(env, reason)?;
                sys::napi_reject_deferred(raw, deferred, error);
            }
            return Ok(promise);
        }
        match start_call(&self.shared, data.as_slice(), Settle::Deferred(deferred), timeout) {
            Started::Settled(outcome) => {
                let to = Settle::Deferred(deferred);
                reactor::settle_all(env, vec![Settlement { to, value: Value::Reply(outcome) }]);
            }
            Started::InFlight(id) => {
                if let Some(signal) = signal {
                    self.on_abort(env, signal, id)?;
                }
            }
        }
        Ok(promise)
    }

    /// Adds a one-time `abort` listener to `signal` that gives up call `id`
    /// (if it is still in flight then) and rejects its Promise.
    fn on_abort(&self, env: &Env, signal: sys::napi_value, id: u64) -> napi::Result<()> {
        let calling = Rc::downgrade(&self.shared);
        let listener = env.create_function_from_closure::<Unknown, (), _>("ipcallAbort", move |ctx| {
            let Some(shared) = calling.upgrade() else { return Ok(()) };
            let to = shared.borrow_mut().abort(id);
            // Only calls with options (made by Node-API) have a signal.
            let Some(Settle::Deferred(deferred)) = to else { return Ok(()) };
            let env = &*ctx.env;
            let raw = env.raw();
            // SAFETY: (1) a listener runs on the JavaScript thread of its live
            // environment; `this` is the signal; (2) `deferred` was taken out of
            // the call table above, so it is settled once, here.
            unsafe {
                // The listener's argument is the `abort` Event; its target the signal.
                let event = ctx.get::<Unknown>(0)?.raw();
                let signal = crate::abort::property(raw, event, "target")?;
                let reason = crate::abort::property(raw, signal, "reason")?;
                let error = crate::abort::abort_error(env, reason)?;
                sys::napi_reject_deferred(raw, deferred, error);
            }
            reactor::update(&shared)
        })?;
        let raw = env.raw();
        // SAFETY: (1) `raw` is live on this thread; `signal` and the values
        // made here are live values of it.
        unsafe {
            let mut event = ptr::null_mut();
            sys::napi_create_string_utf8(raw, c"abort".as_ptr(), 5, &mut event);
            let mut options = ptr::null_mut();
            sys::napi_create_object(raw, &mut options);
            let mut yes = ptr::null_mut();
            sys::napi_get_boolean(raw, true, &mut yes);
            sys::napi_set_named_property(raw, options, c"once".as_ptr(), yes);
            crate::abort::call_method(raw, signal, "addEventListener", &[event, listener.raw(), options])?;
        }
        Ok(())
    }

    /// Sends `data` and blocks the calling thread until the reply (or
    /// `options.timeout` ms, which the server sees as `req.deadline`). Same
    /// errors as `call`. For scripts and worker threads; in a server
    /// process prefer `await call()`.
    #[napi(
        ts_args_type = "data: Buffer | ArrayBufferView | ArrayBuffer | string, options?: CallOptions",
        ts_return_type = "Buffer"
    )]
    pub fn call_sync<'env>(
        &self,
        env: &'env Env,
        data: Bytes,
        options: Option<CallOptions>,
    ) -> napi::Result<Unknown<'env>> {
        let timeout: Option<Duration> = millis(env, "timeout", options.and_then(|o| o.timeout))?;
        let reply = call_blocking(&self.shared, env, data.as_slice(), timeout)?;
        // SAFETY: (1) `env` is this call's live environment, on its thread.
        let value = unsafe { crate::bytes::buffer_value(env.raw(), reply) }?;
        // SAFETY: (2) `value` was just created in `env`.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), value) })
    }

    /// Checks that the server answers, in one round trip that its ipcall
    /// library answers itself (the application never sees it); resolves
    /// with the round trip in milliseconds. Rejects with `TIMEOUT` after
    /// `options.timeout` ms, `PROTOCOL` if the server's ipcall is too old to
    /// answer, `DISCONNECTED` if it is gone, `CLOSED` if this client was
    /// closed. The wait runs on a thread of napi's runtime.
    #[napi(ts_args_type = "options?: CallOptions", ts_return_type = "Promise<number>")]
    pub fn ping<'env>(&self, env: &'env Env, options: Option<CallOptions>) -> napi::Result<PromiseRaw<'env, f64>> {
        let timeout = millis(env, "timeout", options.and_then(|o| o.timeout))?;
        let client = self.core(env)?;
        let asking = async move {
            let joined = tokio::task::spawn_blocking(move || client.ping(timeout)).await;
            joined.map_err(|e| napi::Error::from_reason(format!("ping thread failed: {e}")))
        };
        env.spawn_future_with_callback(asking, |env, answered| match answered {
            Ok(rtt) => Ok(rtt.as_secs_f64() * 1000.0),
            Err(e) => Err(to_js(env, e)),
        })
    }

    /// The server's statistics (what `server.stats()` returns in its
    /// process), answered by its library as `ping` is; the same errors.
    #[napi(ts_args_type = "options?: CallOptions", ts_return_type = "Promise<ServerStats>")]
    pub fn server_stats<'env>(
        &self,
        env: &'env Env,
        options: Option<CallOptions>,
    ) -> napi::Result<PromiseRaw<'env, crate::stats::ServerStats>> {
        let timeout = millis(env, "timeout", options.and_then(|o| o.timeout))?;
        let client = self.core(env)?;
        let asking = async move {
            let joined = tokio::task::spawn_blocking(move || client.server_stats(timeout)).await;
            joined.map_err(|e| napi::Error::from_reason(format!("stats thread failed: {e}")))
        };
        env.spawn_future_with_callback(asking, |env, answered| match answered {
            Ok(stats) => Ok(crate::stats::ServerStats::from(&stats)),
            Err(e) => Err(to_js(env, e)),
        })
    }

    /// The core client, or `CLOSED` once this one was closed.
    fn core(&self, env: &Env) -> napi::Result<ipcall::Client> {
        let state = self.shared.borrow();
        state.client.as_deref().cloned().ok_or_else(|| to_js(env, state.closed_error()))
    }

    /// Closes the connection: calls in flight reject with `CLOSED` at once,
    /// later calls too. Closing twice is harmless.
    #[napi]
    pub fn close(&self, env: &Env) {
        let mut out = Vec::new();
        {
            let mut state = self.shared.borrow_mut();
            state.client = None;
            state.writer = None;
            let name = state.name.clone();
            state.fail_all(&mut out, || ipcall::Error::Closed { name: name.clone() });
            state.reactor.close::<Calling>();
        }
        reactor::settle_all(env, out);
    }
}
