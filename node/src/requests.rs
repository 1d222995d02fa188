//! Received requests as JavaScript holds them: a per-thread table of core
//! requests, and the JavaScript `Request` objects (made in `faces.rs`'s
//! setup script) that name their slot in it.
//!
//! A request used to be a napi-rs class instance: `napi_wrap` (a V8 global
//! handle, a finalizer run at the next garbage collection), a Buffer copied
//! into its own V8 backing store, a `{ value, done }` object built through
//! Node-API, and napi-rs's borrow bookkeeping on every method call — most
//! of the Node server's cost per request (docs/DECISIONS.md, "Node: a
//! received request is a JavaScript object"). Now:
//!
//! - the core request waits in a slot of [`Table`]; JavaScript holds the
//!   slot's index and generation (so a stale object never reaches a reused
//!   slot) and answers through the raw functions below (no napi-rs
//!   wrapper: no borrow bookkeeping, no class unwrapping);
//! - what must stay readable after the answer (peer, deadline) is copied
//!   into the object when it is made, through a shared `ArrayBuffer`
//!   ([`info`]) rather than per-field Node-API calls; whether the caller
//!   gave up is copied at the answer;
//! - the request's bytes, when small, are copied into a shared
//!   `ArrayBuffer` pool ([`POOL_SIZE`]) and the object makes a `Buffer`
//!   view of them on first read of `data` (as Node pools `Buffer.from`);
//! - an unanswered request whose object is garbage-collected is closed by
//!   a `FinalizationRegistry` callback, so its caller gets `NO_REPLY` as
//!   before (the script registers only requests still unanswered once
//!   their turn's handlers have run).
//!
//! Everything here runs on the JavaScript thread of the environment that
//! bound it (the table is thread-local: each worker thread has its own).

use std::cell::RefCell;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::time::Instant;

use napi::bindgen_prelude::{Env, FromNapiValue, ToNapiValue};
use napi::sys;

use crate::bytes::Bytes;
use crate::error::{to_js, type_error};

/// Generations wrap below 2^29 (a JavaScript small integer).
const GENERATION_MASK: u32 = (1 << 29) - 1;
/// The most slots (requests held by JavaScript at once): 2^24, so that
/// slot and generation fit one exact JavaScript number
/// (`slot + generation * 2^24`, the FinalizationRegistry's held value).
const MAX_SLOTS: usize = 1 << 24;

/// Size of one shared `ArrayBuffer` that small requests' bytes are copied
/// into. A `Buffer` kept from it keeps the whole pool alive (as Node's own
/// 8 KiB pool does), so it stays small.
const POOL_SIZE: usize = 16 * 1024;
/// Requests up to this size go to the pool; larger ones get their own
/// `Buffer` ([`crate::bytes::buffer_value`]).
const POOL_MAX: usize = 2 * 1024;

/// The shared `ArrayBuffer` ([`info::BYTES`] bytes) written here and read
/// by the setup script right after the call that wrote it: two `f64`s,
/// then `u32`s (so that JavaScript reads small integers, stored in its
/// objects without boxing). Keep in step with `F_*`, `U_*` and `HAS_*` in
/// `faces.rs`.
mod info {
    /// Size of the buffer in bytes.
    pub(super) const BYTES: usize = 64;
    /// `f64`: the deadline on the `performance.now()` clock (if `HAS_DEADLINE`).
    pub(super) const DEADLINE: usize = 0;
    /// `f64`: `peer.natsClientId` (if `HAS_NATS_ID`).
    pub(super) const NATS_ID: usize = 1;
    /// Where the `u32`s start, in `u32`s.
    pub(super) const INTS: usize = 4;
    /// `u32`: the request's slot and the slot's generation.
    pub(super) const SLOT: usize = INTS;
    pub(super) const GENERATION: usize = INTS + 1;
    /// `u32`: where its bytes start in the pool (unless `OWN_BUFFER`), how many.
    pub(super) const OFFSET: usize = INTS + 2;
    pub(super) const LENGTH: usize = INTS + 3;
    /// `u32`: `peer.pid`, `uid`, `gid` (if `HAS_PID`, ...).
    pub(super) const PID: usize = INTS + 4;
    pub(super) const UID: usize = INTS + 5;
    pub(super) const GID: usize = INTS + 6;
    /// `u32`: the `HAS_*` bits below.
    pub(super) const FLAGS: usize = INTS + 7;
    /// `u32`: what the last answer did: 1 answered, 2 answered and the
    /// caller had given up; left as the script set it (0) when the request
    /// was not consumed (a bad argument, already answered).
    pub(super) const STATE: usize = INTS + 8;
    /// `u32`: set to 1 when `takeOrWait` returns a request's data (the
    /// script clears it before the call; left 0, the call returned a Promise).
    pub(super) const TOOK: usize = INTS + 9;
    /// `u32`: set by `call` to 1 + `settleCall`'s `how` when the call was
    /// settled inside it (the script settles it with the value `call`
    /// returned; it clears this before the call).
    pub(super) const SETTLED: usize = INTS + 10;
    /// The `u32` fields end here.
    pub(super) const INTS_END: usize = INTS + 11;

