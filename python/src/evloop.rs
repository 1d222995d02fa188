//! `Client.call_async` on asyncio loops, driven on the loop thread itself.
//!
//! The connection's pollable descriptor (`Client::fd`) is watched with
//! `loop.add_reader` by every loop that has calls in flight on it, once per
//! loop. Its callback runs `Client::progress` — which reads what the
//! connection has and completes calls, without blocking — and settles the
//! Future of every call whose `Pending::try_wait` is `Some`. Requests are
//! written with `Client::try_send` on the loop thread; when the transport
//! has no room they wait in the loop's queue and go out on a later readiness
//! (the descriptor reports room), with a timer as a backstop. No thread is
//! started and none is crossed on the way.
//!
//! Several loops may use one connection (from their own threads): each has
//! its table of calls. `progress` on one loop may complete another's calls
//! and clear the descriptor's readiness before that loop saw it, so after
//! every `progress` all tables are looked at, and a loop with completed
//! calls is woken with `call_soon_threadsafe` (that hop happens only when
//! two loops share a connection).
//!
//! Everything here runs with the GIL held and never blocks: `try_send`,
//! `progress` and `try_wait` do not wait. Our lock is never held while
//! Python code runs (settling a Future, `add_reader`), which could re-enter.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipcall::{Client, Error, Pending, TryCall};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyWeakrefReference};

use crate::errors;
use crate::server::lock;

/// The outcome of a call, once `try_wait` gave it.
type Outcome = ipcall::Result<Vec<u8>>;

/// A request's bytes kept until it can be sent.
pub(crate) enum Owned {
    /// An immutable `bytes`, kept without copying.
    Bytes(Py<PyBytes>),
    /// A private copy of anything else.
    Copied(Vec<u8>),
}

impl Owned {
    fn as_slice<'a>(&'a self, py: Python<'a>) -> &'a [u8] {
        match self {
            Owned::Bytes(bytes) => bytes.bind(py).as_bytes(),
            Owned::Copied(vec) => vec,
        }
    }
}

/// One call of a loop.
struct Call {
    future: Py<PyAny>,
    /// The call in flight; `None` once its outcome was taken.
    pending: Option<Pending>,
    /// Taken by `try_wait` (possibly by another loop's thread), not yet
    /// handed to the Future.
    outcome: Option<Outcome>,
}

/// A request waiting for room in the transport.
struct Blocked {
    token: u64,
    data: Owned,
    /// The caller's timeout, if it gave one: what is left of it when the
    /// request goes out is its deadline.
    timeout: Option<Timed>,
    future: Py<PyAny>,
}

/// A `call_async` timeout: `total` seconds from `since` (when it was called).
#[derive(Clone, Copy)]
pub(crate) struct Timed {
    pub(crate) total: Duration,
    pub(crate) since: Instant,
}

/// `try_send`, carrying what is left of `timeout` as the request's deadline.
fn try_send(client: &Client, data: &[u8], timeout: Option<Timed>) -> ipcall::Result<Option<Pending>> {
    match timeout {
        None => client.try_send(data),
        Some(Timed { total, since }) => client.try_send_timeout(data, total.saturating_sub(since.elapsed())),
    }
}

/// The calls of one event loop on this connection.
struct LoopCalls {
    /// The loop's identity (`id(loop)`), checked against `event_loop`.
    key: usize,
    /// The loop, weakly: a loop that is gone is forgotten.
    event_loop: Py<PyWeakrefReference>,
    calls: HashMap<u64, Call>,
    blocked: VecDeque<Blocked>,
    /// A `call_soon_threadsafe` wake-up of this loop is on its way.
    woken: bool,
    /// A look at whether the reader can go is scheduled on the loop.
    release_scheduled: bool,
    /// A retry timer for `blocked` is armed.
    retry_armed: bool,
}

impl LoopCalls {
    fn idle(&self) -> bool {
        self.calls.is_empty() && self.blocked.is_empty()
    }
}

/// The asyncio state of one connection, shared by the clones of a client.
#[derive(Default)]
pub(crate) struct AsyncConn {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// A clone of the client while any loop watches its descriptor: it
    /// keeps the connection, so the descriptor's number, alive.
    client: Option<Client>,
    /// The descriptor, once asked for.
    fd: Option<RawFd>,
    loops: Vec<LoopCalls>,
    next_token: u64,
}

