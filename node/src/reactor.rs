//! Drives one ipcall descriptor on the JavaScript thread's libuv loop and
//! settles Promises there: no other thread is involved in an `await`.
//!
//! A [`Driven`] state (a server's waiting `recv()`s, a client's calls in
//! flight) lives in an `Rc<RefCell<_>>` shared by its JavaScript object and
//! its libuv handles: a poll handle on the descriptor, a timer for the
//! earliest timeout, and (clients) an async handle the writer thread wakes.
//! After each change the state says what it wants ([`Driven::wants_poll`],
//! [`Driven::next_deadline`], [`Driven::wants_waker`]) and [`update`] makes
//! the handles match: a poll handle is active, so it keeps the process
//! alive, exactly while something waits on it, and is stopped otherwise (a
//! level-triggered descriptor left polled with nobody waiting would spin).
//!
//! Outcomes are collected while the state is borrowed and settled after the
//! borrow ends ([`Settlement`]): settling runs no JavaScript by itself, but
//! in a libuv callback the callback scope that follows runs the microtasks,
//! which may call back into this state.
//!
//! At environment teardown (process exit, a worker thread ending) an async
//! cleanup hook closes the handles before Node closes the loop.

use std::cell::RefCell;
use std::ffi::{c_int, c_void};
use std::ptr;
use std::rc::Rc;
use std::time::Instant;

use napi::bindgen_prelude::{Env, ToNapiValue};
use napi::sys;

use crate::uv;

/// What a waiter receives, turned into a JavaScript value when settled.
pub(crate) enum Value {
    /// A call's reply or error (errors via the client's mapping).
    Reply(ipcall::Result<Vec<u8>>),
    /// A `recv()`'s request or error.
    Request(ipcall::Result<ipcall::Request>),
    /// One step of `for await`: `Some(request)`, or `None` when the iteration ends.
    Step(ipcall::Result<Option<ipcall::Request>>),
}

/// Which Promise a settlement settles.
#[derive(Clone, Copy)]
pub(crate) enum Settle {
    /// One made by Node-API: its deferred, settled exactly once (then dropped).
    Deferred(sys::napi_deferred),
    /// One the setup script made for `call()` without options: its
    /// resolvers wait in the script under this number, settled exactly once
    /// through the script's `settleCall` ([`crate::requests::settle_call`]).
    /// Only for a [`Value::Reply`].
    Script(u32),
}

/// A Promise to settle, and with what.
pub(crate) struct Settlement {
    /// The Promise.
    pub(crate) to: Settle,
    /// Its outcome.
    pub(crate) value: Value,
}

/// A state the loop drives. All methods run on the JavaScript thread.
pub(crate) trait Driven: 'static {
    /// Its handles.
    fn reactor(&mut self) -> &mut Reactor;
    /// The descriptor became readable (or polling it failed: `failed`).
    fn readable(&mut self, failed: Option<std::io::Error>, out: &mut Vec<Settlement>);
    /// The timer fired: settle what has expired by `now`.
    fn expire(&mut self, now: Instant, out: &mut Vec<Settlement>);
    /// The async handle was woken (another thread handed something over).
    fn woken(&mut self, out: &mut Vec<Settlement>);
    /// Whether something waits on the descriptor.
    fn wants_poll(&self) -> bool;
    /// The earliest timeout.
    fn next_deadline(&self) -> Option<Instant>;
    /// Whether another thread owes this state a hand-over (keeps the process alive).
    fn wants_waker(&self) -> bool;
    /// Environment teardown: drop every waiter unsettled (no JavaScript can run).
    fn abandon(&mut self);
    /// Whether to spin briefly before the loop sleeps (an answer is
    /// expected soon: see [`spin`](Self::spin)).
    fn wants_spin(&self) -> bool {
        false
    }
    /// Right before the loop polls for I/O, at most once per turn: spin
    /// briefly for what `wants_spin` expects (the core's policy decides
    /// whether and how long); true if something came (then the loop turns
    /// again without sleeping, and spins again if still wanted).
    fn spin(&mut self, _out: &mut Vec<Settlement>) -> bool {
        false
    }
}

