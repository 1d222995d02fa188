//! The few libuv calls the addon makes, on the event loop Node-API hands
//! out (`napi_get_uv_event_loop`): a poll handle on an ipcall descriptor, a
//! timer for timeouts, an async handle another thread can wake, and a
//! prepare and an idle handle for the brief spin before the loop sleeps.
//!
//! Node-API has no poll handle of its own, but the `node` binary exports
//! libuv's symbols (libuv's ABI is stable across 1.x), so these declarations
//! resolve when Node loads the addon, as `napi_*` ones do. Handle memory is
//! sized by `uv_handle_size`, never by a copy of libuv's structs.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use napi::sys::uv_loop_s;

/// A libuv handle (`uv_poll_t`, `uv_timer_t`, `uv_async_t`) as an opaque pointer.
pub(crate) type Handle = *mut c_void;

/// `UV_READABLE`.
pub(crate) const READABLE: c_int = 1;

// `uv_handle_type` values (fixed by libuv's 1.x ABI).
const UV_ASYNC: c_int = 1;
const UV_IDLE: c_int = 6;
const UV_POLL: c_int = 8;
const UV_PREPARE: c_int = 9;
const UV_TIMER: c_int = 13;

/// Callback of a poll handle: (handle, status, events).
pub(crate) type PollCb = unsafe extern "C" fn(Handle, c_int, c_int);
/// Callback of a timer, async or close: (handle).
pub(crate) type HandleCb = unsafe extern "C" fn(Handle);

unsafe extern "C" {
    fn uv_handle_size(kind: c_int) -> usize;
    fn uv_poll_init(event_loop: *mut uv_loop_s, handle: Handle, fd: c_int) -> c_int;
    fn uv_poll_start(handle: Handle, events: c_int, cb: PollCb) -> c_int;
    fn uv_poll_stop(handle: Handle) -> c_int;
    fn uv_timer_init(event_loop: *mut uv_loop_s, handle: Handle) -> c_int;
    fn uv_timer_start(handle: Handle, cb: HandleCb, timeout: u64, repeat: u64) -> c_int;
    fn uv_timer_stop(handle: Handle) -> c_int;
    fn uv_async_init(event_loop: *mut uv_loop_s, handle: Handle, cb: HandleCb) -> c_int;
    fn uv_async_send(handle: Handle) -> c_int;
    fn uv_prepare_init(event_loop: *mut uv_loop_s, handle: Handle) -> c_int;
    fn uv_prepare_start(handle: Handle, cb: HandleCb) -> c_int;
    fn uv_prepare_stop(handle: Handle) -> c_int;
    fn uv_idle_init(event_loop: *mut uv_loop_s, handle: Handle) -> c_int;
    fn uv_idle_start(handle: Handle, cb: HandleCb) -> c_int;
    fn uv_idle_stop(handle: Handle) -> c_int;
    fn uv_close(handle: Handle, cb: HandleCb);
    fn uv_ref(handle: Handle);
    fn uv_unref(handle: Handle);
    fn uv_handle_set_data(handle: Handle, data: *mut c_void);
    fn uv_handle_get_data(handle: Handle) -> *mut c_void;
    fn uv_strerror(err: c_int) -> *const c_char;
}

/// One layout for every handle kind used here (the largest of them), so a
/// close callback frees any of them without knowing which it is.
fn layout() -> Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    *LAYOUT.get_or_init(|| {
        // SAFETY: (1) `uv_handle_size` only reads a table; every kind passed is valid.
        let size = unsafe {
            [UV_POLL, UV_TIMER, UV_ASYNC, UV_PREPARE, UV_IDLE].into_iter().map(|kind| uv_handle_size(kind)).max()
        }
        .unwrap_or(0);
        Layout::from_size_align(size.max(1), 16).expect("libuv handle sizes are small")
    })
}