impl State {
    /// The index of `event_loop`'s table, forgetting tables of loops that are gone.
    fn find(&mut self, py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> Option<usize> {
        let key = event_loop.as_ptr() as usize;
        self.loops.retain(|l| l.event_loop.bind(py).upgrade().is_some());
        self.loops.iter().position(|l| l.key == key)
    }
}

/// What to do once our lock is released.
#[derive(Default)]
struct After {
    settle: Vec<(Py<PyAny>, Outcome)>,
    /// Loops to wake with `call_soon_threadsafe`.
    wake: Vec<Py<PyAny>>,
    /// Schedule a look at releasing the reader on the current loop.
    schedule_release: bool,
    /// Arm the retry timer on the current loop.
    arm_retry: bool,
    /// Python objects to drop without our lock.
    garbage: Vec<Py<PyAny>>,
}

/// What `submit` did.
pub(crate) enum Submitted {
    /// The call is in flight (or waits for room) under this token, on the
    /// running loop, whose Future will have its outcome.
    Token { token: u64, future: Py<PyAny>, event_loop: Py<PyAny> },
    /// The reply was there at once.
    Reply(Py<PyBytes>),
}

/// How long a lone call (no call of any loop in flight on its connection)
/// waits for its reply on the loop thread, without the GIL, before it
/// leaves the wait to the loop. The core's wait spins where that pays and
/// reads the wire itself, so a quick reply costs no trip through the loop;
/// a slow one costs the loop at most this much. Longer waits measured
/// worse over `shm:` on one CPU.
const LONE_WAIT: Duration = Duration::from_micros(10);

/// A lone call's short wait for its reply (see [`LONE_WAIT`]); `spun`:
/// its send spun for it already (`try_call_spin`).
fn wait_alone(py: Python<'_>, client: &Client, pending: &mut Pending, spun: bool) -> Option<Outcome> {
    // Over `shm:` with the server on another CPU the reply comes in ~1 µs:
    // the core's brief spin catches it with the GIL held (shorter than a
    // GIL hand-off), withdrawing the wake-up that `try_send` asked for, so
    // the server rings no bell. It spins only where a blocking wait would,
    // and its budget drops to zero while spins catch nothing; elsewhere
    // (other transports, one CPU) it returns false at once.
    if !spun && client.progress_spin().unwrap_or(false) {
        if let Some(outcome) = pending.try_wait() {
            return Some(outcome);
        }
    }
    // The wait reads the connection itself first (no system call if the
    // peer answered already, woken on this CPU by the request).
    py.detach(|| pending.try_wait_timeout(LONE_WAIT))
}

/// While requests wait for room, the loop also looks again this often (in
/// seconds), should no readiness come (e.g. another thread held the writer
/// when `try_send` looked).
const RETRY: f64 = 0.001;

/// `owner`'s method `name` (the native client's callbacks for the loop).
fn method<'py>(owner: &Bound<'py, PyAny>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    owner.getattr(name)
}

/// `asyncio.get_running_loop`, looked up once.
static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The running asyncio loop of this thread (`RuntimeError` if none).
fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let get = GET_RUNNING_LOOP
        .get_or_try_init(py, || py.import("asyncio")?.getattr("get_running_loop").map(Bound::unbind))?;
    get.bind(py).call0()
}