    /// The data argument is the bytes' own `Buffer`, not the pool.
    pub(super) const OWN_BUFFER: u32 = 1;
    pub(super) const HAS_PID: u32 = 2;
    pub(super) const HAS_UID: u32 = 4;
    pub(super) const HAS_GID: u32 = 8;
    pub(super) const HAS_NATS_ID: u32 = 16;
    /// The sender has a connection name (read it with `peerName`).
    pub(super) const HAS_NAME: u32 = 32;
    pub(super) const HAS_DEADLINE: u32 = 64;
}

/// The largest integer a JavaScript number holds exactly (2^53 − 1).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// One slot of the table.
struct Slot {
    /// Bumped each time the slot is freed, so that tokens of earlier
    /// occupants no longer match (wraps at 2^29).
    generation: u32,
    /// The request, until it is answered, closed or dropped. Boxed where
    /// it is received: a `Request` is 208 bytes, and each hand-over on its
    /// way into the table and out to its answer was a `memcpy` of it
    /// (~11 a request; 2 now, for one allocation).
    request: Option<Box<ipcall::Request>>,
}

/// The shared `ArrayBuffer` small requests are copied into.
struct Pool {
    /// Invariant: null, or a live strong reference created in the table's
    /// environment to an `ArrayBuffer` of [`POOL_SIZE`] bytes (unless detached).
    reference: sys::napi_ref,
    /// Bytes used from the start.
    used: usize,
}

/// This thread's requests and what the setup script shared with it.
struct Table {
    env: sys::napi_env,
    slots: Vec<Slot>,
    /// Free slots, most recently freed last (reused first: warm in cache).
    free: Vec<u32>,
    /// The shared `ArrayBuffer`'s memory.
    /// Invariant: points to [`info::BYTES`] bytes, 8-aligned, of an
    /// `ArrayBuffer` kept alive by `info_ref`, which the setup script never
    /// hands out (so it is never detached).
    info: *mut u8,
    /// Invariant: a live strong reference in `env`.
    info_ref: sys::napi_ref,
    /// The setup script's `adoptRequest(data, step)`, which makes the `Request`.
    /// Invariant: a live strong reference in `env`.
    adopt_ref: sys::napi_ref,
    /// The setup script's `settleCall(slot, how, value)`, which settles
    /// the Promise of a `call()` it made ([`SETTLE_REJECT`], ...).
    /// Invariant: a live strong reference in `env`.
    settle_ref: sys::napi_ref,
    pool: Pool,
    /// `Instant` and `performance.now()` read together at setup: deadlines
    /// are carried from one clock to the other (both are `CLOCK_MONOTONIC`).
    clock: (Instant, f64),
}

thread_local! {
    /// `None` until the setup script calls `bind` (and again at teardown).
    static TABLE: RefCell<Option<Table>> = const { RefCell::new(None) };
}

fn check(status: sys::napi_status, what: &str) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::new(napi::Status::from(status), format!("ipcall: {what} failed")))
    }
}

impl Table {
    fn set_f64(&mut self, field: usize, value: f64) {
        debug_assert!(field < info::INTS / 2);
        // SAFETY: (1) `info` points to `info::BYTES` live, 8-aligned bytes
        // (struct invariant) and `field` is an `f64` index below `INTS / 2`.
        unsafe { *self.info.cast::<f64>().add(field) = value };
    }