/// Where the handles are in their life.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// None created yet.
    Idle,
    /// Created (each may be active or not).
    Open,
    /// `uv_close` called; waiting for the close callbacks.
    Closing,
    /// Closed for good.
    Closed,
}

/// A state's libuv handles and what they do now.
pub(crate) struct Reactor {
    env: sys::napi_env,
    fd: c_int,
    /// Whether to make an async handle (clients with a writer thread).
    with_waker: bool,
    phase: Phase,
    poll: uv::Handle,
    timer: uv::Handle,
    waker: uv::Handle,
    /// Runs [`Driven::spin`] before the loop polls, while started.
    prepare: uv::Handle,
    /// Keeps the loop from sleeping in its poll, while started.
    idle: uv::Handle,
    polling: bool,
    /// The prepare handle is started.
    spinning: bool,
    /// The last spin caught something: turn again without sleeping.
    hot: bool,
    /// The idle handle is started.
    idling: bool,
    timer_at: Option<Instant>,
    waker_ref: bool,
    /// Handles whose close callback has not run yet.
    open: u8,
    /// The async context microtasks run in after a libuv callback settles.
    context: sys::napi_async_context,
    hook: sys::napi_async_cleanup_hook_handle,
    /// The JavaScript object is gone: close the handles once nothing waits.
    owner_gone: bool,
    torn_down: bool,
    /// Called just before the async handle is closed (so no thread wakes it after).
    on_waker_close: Option<Box<dyn FnOnce()>>,
    /// Called with the async handle once it exists.
    on_waker_open: Option<Box<dyn FnOnce(uv::Handle)>>,
}

impl Reactor {
    /// Handles for `fd` in `env`'s loop, made when first needed.
    pub(crate) fn new(env: &Env, fd: c_int) -> Reactor {
        Reactor {
            env: env.raw(),
            fd,
            with_waker: false,
            phase: Phase::Idle,
            poll: ptr::null_mut(),
            timer: ptr::null_mut(),
            waker: ptr::null_mut(),
            prepare: ptr::null_mut(),
            idle: ptr::null_mut(),
            polling: false,
            spinning: false,
            hot: false,
            idling: false,
            timer_at: None,
            waker_ref: false,
            open: 0,
            context: ptr::null_mut(),
            hook: ptr::null_mut(),
            owner_gone: false,
            torn_down: false,
            on_waker_close: None,
            on_waker_open: None,
        }
    }

    /// Also make an async handle: `opened` receives it, `closing` runs
    /// before it is closed.
    pub(crate) fn with_waker(&mut self, opened: Box<dyn FnOnce(uv::Handle)>, closing: Box<dyn FnOnce()>) {
        self.with_waker = true;
        self.on_waker_open = Some(opened);
        self.on_waker_close = Some(closing);
    }

    /// The descriptor to watch, when only known later (before any handle exists).
    pub(crate) fn set_fd(&mut self, fd: c_int) {
        if self.phase == Phase::Idle {
            self.fd = fd;
        }
    }

    /// Closes the handles (their close callbacks release the state). Idempotent.
    pub(crate) fn close<S: Driven>(&mut self) {
        match self.phase {
            Phase::Idle => self.phase = Phase::Closed,
            Phase::Closing | Phase::Closed => {}
            Phase::Open => {
                self.phase = Phase::Closing;
                if let Some(closing) = self.on_waker_close.take() {
                    closing();
                }
                for handle in [self.poll, self.timer, self.prepare, self.idle, self.waker] {
                    if !handle.is_null() {
                        // SAFETY: (1) on the loop's thread; (2) each handle is
                        // live and closed once (phase moves past Open here).
                        unsafe { uv::close(handle, on_closed::<S>) };
                    }
                }
            }
        }
    }
}

fn check(status: sys::napi_status, what: &str) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::new(napi::Status::from(status), format!("ipcall: {what} failed")))
    }
}