impl AsyncConn {
    /// Sends `data` for a call on the running loop. Returns the reply if
    /// it was there at once (a lone call that `wait_alone` caught: then no
    /// loop is looked up and no Future made, which cost more than the
    /// round trip over `shm:`), else the call's token, its Future and the
    /// loop. `owner` is the native client (its `_on_ready`, `_retry_loop`
    /// and `_release_loop` are the loop's callbacks).
    pub(crate) fn submit(
        &self,
        py: Python<'_>,
        client: &Client,
        data: Owned,
        timeout: Option<Timed>,
        owner: &Bound<'_, PyAny>,
    ) -> PyResult<Submitted> {
        let mut state = lock(&self.state);
        let fd = match state.fd {
            Some(fd) => fd,
            None => {
                // Before the first send: calls sent earlier are not announced.
                let fd = client.fd().map_err(|e| errors::to_py(py, e))?.as_raw_fd();
                state.fd = Some(fd);
                fd
            }
        };
        // A lone call (none of any loop in flight here) is sent at once and
        // looks for its reply before anything else: the peer may have
        // answered already (woken on this CPU by the request), or answer
        // within a short wait (a peer on another CPU).
        let lone = state.loops.iter().all(LoopCalls::idle);
        let mut sent = None;
        if lone {
            // Without a timeout the send looks and spins for the reply
            // itself (`try_call_spin`: over `shm:` a reply caught so is
            // taken as a blocking call takes it, with no completion to
            // collect); a timed call sends its deadline with `try_send`.
            let spun = timeout.is_none();
            let tried = match timeout {
                None => client.try_call_spin(data.as_slice(py)),
                Some(_) => {
                    try_send(client, data.as_slice(py), timeout).map(|sent| sent.map_or(TryCall::NoRoom, TryCall::Sent))
                }
            };
            let others = !state.loops.is_empty();
            drop(state);
            let looked = matches!(tried, Ok(TryCall::Answered(_) | TryCall::Sent(_)));
            let outcome = match tried {
                Ok(TryCall::Answered(outcome)) => Some(outcome),
                Ok(TryCall::Sent(mut pending)) => {
                    let outcome = wait_alone(py, client, &mut pending, spun);
                    if outcome.is_none() {
                        sent = Some(pending);
                    }
                    outcome
                }
                Ok(TryCall::NoRoom) => None,
                Err(e) => return Err(errors::to_py(py, e)),
            };
            if others && looked {
                // Our reads may have cleared readiness other loops wait for.
                self.wake_loops(py, owner)?;
            }
            if let Some(outcome) = outcome {
                return match outcome {
                    Ok(reply) => Ok(Submitted::Reply(PyBytes::new(py, &reply).unbind())),
                    Err(e) => Err(errors::to_py(py, e)),
                };
            }
        } else {
            drop(state);
        }
        // The call goes to the loop: a call in flight is abandoned (by
        // dropping it) if there is no running loop.
        let event_loop = running_loop(py)?;
        let future = event_loop.call_method0("create_future")?.unbind();
        let mut state = lock(&self.state);
        let index = state.find(py, &event_loop);
        if !lone {
            // Behind requests of this loop that wait for room, in order.
            let queue_behind = index.is_some_and(|i| !state.loops[i].blocked.is_empty());
            if !queue_behind {
                match try_send(client, data.as_slice(py), timeout) {
                    Ok(pending) => sent = pending,
                    Err(e) => {
                        drop(state);
                        return Err(errors::to_py(py, e));
                    }
                }
            }
        }
        let new_loop = index.is_none();
        let index = match index {
            Some(i) => i,
            None => {
                state.loops.push(LoopCalls {
                    key: event_loop.as_ptr() as usize,
                    event_loop: PyWeakrefReference::new(&event_loop)?.unbind(),
                    calls: HashMap::new(),
                    blocked: VecDeque::new(),
                    woken: false,
                    release_scheduled: false,
                    retry_armed: false,
                });
                if state.client.is_none() {
                    state.client = Some(client.clone());
                }
                state.loops.len() - 1
            }
        };
        state.next_token += 1;
        let token = state.next_token;
        let calls = &mut state.loops[index];
        let mut arm_retry = false;
        match sent {
            Some(pending) => {
                calls.calls.insert(token, Call { future: future.clone_ref(py), pending: Some(pending), outcome: None });
            }
            None => {
                calls.blocked.push_back(Blocked { token, data, timeout, future: future.clone_ref(py) });
                arm_retry = !std::mem::replace(&mut calls.retry_armed, true);
            }
        }
        drop(state);
        if new_loop {
            event_loop.call_method1("add_reader", (fd, method(owner, "_on_ready")?, &event_loop))?;
        }
        if arm_retry {
            event_loop.call_method1("call_later", (RETRY, method(owner, "_retry_loop")?, &event_loop))?;
        }
        Ok(Submitted::Token { token, future, event_loop: event_loop.unbind() })
    }

    /// The retry timer of `event_loop` fired.
    pub(crate) fn retry(
        &self,
        py: Python<'_>,
        event_loop: &Bound<'_, PyAny>,
        owner: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        {
            let mut state = lock(&self.state);
            if let Some(index) = state.find(py, event_loop) {
                state.loops[index].retry_armed = false;
            }
        }
        self.on_ready(py, event_loop, owner)
    }