    fn set_u32(&mut self, field: usize, value: u32) {
        debug_assert!((info::INTS..info::INTS_END).contains(&field) && info::INTS_END * 4 <= info::BYTES);
        // SAFETY: (1) as in `set_f64`; `field` is a `u32` index inside the buffer.
        unsafe { *self.info.cast::<u32>().add(field) = value };
    }

    /// Puts `request` in a free slot; returns the slot and its generation.
    fn insert(&mut self, request: Box<ipcall::Request>) -> napi::Result<(u32, u32)> {
        let index = match self.free.pop() {
            Some(index) => index,
            None if self.slots.len() < MAX_SLOTS => {
                self.slots.push(Slot { generation: 0, request: None });
                (self.slots.len() - 1) as u32
            }
            None => return Err(napi::Error::from_reason("ipcall: too many requests held at once (16,777,216)")),
        };
        let slot = &mut self.slots[index as usize];
        slot.request = Some(request);
        Ok((index, slot.generation))
    }

    /// The slot `(index, generation)` names, if it still holds that request.
    fn slot(&mut self, (index, generation): (u32, u32)) -> Option<&mut Slot> {
        let slot = self.slots.get_mut(index as usize)?;
        (slot.generation == generation && slot.request.is_some()).then_some(slot)
    }

    /// Takes the request out of the slot `token` (index, generation) names, freeing the slot.
    fn remove(&mut self, token: (u32, u32)) -> Option<Box<ipcall::Request>> {
        let slot = self.slot(token)?;
        let request = slot.request.take();
        slot.generation = (slot.generation + 1) & GENERATION_MASK;
        self.free.push(token.0);
        request
    }

    /// Copies `bytes` into the pool (a new one if they do not fit or the
    /// current one was detached); returns the pool and the offset.
    fn pooled(&mut self, env: sys::napi_env, bytes: &[u8]) -> napi::Result<(sys::napi_value, usize)> {
        let mut value = ptr::null_mut();
        let mut data: *mut c_void = ptr::null_mut();
        let start = self.pool.used.next_multiple_of(8);
        let mut fits = false;
        if !self.pool.reference.is_null() && start + bytes.len() <= POOL_SIZE {
            // SAFETY: (1) `env` is live on this thread; (2) the reference is
            // live (struct invariant); (3) out-pointers are live locals.
            check(unsafe { sys::napi_get_reference_value(env, self.pool.reference, &mut value) }, "reading the pool")?;
            let mut length = 0;
            // SAFETY: (1) as above; `value` is the pool, an ArrayBuffer.
            let status = unsafe { sys::napi_get_arraybuffer_info(env, value, &mut data, &mut length) };
            check(status, "reading the pool")?;
            // A detached pool (its Buffer's `.buffer` transferred) has no memory.
            fits = length == POOL_SIZE && !data.is_null();
        }
        let start = if fits {
            start
        } else {
            // SAFETY: (1) as above; (2) out-pointers are live locals.
            let status = unsafe { sys::napi_create_arraybuffer(env, POOL_SIZE, &mut data, &mut value) };
            check(status, "allocating the pool")?;
            let mut reference = ptr::null_mut();
            // SAFETY: (1) as above; `value` was just created in `env`.
            check(unsafe { sys::napi_create_reference(env, value, 1, &mut reference) }, "keeping the pool")?;
            if !self.pool.reference.is_null() {
                // SAFETY: (1) the old pool's reference, live and deleted once (replaced here).
                unsafe { sys::napi_delete_reference(env, self.pool.reference) };
            }
            self.pool.reference = reference;
            0
        };
        if !bytes.is_empty() {
            // SAFETY: (1) `data` points to the pool's POOL_SIZE bytes, alive
            // while `value` is (a live local) and not detached (checked above,
            // and no JavaScript ran since); (2) `start + len <= POOL_SIZE`.
            unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), data.cast::<u8>().add(start), bytes.len()) };
        }
        self.pool.used = start + bytes.len();
        Ok((value, start))
    }

    /// Holds `request` and writes what its `Request` object copies into
    /// the shared array; returns the `data` argument of `adoptRequest`: the pool
    /// (bytes at `OFFSET`) or the bytes' own `Buffer`.
    fn admit(&mut self, env: sys::napi_env, mut request: Box<ipcall::Request>) -> napi::Result<sys::napi_value> {
        let bytes = request.take_data();
        let length = bytes.len() as u32;
        let mut flags = 0;
        let (data, offset) = if bytes.len() <= POOL_MAX {
            let (pool, start) = self.pooled(env, &bytes)?;
            (pool, start as u32)
        } else {
            flags |= info::OWN_BUFFER;
            // SAFETY: (1) `env` is live on this thread, inside a handle scope.
            (unsafe { crate::bytes::buffer_value(env, bytes) }?, 0)
        };
        let peer = request.peer();
        if let Some(at) = request.deadline() {
            let (base, base_ms) = self.clock;
            let ms = match at.checked_duration_since(base) {
                Some(after) => base_ms + after.as_secs_f64() * 1000.0,
                None => base_ms - base.duration_since(at).as_secs_f64() * 1000.0,
            };
            self.set_f64(info::DEADLINE, ms);
            flags |= info::HAS_DEADLINE;
        }
        if let Some(id) = peer.nats_client_id.filter(|&id| id <= MAX_SAFE_INTEGER) {
            self.set_f64(info::NATS_ID, id as f64);
            flags |= info::HAS_NATS_ID;
        }
        for (field, flag, value) in [
            (info::PID, info::HAS_PID, peer.pid),
            (info::UID, info::HAS_UID, peer.uid),
            (info::GID, info::HAS_GID, peer.gid),
        ] {
            if let Some(value) = value {
                self.set_u32(field, value);
                flags |= flag;
            }
        }
        if request.peer_name().is_some() {
            flags |= info::HAS_NAME;
        }
        let (slot, generation) = self.insert(request)?;
        self.set_u32(info::SLOT, slot);
        self.set_u32(info::GENERATION, generation);
        self.set_u32(info::OFFSET, offset);
        self.set_u32(info::LENGTH, length);
        self.set_u32(info::FLAGS, flags);
        Ok(data)
    }
}