/// Makes the handles match what `shared` wants, creating them on first need.
/// Called on the JavaScript thread after each change made from JavaScript.
pub(crate) fn update<S: Driven>(shared: &Rc<RefCell<S>>) -> napi::Result<()> {
    let mut state = shared.borrow_mut();
    let wants = state.wants_poll() || state.next_deadline().is_some() || state.wants_waker();
    if state.reactor().phase == Phase::Idle && wants {
        open(shared, &mut *state)?;
    }
    apply(&mut *state);
    Ok(())
}

/// Creates the handles; each carries one strong count of `shared`, released
/// when the last of them has closed.
fn open<S: Driven>(shared: &Rc<RefCell<S>>, state: &mut S) -> napi::Result<()> {
    let data = Rc::as_ptr(shared) as *mut c_void;
    let reactor = state.reactor();
    let env = reactor.env;
    let mut event_loop = ptr::null_mut();
    // SAFETY: (1) `env` is live, on its JavaScript thread.
    check(unsafe { sys::napi_get_uv_event_loop(env, &mut event_loop) }, "getting the event loop")?;
    let mut name = ptr::null_mut();
    let label = "ipcall";
    // SAFETY: (2) `env` is live; `label` outlives the call.
    check(
        unsafe { sys::napi_create_string_utf8(env, label.as_ptr().cast(), label.len() as isize, &mut name) },
        "naming the async context",
    )?;
    let mut context = ptr::null_mut();
    // SAFETY: (3) `env` is live; a null resource lets Node make one.
    check(unsafe { sys::napi_async_init(env, ptr::null_mut(), name, &mut context) }, "creating the async context")?;
    let mut made: Vec<uv::Handle> = Vec::with_capacity(5);
    let fd = reactor.fd;
    let with_waker = reactor.with_waker;
    let mut handles = || -> std::io::Result<()> {
        // SAFETY: (4) on the loop's thread; the descriptor is owned by the
        // core object `state` keeps until the handles are closed.
        made.push(unsafe { uv::poll_new(event_loop, fd, data) }?);
        // SAFETY: (5) as (4).
        made.push(unsafe { uv::timer_new(event_loop, data) }?);
        // SAFETY: (5a) as (4).
        made.push(unsafe { uv::turn_new(event_loop, false, data) }?);
        // SAFETY: (5b) as (4).
        made.push(unsafe { uv::turn_new(event_loop, true, data) }?);
        if with_waker {
            // SAFETY: (6) as (4).
            let waker = unsafe { uv::async_new(event_loop, on_wake::<S>, data) }?;
            // Active from birth: it holds the loop only while a hand-over is owed.
            // SAFETY: (7) just created, on the loop's thread.
            unsafe { uv::set_ref(waker, false) };
            made.push(waker);
        }
        Ok(())
    };
    let mut hook = ptr::null_mut();
    let hooked = handles().map_err(|e| napi::Error::from_reason(format!("ipcall: {e}"))).and_then(|()| {
        // SAFETY: (8) `data` stays valid while the handles are open (they
        // hold a count), and the hook is removed when the last one has closed.
        check(
            unsafe { sys::napi_add_async_cleanup_hook(env, Some(on_teardown::<S>), data, &mut hook) },
            "registering the cleanup hook",
        )
    });
    if let Err(e) = hooked {
        for handle in made {
            // SAFETY: (9) each is live and closed once; its callback frees it.
            unsafe { uv::close(handle, free_only) };
        }
        // SAFETY: (10) made above in this live env, destroyed once.
        unsafe { sys::napi_async_destroy(env, context) };
        return Err(e);
    }
    // The handles' strong count, given back in `on_closed`.
    let _ = Rc::into_raw(shared.clone());
    reactor.open = made.len() as u8;
    reactor.poll = made[0];
    reactor.timer = made[1];
    reactor.prepare = made[2];
    reactor.idle = made[3];
    reactor.waker = made.get(4).copied().unwrap_or(ptr::null_mut());
    reactor.context = context;
    reactor.hook = hook;
    reactor.phase = Phase::Open;
    if let (Some(opened), false) = (reactor.on_waker_open.take(), reactor.waker.is_null()) {
        opened(reactor.waker);
    }
    Ok(())
}