    /// The reader callback of `event_loop`: progress, then settle.
    pub(crate) fn on_ready(
        &self,
        py: Python<'_>,
        event_loop: &Bound<'_, PyAny>,
        owner: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let client = lock(&self.state).client.clone();
        let Some(client) = client else { return Ok(()) };
        // Non-blocking; its errors are the calls' outcomes.
        let _ = client.progress();
        let key = event_loop.as_ptr() as usize;
        let mut after = After::default();
        {
            let mut state = lock(&self.state);
            let state = &mut *state;
            for calls in &mut state.loops {
                if calls.key == key {
                    calls.woken = false;
                    // Requests that found no room, in order, while it lasts.
                    while let Some(blocked) = calls.blocked.front() {
                        match try_send(&client, blocked.data.as_slice(py), blocked.timeout) {
                            Ok(None) => break,
                            Ok(Some(pending)) => {
                                let blocked = calls.blocked.pop_front().expect("front exists");
                                let call = Call { future: blocked.future, pending: Some(pending), outcome: None };
                                calls.calls.insert(blocked.token, call);
                            }
                            Err(e) => {
                                let blocked = calls.blocked.pop_front().expect("front exists");
                                after.settle.push((blocked.future, Err(e)));
                            }
                        }
                    }
                    if !calls.blocked.is_empty() && !calls.retry_armed {
                        calls.retry_armed = true;
                        after.arm_retry = true;
                    }
                }
                let ready = take_ready(calls);
                if calls.key == key {
                    for token in ready {
                        if let Some(mut call) = calls.calls.remove(&token) {
                            if let Some(outcome) = call.outcome.take() {
                                after.settle.push((call.future, outcome));
                            }
                        }
                    }
                    if calls.idle() && !calls.release_scheduled {
                        calls.release_scheduled = true;
                        after.schedule_release = true;
                    }
                } else if !ready.is_empty() && !calls.woken {
                    if let Some(other) = calls.event_loop.bind(py).upgrade() {
                        calls.woken = true;
                        after.wake.push(other.unbind());
                    }
                }
            }
        }
        self.finish(py, event_loop, owner, after)
    }

    /// Does what `after` says, without our lock.
    fn finish(
        &self,
        py: Python<'_>,
        event_loop: &Bound<'_, PyAny>,
        owner: &Bound<'_, PyAny>,
        after: After,
    ) -> PyResult<()> {
        for (future, outcome) in after.settle {
            settle(py, future.bind(py), outcome)?;
        }
        wake(py, after.wake, owner)?;
        if after.schedule_release {
            event_loop.call_method1("call_soon", (method(owner, "_release_loop")?, event_loop))?;
        }
        if after.arm_retry {
            event_loop.call_method1("call_later", (RETRY, method(owner, "_retry_loop")?, event_loop))?;
        }
        drop(after.garbage);
        Ok(())
    }

