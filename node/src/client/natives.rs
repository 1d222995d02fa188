//! The raw functions behind `callSync(data)` and `call(data)` without
//! options, which the setup script (`faces.rs`) calls with the client's id.
//!
//! napi-rs's method wrapper costs more than a whole round trip's work in
//! the core: type-tag check and unwrap of `this`, and its borrow
//! bookkeeping (a global map, locked twice per call); and a reply made a
//! `Buffer` by Node-API is its own V8 backing store. These functions find
//! the client by a number in this thread's table, and `callSync` returns a
//! small reply in the shared pool of `requests.rs`, which the script views
//! as a `Buffer` (as Node pools `Buffer.allocUnsafe`). `call`'s Promise is
//! made by the script too, and settled through its `settleCall` with a
//! small reply in the pool: a Promise made and resolved by Node-API, and a
//! `Buffer` of its own, cost more than the script's. Calls with options
//! keep the napi-rs methods, which read them.

use std::cell::RefCell;
use std::rc::Rc;

use napi::bindgen_prelude::{Env, FromNapiValue};
use napi::sys;

use super::{call_blocking, start_call, Calling, Started};
use crate::bytes::Bytes;
use crate::ids::Ids;
use crate::reactor::Settle;
use crate::requests::{arguments, boundary, integer, number};

thread_local! {
    /// This thread's clients by [`Client::id`](super::Client).
    static CLIENTS: RefCell<Ids<Rc<RefCell<Calling>>>> = const { RefCell::new(Ids::new()) };
}

/// Lists `shared`; returns its id.
pub(super) fn register(shared: &Rc<RefCell<Calling>>) -> u32 {
    CLIENTS.with(|clients| clients.borrow_mut().insert(shared.clone()))
}

/// Frees `id` (its `Client` is being dropped: no script holds it any more).
pub(super) fn unregister(id: u32) {
    // `try_with`: at thread exit the table may already be gone.
    let _ = CLIENTS.try_with(|clients| {
        if let Ok(mut clients) = clients.try_borrow_mut() {
            clients.remove(id);
        }
    });
}

/// The client a script's number names.
///
/// # Safety
/// Inside a Node-API callback of `env`; `id` a live value of it.
unsafe fn client(env: sys::napi_env, id: sys::napi_value) -> napi::Result<Rc<RefCell<Calling>>> {
    // SAFETY: (1) per the contract.
    let id = unsafe { number(env, id) };
    let found = CLIENTS.with(|clients| clients.try_borrow().ok()?.get(id));
    found.ok_or_else(|| crate::error::type_error(&Env::from_raw(env), "not a Client"))
}

/// `callSync(id, data)`: the reply, either in the pool (`TOOK` set, with
/// `OFFSET` and `LENGTH`: the script makes the `Buffer`) or, when larger
/// than the pool takes, as its own `Buffer`. Throws what the napi-rs
/// `callSync` throws.
///
/// # Safety
/// Called by Node on `env`'s JavaScript thread with `call`.
pub(crate) unsafe extern "C" fn call_sync(env: sys::napi_env, call: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: (1) per the contract.
    unsafe {
        boundary(env, || {
            let [id, data] = arguments::<2>(env, call)?;
            let shared = client(env, id)?;
            let data = Bytes::from_napi_value(env, data)?;
            let reply = call_blocking(&shared, &Env::from_raw(env), data.as_slice(), None)?;
            if let Some(pool) = crate::requests::pooled_reply(env, &reply)? {
                return Ok(Some(pool));
            }
            crate::bytes::buffer_value(env, reply).map(Some)
        })
    }
}

/// `call(id, data, slot)`: starts the call whose Promise the setup script
/// made, its resolvers waiting under `slot`; it is settled through the
/// script's `settleCall`, or — settled before this returns (an answer
/// already here, a refusal, a call libuv could not watch) — by the script
/// itself with the value this returns, `SETTLED` set. Throws only before
/// the call began (a number that names no client, bad data) or if that
/// value cannot be made: then nothing will settle `slot`.
///
/// # Safety
/// Called by Node on `env`'s JavaScript thread with `call`.
pub(crate) unsafe extern "C" fn call(env: sys::napi_env, call: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: (1) per the contract.
    unsafe {
        boundary(env, || {
            let [id, data, slot] = arguments::<3>(env, call)?;
            let shared = client(env, id)?;
            let data = Bytes::from_napi_value(env, data)?;
            let to = Settle::Script(integer(env, slot));
            match start_call(&shared, data.as_slice(), to, None) {
                Started::InFlight(_) => Ok(None),
                // The script settles it from what this returns.
                Started::Settled(outcome) => crate::requests::settled_now(&Env::from_raw(env), outcome).map(Some),
            }
        })
    }
}