/// Starts, stops, arms and refs the open handles as `state` wants; closes
/// them when the JavaScript object is gone and nothing waits.
fn apply<S: Driven>(state: &mut S) {
    let poll = state.wants_poll();
    let deadline = state.next_deadline();
    let waker = state.wants_waker();
    let spin = state.wants_spin();
    let reactor = state.reactor();
    if reactor.phase != Phase::Open {
        return;
    }
    if spin != reactor.spinning {
        // SAFETY: (7) on the loop's thread; the handle is open (phase) and a prepare handle.
        unsafe { uv::turn_set(reactor.prepare, false, spin, on_prepare::<S>) };
        reactor.spinning = spin;
    }
    let idle = spin && reactor.hot;
    if idle != reactor.idling {
        // SAFETY: (8) as (7), an idle handle.
        unsafe { uv::turn_set(reactor.idle, true, idle, on_idle) };
        reactor.idling = idle;
    }
    if reactor.owner_gone && !poll && deadline.is_none() && !waker {
        reactor.close::<S>();
        return;
    }
    if poll != reactor.polling {
        if poll {
            // SAFETY: (1) on the loop's thread; the handle is open (phase).
            if unsafe { uv::poll_start(reactor.poll, on_poll::<S>) }.is_err() {
                // Not pollable (never for ipcall's descriptors): the waiters
                // learn it from `readable` at once, below, via the timer.
                reactor.polling = false;
                // SAFETY: (2) as (1).
                unsafe { uv::timer_start(reactor.timer, on_poll_failed::<S>, 0) };
                reactor.timer_at = None;
                return;
            }
        } else {
            // SAFETY: (3) as (1).
            unsafe { uv::poll_stop(reactor.poll) };
        }
        reactor.polling = poll;
    }
    if deadline != reactor.timer_at {
        match deadline {
            Some(at) => {
                // Rounded up: the timer may fire early by the loop's cached
                // time, never before `at` is checked against `Instant::now`.
                let left = at.saturating_duration_since(Instant::now());
                let ms = left.as_micros().div_ceil(1000).min(u64::MAX as u128) as u64;
                // SAFETY: (4) as (1).
                unsafe { uv::timer_start(reactor.timer, on_timer::<S>, ms) };
            }
            // SAFETY: (5) as (1).
            None => unsafe { uv::timer_stop(reactor.timer) },
        }
        reactor.timer_at = deadline;
    }
    if waker != reactor.waker_ref && !reactor.waker.is_null() {
        // SAFETY: (6) as (1).
        unsafe { uv::set_ref(reactor.waker, waker) };
        reactor.waker_ref = waker;
    }
}

/// The JavaScript object is being finalized: release the handles once nothing waits.
pub(crate) fn owner_gone<S: Driven>(state: &mut S) {
    state.reactor().owner_gone = true;
    apply(state);
    let reactor = state.reactor();
    if reactor.phase == Phase::Idle {
        reactor.phase = Phase::Closed;
    }
}

/// Runs `step` on the state behind `handle` and settles what it produced,
/// inside a handle scope and a callback scope (whose end runs microtasks).
///
/// # Safety
/// `handle` is a live handle made by [`open`] for an `Rc<RefCell<S>>`.
unsafe fn dispatch<S: Driven>(handle: uv::Handle, step: impl FnOnce(&mut S, &mut Vec<Settlement>)) {
    // SAFETY: (1) the handle's data is the `RefCell<S>` it holds a count of.
    let cell = unsafe { &*(uv::data(handle) as *const RefCell<S>) };
    let mut out = Vec::new();
    let (env, context) = {
        let Ok(mut state) = cell.try_borrow_mut() else { return };
        if state.reactor().phase != Phase::Open {
            return;
        }
        step(&mut state, &mut out);
        let reactor = state.reactor();
        (reactor.env, reactor.context)
    };
    if !out.is_empty() {
        // SAFETY: (2) `env` is live (the teardown hook closes the handles
        // first) and this is its thread; `context` is its async context.
        unsafe { settle_in_callback(env, context, out) };
    }
    if let Ok(mut state) = cell.try_borrow_mut() {
        apply(&mut *state);
    }
}