/// libuv's error number as an `io::Error` (libuv's codes are negated errnos on Unix).
fn error(err: c_int, what: &str) -> std::io::Error {
    // SAFETY: (1) `uv_strerror` returns a static NUL-terminated string for any code.
    let text = unsafe { CStr::from_ptr(uv_strerror(err)) }.to_string_lossy();
    std::io::Error::new(std::io::Error::from_raw_os_error(-err).kind(), format!("{what}: {text}"))
}

fn check(err: c_int, what: &str) -> std::io::Result<()> {
    if err == 0 {
        Ok(())
    } else {
        Err(error(err, what))
    }
}

/// Zeroed memory for one handle; freed by [`free`] (from the close callback).
fn allocate() -> Handle {
    // SAFETY: (1) the layout has a non-zero size.
    let memory = unsafe { alloc_zeroed(layout()) };
    if memory.is_null() {
        std::alloc::handle_alloc_error(layout());
    }
    memory.cast()
}

/// Frees a handle's memory once libuv has called its close callback.
///
/// # Safety
/// `handle` came from [`allocate`], libuv is done with it (its close
/// callback is running), and it is freed once.
pub(crate) unsafe fn free(handle: Handle) {
    // SAFETY: (1) per the contract, allocated with this layout and freed once.
    unsafe { dealloc(handle.cast(), layout()) }
}

/// A new poll handle on `fd` (not started, ref'd), carrying `data`.
///
/// # Safety
/// Called on the loop's thread; `event_loop` is live; `fd` stays open until the handle is closed.
pub(crate) unsafe fn poll_new(event_loop: *mut uv_loop_s, fd: c_int, data: *mut c_void) -> std::io::Result<Handle> {
    let handle = allocate();
    // SAFETY: (1) per the contract; (2) `handle` is zeroed memory of a poll handle's size.
    if let Err(e) = check(unsafe { uv_poll_init(event_loop, handle, fd) }, "uv_poll_init") {
        // SAFETY: (3) libuv did not take the handle (init failed): free it here, once.
        unsafe { free(handle) };
        return Err(e);
    }
    // SAFETY: (4) `handle` was just initialised.
    unsafe { uv_handle_set_data(handle, data) };
    Ok(handle)
}

/// A new timer handle (not started), carrying `data`.
///
/// # Safety
/// As [`poll_new`].
pub(crate) unsafe fn timer_new(event_loop: *mut uv_loop_s, data: *mut c_void) -> std::io::Result<Handle> {
    let handle = allocate();
    // SAFETY: (1) per the contract; (2) zeroed memory of a timer's size. Timer init cannot fail.
    unsafe { uv_timer_init(event_loop, handle) };
    // SAFETY: (3) initialised just above.
    unsafe { uv_handle_set_data(handle, data) };
    Ok(handle)
}

/// A new async handle (active, so ref'd: the caller unrefs it), carrying `data`.
///
/// # Safety
/// As [`poll_new`].
pub(crate) unsafe fn async_new(event_loop: *mut uv_loop_s, cb: HandleCb, data: *mut c_void) -> std::io::Result<Handle> {
    let handle = allocate();
    // SAFETY: (1) per the contract; (2) zeroed memory of an async handle's size.
    if let Err(e) = check(unsafe { uv_async_init(event_loop, handle, cb) }, "uv_async_init") {
        // SAFETY: (3) libuv did not take the handle: free it here, once.
        unsafe { free(handle) };
        return Err(e);
    }
    // SAFETY: (4) initialised just above.
    unsafe { uv_handle_set_data(handle, data) };
    Ok(handle)
}

/// A new prepare handle (its callback runs right before the loop polls for
/// I/O, once per turn) or idle handle (while started, the loop polls
/// without sleeping), not started, carrying `data`. Both are unref'd: they
/// never keep the process alive by themselves.
///
/// # Safety
/// As [`poll_new`].
pub(crate) unsafe fn turn_new(event_loop: *mut uv_loop_s, idle: bool, data: *mut c_void) -> std::io::Result<Handle> {
    let handle = allocate();
    // SAFETY: (1) per the contract; (2) zeroed memory of a prepare's or an
    // idle handle's size (the layout covers both). Their init cannot fail.
    unsafe {
        if idle {
            uv_idle_init(event_loop, handle);
        } else {
            uv_prepare_init(event_loop, handle);
        }
    }
    // SAFETY: (3) initialised just above.
    unsafe {
        uv_handle_set_data(handle, data);
        uv_unref(handle);
    }
    Ok(handle)
}