/// Runs `f` with this thread's table; an error if the setup script has not
/// bound it (never, once the module loaded) or it is in use (never: nothing
/// here calls JavaScript while holding it).
fn with_table<T>(f: impl FnOnce(&mut Table) -> napi::Result<T>) -> napi::Result<T> {
    TABLE.with(|cell| {
        let mut table = cell.try_borrow_mut().map_err(|_| napi::Error::from_reason("ipcall: request table busy"))?;
        let table = table.as_mut().ok_or_else(|| napi::Error::from_reason("ipcall: the module is not set up"))?;
        f(table)
    })
}

/// The JavaScript `Request` for `request` (or the iteration step `{ value:
/// request, done: false }` if `step`), made by the setup script's `adoptRequest`.
///
/// # Safety
/// `env` is live, this is its JavaScript thread, inside a handle scope.
pub(crate) unsafe fn request_value(
    env: sys::napi_env,
    request: ipcall::Request,
    step: bool,
) -> napi::Result<sys::napi_value> {
    let (data, adopt) = with_table(|table| {
        let data = table.admit(env, Box::new(request))?;
        let mut adopt = ptr::null_mut();
        // SAFETY: (1) per the contract; (2) `adopt_ref` is live (struct invariant).
        check(unsafe { sys::napi_get_reference_value(env, table.adopt_ref, &mut adopt) }, "reading adopt")?;
        Ok((data, adopt))
    })?;
    // SAFETY: (1) per the contract.
    let step = unsafe { bool::to_napi_value(env, step) }?;
    let mut undefined = ptr::null_mut();
    // SAFETY: (1) per the contract.
    check(unsafe { sys::napi_get_undefined(env, &mut undefined) }, "undefined")?;
    let mut result = ptr::null_mut();
    let args = [data, step];
    // SAFETY: (1) per the contract; (2) `adopt` is a function of `env` and
    // `args` two live values; (3) `result` is a live local. `adoptRequest` only
    // builds an object (it calls nothing of ours that takes the table).
    let status = unsafe { sys::napi_call_function(env, undefined, adopt, args.len(), args.as_ptr(), &mut result) };
    check(status, "making a Request")?;
    Ok(result)
}