unsafe extern "C" fn on_poll<S: Driven>(handle: uv::Handle, status: c_int, _events: c_int) {
    let failed = (status < 0).then(|| std::io::Error::from_raw_os_error(-status));
    // SAFETY: (1) libuv passes a live poll handle made by `open`.
    unsafe { dispatch::<S>(handle, |state, out| state.readable(failed, out)) }
}

unsafe extern "C" fn on_poll_failed<S: Driven>(handle: uv::Handle) {
    let failed = std::io::Error::other("this descriptor cannot be polled");
    // SAFETY: (1) libuv passes a live timer handle made by `open`.
    unsafe { dispatch::<S>(handle, |state, out| state.readable(Some(failed), out)) }
}

unsafe extern "C" fn on_timer<S: Driven>(handle: uv::Handle) {
    // SAFETY: (1) libuv passes a live timer handle made by `open`.
    unsafe {
        dispatch::<S>(handle, |state, out| {
            // The timer is one-shot: re-armed by `apply` for the next deadline.
            state.reactor().timer_at = None;
            state.expire(Instant::now(), out)
        })
    }
}

unsafe extern "C" fn on_prepare<S: Driven>(handle: uv::Handle) {
    // SAFETY: (1) libuv passes a live prepare handle made by `open`.
    unsafe {
        dispatch::<S>(handle, |state, out| {
            let caught = state.spin(out);
            state.reactor().hot = caught;
        })
    }
}

/// The idle handle only keeps the loop's poll from sleeping.
unsafe extern "C" fn on_idle(_handle: uv::Handle) {}

unsafe extern "C" fn on_wake<S: Driven>(handle: uv::Handle) {
    // SAFETY: (1) libuv passes a live async handle made by `open`.
    unsafe { dispatch::<S>(handle, |state, out| state.woken(out)) }
}

/// Close callback of a handle that never carried a state count.
unsafe extern "C" fn free_only(handle: uv::Handle) {
    // SAFETY: (1) libuv is done with it; freed once, here.
    unsafe { uv::free(handle) }
}

unsafe extern "C" fn on_closed<S: Driven>(handle: uv::Handle) {
    // SAFETY: (1) the handle's data is the `RefCell<S>` it holds a count of
    // (alive until the last close callback gives the count back, below).
    let data = unsafe { uv::data(handle) } as *const RefCell<S>;
    // SAFETY: (2) libuv is done with the handle; freed once, here.
    unsafe { uv::free(handle) };
    // SAFETY: (3) as (1).
    let cell = unsafe { &*data };
    let last = {
        let Ok(mut state) = cell.try_borrow_mut() else { return };
        let reactor = state.reactor();
        reactor.open -= 1;
        if reactor.open > 0 {
            return;
        }
        reactor.phase = Phase::Closed;
        let context = std::mem::replace(&mut reactor.context, ptr::null_mut());
        if !reactor.torn_down && !context.is_null() {
            // SAFETY: (4) made by `napi_async_init` in this live env, destroyed once.
            unsafe { sys::napi_async_destroy(reactor.env, context) };
        }
        std::mem::replace(&mut reactor.hook, ptr::null_mut())
    };
    if !last.is_null() {
        // SAFETY: (5) the hook's handle, removed once (this also tells Node a
        // running teardown hook has finished).
        unsafe { sys::napi_remove_async_cleanup_hook(last) };
    }
    // SAFETY: (6) the count `open` took for the handles, given back once.
    drop(unsafe { Rc::from_raw(data) });
}

unsafe extern "C" fn on_teardown<S: Driven>(_hook: sys::napi_async_cleanup_hook_handle, data: *mut c_void) {
    // SAFETY: (1) `data` is the `RefCell<S>` the open handles hold a count of;
    // the hook is removed before the last count is given back.
    let cell = unsafe { &*(data as *const RefCell<S>) };
    let Ok(mut state) = cell.try_borrow_mut() else { return };
    state.abandon();
    state.reactor().torn_down = true;
    state.reactor().close::<S>();
}