/// Starts or stops a handle made by [`turn_new`] (a no-op if already so).
///
/// # Safety
/// On the loop's thread; `handle` is a live, not closing handle made by
/// [`turn_new`] with the same `idle`.
pub(crate) unsafe fn turn_set(handle: Handle, idle: bool, on: bool, cb: HandleCb) {
    // SAFETY: (1) per the contract; starting (with a callback) or stopping
    // a live prepare or idle handle cannot fail.
    unsafe {
        match (idle, on) {
            (false, true) => uv_prepare_start(handle, cb),
            (false, false) => uv_prepare_stop(handle),
            (true, true) => uv_idle_start(handle, cb),
            (true, false) => uv_idle_stop(handle),
        };
    }
}

/// The data pointer given at creation.
///
/// # Safety
/// `handle` is a live handle made here.
pub(crate) unsafe fn data(handle: Handle) -> *mut c_void {
    // SAFETY: (1) per the contract.
    unsafe { uv_handle_get_data(handle) }
}

/// Starts (or keeps) watching for readability.
///
/// # Safety
/// On the loop's thread; `handle` is a live, not closing, poll handle.
pub(crate) unsafe fn poll_start(handle: Handle, cb: PollCb) -> std::io::Result<()> {
    // SAFETY: (1) per the contract.
    check(unsafe { uv_poll_start(handle, READABLE, cb) }, "uv_poll_start")
}

/// Stops watching (the handle then holds the loop no more).
///
/// # Safety
/// As [`poll_start`].
pub(crate) unsafe fn poll_stop(handle: Handle) {
    // SAFETY: (1) per the contract; stopping a live poll handle cannot fail.
    unsafe { uv_poll_stop(handle) };
}

/// Arms a one-shot timer `ms` milliseconds from the loop's time.
///
/// # Safety
/// On the loop's thread; `handle` is a live, not closing, timer handle.
pub(crate) unsafe fn timer_start(handle: Handle, cb: HandleCb, ms: u64) {
    // SAFETY: (1) per the contract; starting a live timer with a callback cannot fail.
    unsafe { uv_timer_start(handle, cb, ms, 0) };
}

/// Disarms a timer.
///
/// # Safety
/// As [`timer_start`].
pub(crate) unsafe fn timer_stop(handle: Handle) {
    // SAFETY: (1) per the contract.
    unsafe { uv_timer_stop(handle) };
}

/// Wakes the loop's thread: the async handle's callback runs there soon
/// (several sends may coalesce into one call). Callable from any thread.
///
/// # Safety
/// `handle` is a live async handle, not yet closed (the caller's lock guarantees it).
pub(crate) unsafe fn async_send(handle: Handle) {
    // SAFETY: (1) per the contract; libuv documents `uv_async_send` as thread-safe.
    unsafe { uv_async_send(handle) };
}

/// Whether an active handle keeps the loop (and so the process) alive.
///
/// # Safety
/// On the loop's thread; `handle` is live.
pub(crate) unsafe fn set_ref(handle: Handle, keep_alive: bool) {
    if keep_alive {
        // SAFETY: (1) per the contract.
        unsafe { uv_ref(handle) }
    } else {
        // SAFETY: (1) per the contract.
        unsafe { uv_unref(handle) }
    }
}

/// Closes a handle; `cb` runs on a later loop turn and must [`free`] it.
///
/// # Safety
/// On the loop's thread; `handle` is live and closed once.
pub(crate) unsafe fn close(handle: Handle, cb: HandleCb) {
    // SAFETY: (1) per the contract.
    unsafe { uv_close(handle, cb) }
}