/// [`request_value`] for a request taken from JavaScript's own call (the
/// setup script's fast path): only the `data` argument, with `TOOK` set;
/// the script calls `adoptRequest` itself.
///
/// # Safety
/// As [`request_value`].
pub(crate) unsafe fn admit(env: sys::napi_env, request: Box<ipcall::Request>) -> napi::Result<sys::napi_value> {
    with_table(|table| {
        let data = table.admit(env, request)?;
        table.set_u32(info::TOOK, 1);
        Ok(data)
    })
}

/// Copies a reply of `callSync()` into the pool: returns the pool, with
/// `OFFSET`, `LENGTH` and `TOOK` (1) written to the shared array. `None`
/// (nothing written) for bytes too large for the pool ([`POOL_MAX`]).
///
/// # Safety
/// As [`admit`].
pub(crate) unsafe fn pooled_reply(env: sys::napi_env, bytes: &[u8]) -> napi::Result<Option<sys::napi_value>> {
    if bytes.len() > POOL_MAX {
        return Ok(None);
    }
    with_table(|table| {
        let (pool, start) = table.pooled(env, bytes)?;
        table.set_u32(info::OFFSET, start as u32);
        table.set_u32(info::LENGTH, bytes.len() as u32);
        table.set_u32(info::TOOK, 1);
        Ok(Some(pool))
    })
}

/// `settleCall`'s `how`: reject with `value`.
const SETTLE_REJECT: u32 = 0;
/// `settleCall`'s `how`: resolve with `value` (the reply's own `Buffer`).
const SETTLE_VALUE: u32 = 1;
/// `settleCall`'s `how`: resolve with a `Buffer` view of `value`, the
/// pool, at the shared array's `OFFSET` and `LENGTH`.
const SETTLE_POOLED: u32 = 2;

/// Settles the Promise the setup script made for a call under `slot`
/// with `reply`: a small reply is copied into the pool and viewed there by
/// the script. A failure to settle (none is expected: the script's function
/// only calls a resolver) is dropped, with its exception, so that the next
/// settlements still run.
///
/// # Safety
/// `env` is live, this is its JavaScript thread, inside a handle scope.
pub(crate) unsafe fn settle_call(env: &Env, slot: u32, reply: ipcall::Result<Vec<u8>>) {
    let raw = env.raw();
    let settled = (|| -> napi::Result<()> {
        // SAFETY: (1) per the contract.
        let (how, value) = unsafe { script_settlement(env, reply) }?;
        let settle = with_table(|table| {
            let mut settle = ptr::null_mut();
            // SAFETY: (1) per the contract; (2) `settle_ref` is live (struct invariant).
            check(unsafe { sys::napi_get_reference_value(raw, table.settle_ref, &mut settle) }, "reading settleCall")?;
            Ok(settle)
        })?;
        // SAFETY: (1) per the contract; the values are live values of `raw`.
        let args = unsafe { [u32::to_napi_value(raw, slot)?, u32::to_napi_value(raw, how)?, value] };
        let mut undefined = ptr::null_mut();
        let mut result = ptr::null_mut();
        // SAFETY: (1) as above; (2) `args` holds three live values.
        unsafe {
            sys::napi_get_undefined(raw, &mut undefined);
            check(sys::napi_call_function(raw, undefined, settle, 3, args.as_ptr(), &mut result), "settleCall")
        }
    })();
    if settled.is_err() {
        let mut exception = ptr::null_mut();
        // SAFETY: (1) per the contract; clears what the failed step left pending, if anything.
        unsafe { sys::napi_get_and_clear_last_exception(raw, &mut exception) };
    }
}