    /// Stops watching the descriptor on `event_loop` if it has no calls left.
    pub(crate) fn release(&self, py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> PyResult<()> {
        let (fd, client, removed) = {
            let mut state = lock(&self.state);
            let Some(index) = state.find(py, event_loop) else { return Ok(()) };
            let calls = &mut state.loops[index];
            calls.release_scheduled = false;
            if !calls.idle() {
                return Ok(());
            }
            let removed = state.loops.swap_remove(index);
            let client = if state.loops.is_empty() { state.client.take() } else { None };
            (state.fd, client, removed)
        };
        drop(removed);
        if let Some(fd) = fd {
            if !event_loop.call_method0("is_closed")?.is_truthy()? {
                event_loop.call_method1("remove_reader", (fd,))?;
            }
        }
        // The connection may close with the last clone.
        py.detach(|| drop(client));
        Ok(())
    }

    /// On `close()`: stops watching the descriptor on every loop that has
    /// no call left — at once on this thread's running loop, soon on the
    /// others — so that an idle reader does not keep the connection open.
    pub(crate) fn release_idle(&self, py: Python<'_>, owner: &Bound<'_, PyAny>) -> PyResult<()> {
        let idle: Vec<Py<PyAny>> = {
            let mut state = lock(&self.state);
            let mut idle = Vec::new();
            state.loops.retain(|l| l.event_loop.bind(py).upgrade().is_some());
            for calls in &state.loops {
                if calls.idle() {
                    if let Some(event_loop) = calls.event_loop.bind(py).upgrade() {
                        idle.push(event_loop.unbind());
                    }
                }
            }
            idle
        };
        if idle.is_empty() {
            return Ok(());
        }
        let running = py.import("asyncio")?.call_method0("_get_running_loop")?;
        for event_loop in idle {
            let event_loop = event_loop.bind(py);
            if event_loop.is(&running) {
                self.release(py, event_loop)?;
            } else {
                // A loop closed meanwhile raises RuntimeError: nothing to do.
                let _ = event_loop.call_method1("call_soon_threadsafe", (method(owner, "_release_loop")?, event_loop));
            }
        }
        Ok(())
    }

    /// Abandons call `token` of `event_loop` (a late reply is discarded; a
    /// request still waiting for room is never sent). With `timeout`, the
    /// Future raises `Timeout` unless the outcome had arrived.
    pub(crate) fn cancel(
        &self,
        py: Python<'_>,
        event_loop: &Bound<'_, PyAny>,
        token: u64,
        name: &str,
        timeout: bool,
        owner: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let mut after = After::default();
        let mut pending = None;
        {
            let mut state = lock(&self.state);
            let Some(index) = state.find(py, event_loop) else { return Ok(()) };
            let calls = &mut state.loops[index];
            let mut outcome = None;
            if let Some(mut call) = calls.calls.remove(&token) {
                pending = call.pending.take();
                if timeout {
                    // Completed but not yet handed over: hand it over.
                    let done = call.outcome.take().or_else(|| pending.as_mut().and_then(Pending::try_wait));
                    outcome = Some((call.future, done));
                } else {
                    after.garbage.push(call.future);
                }
            } else if let Some(at) = calls.blocked.iter().position(|b| b.token == token) {
                let blocked = calls.blocked.remove(at).expect("position is valid");
                if timeout {
                    outcome = Some((blocked.future, None));
                } else {
                    after.garbage.push(blocked.future);
                }
            }
            if let Some((future, done)) = outcome {
                let outcome = done.unwrap_or_else(|| Err(Error::Timeout { name: name.into() }));
                after.settle.push((future, outcome));
            }
            if calls.idle() && !calls.release_scheduled {
                calls.release_scheduled = true;
                after.schedule_release = true;
            }
        }
        // Abandoning tells the connection to discard the late reply.
        drop(pending);
        self.finish(py, event_loop, owner, after)
    }

    /// After a `progress` made outside any reader callback (e.g. by
    /// `Pending.done()`): wakes every loop that has completed calls.
    pub(crate) fn wake_loops(&self, py: Python<'_>, owner: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut woken = Vec::new();
        {
            let mut state = lock(&self.state);
            for calls in &mut state.loops {
                if !take_ready(calls).is_empty() && !calls.woken {
                    if let Some(other) = calls.event_loop.bind(py).upgrade() {
                        calls.woken = true;
                        woken.push(other.unbind());
                    }
                }
            }
        }
        wake(py, woken, owner)
    }

    /// True once an event loop asked for the connection's descriptor.
    pub(crate) fn is_evented(&self) -> bool {
        lock(&self.state).fd.is_some()
    }

    /// The number of calls in flight or waiting for room, on every loop.
    pub(crate) fn len(&self) -> usize {
        lock(&self.state).loops.iter().map(|l| l.calls.len() + l.blocked.len()).sum()
    }
}

/// Takes the outcome of every call of `calls` that completed; returns the
/// tokens of those that have one waiting.
fn take_ready(calls: &mut LoopCalls) -> Vec<u64> {
    let mut ready = Vec::new();
    for (token, call) in &mut calls.calls {
        if call.outcome.is_none() {
            if let Some(pending) = &mut call.pending {
                if let Some(outcome) = pending.try_wait() {
                    call.outcome = Some(outcome);
                    call.pending = None;
                }
            }
        }
        if call.outcome.is_some() {
            ready.push(*token);
        }
    }
    ready
}

/// Makes each of `loops` run `owner`'s reader callback soon.
fn wake(py: Python<'_>, loops: Vec<Py<PyAny>>, owner: &Bound<'_, PyAny>) -> PyResult<()> {
    if loops.is_empty() {
        return Ok(());
    }
    let reader = method(owner, "_on_ready")?;
    for other in loops {
        let other = other.bind(py);
        // A loop closed meanwhile raises RuntimeError: nothing to wake.
        let _ = other.call_method1("call_soon_threadsafe", (&reader, other));
    }
    Ok(())
}

/// Hands `outcome` to `future` unless it is done (cancelled).
fn settle(py: Python<'_>, future: &Bound<'_, PyAny>, outcome: Outcome) -> PyResult<()> {
    if future.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    match outcome {
        Ok(reply) => future.call_method1("set_result", (PyBytes::new(py, &reply),))?,
        Err(e) => future.call_method1("set_exception", (errors::to_py(py, e).into_value(py),))?,
    };
    Ok(())
}