/// Settles `out` from a libuv callback: JavaScript is not on the stack, so
/// open a handle scope and a callback scope (closing it runs the microtasks
/// the settlements queued, as Node does after its own callbacks).
///
/// # Safety
/// On `env`'s thread, outside any JavaScript call; `env` and `context` are live.
unsafe fn settle_in_callback(env: sys::napi_env, context: sys::napi_async_context, out: Vec<Settlement>) {
    let mut handles = ptr::null_mut();
    // SAFETY: (1) per the contract.
    if unsafe { sys::napi_open_handle_scope(env, &mut handles) } != sys::Status::napi_ok {
        return;
    }
    let mut scope = ptr::null_mut();
    // SAFETY: (2) per the contract; the resource argument is ignored by Node.
    let opened = unsafe { sys::napi_open_callback_scope(env, ptr::null_mut(), context, &mut scope) };
    settle_all(&Env::from_raw(env), out);
    if opened == sys::Status::napi_ok {
        // SAFETY: (3) the scope just opened, closed once.
        unsafe { sys::napi_close_callback_scope(env, scope) };
    }
    // SAFETY: (4) the handle scope just opened, closed once.
    unsafe { sys::napi_close_handle_scope(env, handles) };
}

/// Settles each Promise (on the JavaScript thread, inside a handle scope).
pub(crate) fn settle_all(env: &Env, out: Vec<Settlement>) {
    for settlement in out {
        settle(env, settlement);
    }
}

fn settle(env: &Env, Settlement { to, value }: Settlement) {
    let raw = env.raw();
    let (deferred, value) = match (to, value) {
        (Settle::Deferred(deferred), value) => (deferred, value),
        (Settle::Script(slot), Value::Reply(reply)) => {
            // SAFETY: (1) `raw` is live on its thread, inside a handle scope.
            unsafe { crate::requests::settle_call(env, slot, reply) };
            return;
        }
        (Settle::Script(_), _) => unreachable!("the script's Promises are calls' only"),
    };
    let settled: napi::Result<(sys::napi_value, bool)> = match value {
        // SAFETY: (1) `raw` is live on its thread, inside a handle scope.
        Value::Reply(Ok(reply)) => unsafe { crate::bytes::buffer_value(raw, reply) }.map(|v| (v, true)),
        Value::Reply(Err(err)) => crate::client::call_error_value(env, err).map(|v| (v, false)),
        // SAFETY: (1) as above.
        Value::Request(Ok(request)) => {
            unsafe { crate::requests::request_value(raw, request, false) }.map(|v| (v, true))
        }
        Value::Request(Err(err)) => crate::error::js_error_value(env, err).map(|v| (v, false)),
        // SAFETY: (1) as above.
        Value::Step(Ok(Some(request))) => {
            unsafe { crate::requests::request_value(raw, request, true) }.map(|v| (v, true))
        }
        Value::Step(Ok(None)) => crate::server::step_done(env).map(|v| (v, true)),
        Value::Step(Err(err)) => crate::error::js_error_value(env, err).map(|v| (v, false)),
    };
    // SAFETY (all three): (2) `deferred` came from `napi_create_promise` in
    // this env and is settled exactly once (its settlement is consumed);
    // (3) each value is a live value of this env.
    match settled {
        Ok((value, true)) => unsafe { sys::napi_resolve_deferred(raw, deferred, value) },
        Ok((value, false)) => unsafe { sys::napi_reject_deferred(raw, deferred, value) },
        Err(e) => unsafe {
            let mut value = ToNapiValue::to_napi_value(raw, e).unwrap_or(ptr::null_mut());
            if value.is_null() {
                sys::napi_get_undefined(raw, &mut value);
            }
            sys::napi_reject_deferred(raw, deferred, value)
        },
    };
}

/// A new Promise and its deferred.
pub(crate) fn promise(env: &Env) -> napi::Result<(sys::napi_deferred, sys::napi_value)> {
    let mut deferred = ptr::null_mut();
    let mut promise = ptr::null_mut();
    // SAFETY: (1) `env` is live, on its JavaScript thread; (2) out-pointers are live locals.
    check(unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) }, "creating a Promise")?;
    Ok((deferred, promise))
}