/// `settleCall`'s `how` and `value` for `reply`.
///
/// # Safety
/// As [`settle_call`].
unsafe fn script_settlement(env: &Env, reply: ipcall::Result<Vec<u8>>) -> napi::Result<(u32, sys::napi_value)> {
    let raw = env.raw();
    Ok(match reply {
        // SAFETY: (1) per the contract.
        Ok(bytes) => match unsafe { pooled_reply(raw, &bytes) }? {
            Some(pool) => (SETTLE_POOLED, pool),
            // SAFETY: (1) per the contract.
            None => (SETTLE_VALUE, unsafe { crate::bytes::buffer_value(raw, bytes) }?),
        },
        Err(err) => (SETTLE_REJECT, crate::client::call_error_value(env, err)?),
    })
}

/// A call of the script's `call` settled before that native call
/// returns: the value to return, with `SETTLED` written (1 + `how`), so
/// that the script settles it without this side calling into JavaScript
/// (`napi_call_function` costs more than the rest of such a call).
///
/// # Safety
/// As [`settle_call`].
pub(crate) unsafe fn settled_now(env: &Env, reply: ipcall::Result<Vec<u8>>) -> napi::Result<sys::napi_value> {
    // SAFETY: (1) per the contract.
    let (how, value) = unsafe { script_settlement(env, reply) }?;
    with_table(|table| {
        table.set_u32(info::SETTLED, how + 1);
        Ok(value)
    })
}

// ---- The raw functions the setup script calls (module-private there). ----

/// A raw Node-API callback.
type Callback = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

/// Up to `N` arguments of the current call (missing ones are `undefined`).
///
/// # Safety
/// Inside a Node-API callback of `env` with `info`.
pub(crate) unsafe fn arguments<const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> napi::Result<[sys::napi_value; N]> {
    let mut args = [ptr::null_mut(); N];
    let mut count = N;
    // SAFETY: (1) per the contract; (2) `args` has room for `count` values.
    let status =
        unsafe { sys::napi_get_cb_info(env, info, &mut count, args.as_mut_ptr(), ptr::null_mut(), ptr::null_mut()) };
    check(status, "reading the arguments")?;
    Ok(args)
}

/// A number argument (NaN for anything else).
///
/// # Safety
/// `value` is a live value of `env`, on its thread.
pub(crate) unsafe fn number(env: sys::napi_env, value: sys::napi_value) -> f64 {
    let mut number = f64::NAN;
    // SAFETY: (1) per the contract; (2) a non-number leaves `number` NaN.
    let _ = unsafe { sys::napi_get_value_double(env, value, &mut number) };
    number
}

/// A `u32` argument (`u32::MAX` for anything else: no slot has that index).
///
/// # Safety
/// As [`number`].
pub(crate) unsafe fn integer(env: sys::napi_env, value: sys::napi_value) -> u32 {
    let mut integer = u32::MAX;
    // SAFETY: (1) per the contract; (2) a non-number leaves `integer` as is.
    let _ = unsafe { sys::napi_get_value_uint32(env, value, &mut integer) };
    integer
}

/// Runs a raw callback's body: its error is thrown, a panic becomes a
/// thrown error (never unwinds into Node), `None` is `undefined`.
///
/// # Safety
/// Inside a Node-API callback of `env`.
pub(crate) unsafe fn boundary(
    env: sys::napi_env,
    body: impl FnOnce() -> napi::Result<Option<sys::napi_value>>,
) -> sys::napi_value {
    let outcome = catch_unwind(AssertUnwindSafe(body))
        .unwrap_or_else(|_| Err(napi::Error::from_reason("ipcall: internal error (a panic in the addon)")));
    match outcome {
        Ok(Some(value)) => value,
        Ok(None) => ptr::null_mut(),
        Err(error) => {
            // SAFETY: (1) per the contract: a pending exception is thrown on return.
            unsafe { napi::JsError::from(error).throw_into(env) };
            ptr::null_mut()
        }
    }
}

/// `bind(buffer, adoptRequest, performanceNow, settleCall)`: the setup
/// script shares its `ArrayBuffer` and its functions.
unsafe extern "C" fn bind(env: sys::napi_env, call: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: (1) Node calls this on `env`'s thread with `call`.
    unsafe {
        boundary(env, || {
            let [buffer, adopt, now, settle] = arguments::<4>(env, call)?;
            let clock = (Instant::now(), number(env, now));
            let (mut data, mut length) = (ptr::null_mut(), 0usize);
            check(sys::napi_get_arraybuffer_info(env, buffer, &mut data, &mut length), "reading the shared buffer")?;
            if length < info::BYTES || data.is_null() || !(data as usize).is_multiple_of(8) {
                return Err(napi::Error::from_reason("ipcall: bind needs an ArrayBuffer of 64 bytes"));
            }
            let info_ref = crate::abort::reference(env, buffer)?;
            let adopt_ref = crate::abort::reference(env, adopt)?;
            let settle_ref = crate::abort::reference(env, settle)?;
            let table = Table {
                env,
                slots: Vec::new(),
                free: Vec::new(),
                info: data.cast(),
                info_ref,
                adopt_ref,
                settle_ref,
                pool: Pool { reference: ptr::null_mut(), used: 0 },
                clock,
            };
            let previous = TABLE.with(|cell| cell.borrow_mut().replace(table));
            if previous.is_none() {
                check(sys::napi_add_env_cleanup_hook(env, Some(teardown), ptr::null_mut()), "registering cleanup")?;
            } else if let Some(previous) = previous {
                previous.release();
            }
            Ok(None)
        })
    }
}

impl Table {
    /// Drops every request (their callers get `NO_REPLY`) and deletes the
    /// references, while the environment is still alive.
    fn release(self) {
        for reference in [self.info_ref, self.adopt_ref, self.settle_ref, self.pool.reference] {
            if !reference.is_null() {
                // SAFETY: (1) each is a live reference of `env` (struct
                // invariants), deleted once: the table is consumed.
                unsafe { sys::napi_delete_reference(self.env, reference) };
            }
        }
    }
}

/// The environment is being torn down (a worker ending, the process exiting).
unsafe extern "C" fn teardown(_arg: *mut c_void) {
    if let Some(table) = TABLE.with(|cell| cell.try_borrow_mut().ok().and_then(|mut table| table.take())) {
        table.release();
    }
}

/// How `reply`, `fail` and `close` end the request their arguments name.
enum Answer {
    Reply,
    Fail,
    Close,
}

/// `reply(slot, generation, data)`, `fail(slot, generation, payload)`,
/// `close(slot, generation)`.
///
/// # Safety
/// Inside a Node-API callback of `env` with `call`.
unsafe fn answer(env: sys::napi_env, call: sys::napi_callback_info, how: Answer) -> sys::napi_value {
    // SAFETY: (1) per the contract.
    unsafe {
        boundary(env, || {
            let [slot, generation, data] = arguments::<3>(env, call)?;
            let token = (integer(env, slot), integer(env, generation));
            // Read before the request is taken: a bad argument leaves it answerable.
            let bytes = match how {
                Answer::Close => None,
                Answer::Reply | Answer::Fail => Some(Bytes::from_napi_value(env, data)?),
            };
            let env_ref = Env::from_raw(env);
            // The state the script reads once this returns (1 answered, 2
            // after its caller gave up), written as the request is taken:
            // what is known when it is answered (a cancel crossing the
            // answer is ignored by the connection anyway), read without
            // making the request's cancellation flag, which most requests
            // never need.
            let taken = with_table(|table| {
                let request = table.remove(token);
                if let Some(request) = &request {
                    table.set_u32(info::STATE, if request.cancel_seen() { 2 } else { 1 });
                }
                Ok(request)
            })?;
            let Some(request) = taken else {
                return match how {
                    Answer::Close => Ok(None),
                    _ => Err(type_error(&env_ref, "this request was already answered")),
                };
            };
            let outcome = match (how, &bytes) {
                (Answer::Reply, Some(bytes)) => request.reply(bytes.as_slice()),
                (Answer::Fail, Some(bytes)) => request.fail(bytes.as_slice()),
                _ => {
                    drop(request);
                    Ok(())
                }
            };
            outcome.map(|()| None).map_err(|e| to_js(&env_ref, e))
        })
    }
}

unsafe extern "C" fn reply(env: sys::napi_env, call: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: (1) Node calls this on `env`'s thread with `call`.
    unsafe { answer(env, call, Answer::Reply) }
}

unsafe extern "C" fn fail(env: sys::napi_env, call: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: (1) as in `reply`.
    unsafe { answer(env, call, Answer::Fail) }
}

unsafe extern "C" fn close(env: sys::napi_env, call: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: (1) as in `reply`. Also the `FinalizationRegistry` callback:
    // a request collected unanswered is dropped (`NO_REPLY`).
    unsafe { answer(env, call, Answer::Close) }
}

/// `cancelled(slot, generation)`: whether the caller of a request not yet answered gave up.
unsafe extern "C" fn cancelled(env: sys::napi_env, call: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: (1) as in `reply`.
    unsafe {
        boundary(env, || {
            let [slot, generation] = arguments::<2>(env, call)?;
            let token = (integer(env, slot), integer(env, generation));
            let cancelled = with_table(|table| {
                Ok(table
                    .slot(token)
                    .and_then(|slot| slot.request.as_deref())
                    .is_some_and(ipcall::Request::is_cancelled))
            })?;
            Ok(Some(bool::to_napi_value(env, cancelled)?))
        })
    }
}

/// `watch(slot, generation, controller)`: true if the caller already gave up (the
/// script aborts the controller), else arranges for it to be aborted when
/// the caller gives up (dropped unrun once the request is answered).
unsafe extern "C" fn watch(env: sys::napi_env, call: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: (1) as in `reply`.
    unsafe {
        boundary(env, || {
            let [slot, generation, controller] = arguments::<3>(env, call)?;
            let token = (integer(env, slot), integer(env, generation));
            let already = with_table(|table| {
                let Some(request) = table.slot(token).and_then(|slot| slot.request.as_ref()) else { return Ok(false) };
                if request.is_cancelled() {
                    return Ok(true);
                }
                let aborter = crate::abort::Aborter::new(env, controller)?;
                request.on_cancel(move || aborter.fire());
                Ok(false)
            })?;
            Ok(Some(bool::to_napi_value(env, already)?))
        })
    }
}

/// `peerName(slot, generation)`: the sender's connection name (`nats:`), or undefined.
unsafe extern "C" fn peer_name(env: sys::napi_env, call: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: (1) as in `reply`.
    unsafe {
        boundary(env, || {
            let [slot, generation] = arguments::<2>(env, call)?;
            let token = (integer(env, slot), integer(env, generation));
            let name = with_table(|table| {
                Ok(table.slot(token).and_then(|slot| slot.request.as_ref()?.peer_name().map(str::to_owned)))
            })?;
            match name {
                Some(name) => Ok(Some(String::to_napi_value(env, name)?)),
                None => Ok(None),
            }
        })
    }
}

/// The functions the setup script receives, by name.
pub(crate) const NATIVES: &[(&str, Callback)] = &[
    ("bind", bind),
    ("reply", reply),
    ("fail", fail),
    ("close", close),
    ("cancelled", cancelled),
    ("watch", watch),
    ("peerName", peer_name),
    ("takeOrWait", crate::server::take_or_wait),
    ("callSync", crate::client::natives::call_sync),
    ("call", crate::client::natives::call),
];

/// An object holding [`NATIVES`] as JavaScript functions.
pub(crate) fn natives(env: &Env) -> napi::Result<sys::napi_value> {
    let raw = env.raw();
    let mut object = ptr::null_mut();
    // SAFETY: (1) `env` is live on its thread; (2) `object` is a live local.
    check(unsafe { sys::napi_create_object(raw, &mut object) }, "creating the natives")?;
    for &(name, callback) in NATIVES {
        let mut function = ptr::null_mut();
        // SAFETY: (1) as above; (2) `name` is `len` bytes of UTF-8; (3) the
        // callback is a `'static` function; no data pointer.
        let status = unsafe {
            sys::napi_create_function(
                raw,
                name.as_ptr().cast(),
                name.len() as isize,
                Some(callback),
                ptr::null_mut(),
                &mut function,
            )
        };
        check(status, "creating a native function")?;
        let key = std::ffi::CString::new(name).expect("no NUL in the names");
        // SAFETY: (1) as above; `object` and `function` are live values of `raw`.
        check(unsafe { sys::napi_set_named_property(raw, object, key.as_ptr(), function) }, "naming a native")?;
    }
    Ok(object)
}
