//! Settles the Promises of `client.call()` through ONE threadsafe function per
//! JavaScript thread.
//!
//! napi's own future-to-Promise bridge creates a threadsafe function (a libuv
//! async handle) per Promise, and libuv scans every async handle on each
//! wake-up: with 10,000 calls in flight every completion then costs 10,000
//! checks. Here each call is a plain `napi_deferred` in a table owned by the
//! JavaScript thread, its future runs on napi's tokio runtime, and completions
//! come back through the one shared threadsafe function, which drains them in
//! batches. The function is ref'd only while calls are pending, so it keeps
//! the process alive exactly as long as some call can still settle.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::future::Future;
use std::ptr;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{Buffer, Env, ToNapiValue};
use napi::sys;

/// The outcome of a call, made into a JavaScript value on the JavaScript thread.
pub(crate) type Outcome = ipcall::Result<Vec<u8>>;

/// Turns an error into its JavaScript value (the call site picks the message).
pub(crate) type ErrorMapper = fn(&Env, ipcall::Error) -> napi::Result<sys::napi_value>;

/// The threadsafe function as the runtime's threads see it.
struct Sender {
    /// `Some` while the function exists; set to `None` by its finalizer (at
    /// environment teardown) under this lock, so no thread calls it after.
    tsfn: Mutex<Option<SendPtr>>,
}

/// A `napi_threadsafe_function`, which Node-API allows to be called from any thread.
#[derive(Clone, Copy)]
struct SendPtr(sys::napi_threadsafe_function);

// SAFETY: (1) Node-API documents `napi_call_threadsafe_function` as callable
// from any thread; (2) the pointer is only used under `Sender::tsfn`'s lock,
// whose `None` marks it finalized.
unsafe impl Send for SendPtr {}

/// One finished call on its way to the JavaScript thread.
struct Completion {
    id: u64,
    outcome: Outcome,
    map_error: ErrorMapper,
}

/// The JavaScript thread's side: the deferreds of the calls in flight.
struct Bridge {
    sender: Arc<Sender>,
    /// Raw `napi_threadsafe_function` (only used on the JavaScript thread).
    tsfn: sys::napi_threadsafe_function,
    /// Calls in flight by id. Invariant: non-empty exactly when `tsfn` is ref'd.
    deferreds: HashMap<u64, sys::napi_deferred>,
    next_id: u64,
}

thread_local! {
    /// This JavaScript thread's bridge (each Node environment runs on its own
    /// thread: the main thread, or a worker's).
    static BRIDGE: RefCell<Option<Bridge>> = const { RefCell::new(None) };
}

fn check(status: sys::napi_status, what: &str) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::new(napi::Status::from(status), format!("ipcall: {what} failed")))
    }
}

/// Creates this thread's bridge (its threadsafe function, unref'd).
fn create(env: &Env) -> napi::Result<Bridge> {
    let sender = Arc::new(Sender { tsfn: Mutex::new(None) });
    let mut name = ptr::null_mut();
    let label = "ipcall call completions";
    // SAFETY: (1) `env` is live, on its JavaScript thread; (2) `label` outlives the call.
    check(
        unsafe { sys::napi_create_string_utf8(env.raw(), label.as_ptr().cast(), label.len() as isize, &mut name) },
        "naming the completion queue",
    )?;
    // The finalizer's handle on the sender; freed by the finalizer.
    let finalize_data = Arc::into_raw(sender.clone()) as *mut c_void;
    let mut tsfn = ptr::null_mut();
    // SAFETY: (1) `env` is live; (2) no JavaScript function is given, which
    // Node-API allows when `call_js_cb` is; (3) `finalize_data` is a leaked
    // `Arc<Sender>` that `finalize` takes back exactly once; (4) queue size 0
    // means unbounded, so calls from the runtime never block.
    let status = unsafe {
        sys::napi_create_threadsafe_function(
            env.raw(),
            ptr::null_mut(),
            ptr::null_mut(),
            name,
            0,
            1,
            finalize_data,
            Some(finalize),
            ptr::null_mut(),
            Some(call_js),
            &mut tsfn,
        )
    };
    if let Err(e) = check(status, "creating the completion queue") {
        // SAFETY: (1) creation failed, so `finalize` will never run and this is the only owner.
        drop(unsafe { Arc::from_raw(finalize_data as *const Sender) });
        return Err(e);
    }
    // SAFETY: (1) `tsfn` was just created in `env`; unref'd until a call is pending.
    check(unsafe { sys::napi_unref_threadsafe_function(env.raw(), tsfn) }, "unref of the completion queue")?;
    *sender.tsfn.lock().unwrap_or_else(|e| e.into_inner()) = Some(SendPtr(tsfn));
    Ok(Bridge { sender, tsfn, deferreds: HashMap::new(), next_id: 0 })
}

/// Starts `future` on napi's runtime and returns a Promise that settles with
/// its outcome on this JavaScript thread (errors through `map_error`).
pub(crate) fn spawn_call<F>(env: &Env, future: F, map_error: ErrorMapper) -> napi::Result<sys::napi_value>
where
    F: Future<Output = Outcome> + Send + 'static,
{
    BRIDGE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|bridge| bridge.sender.tsfn.lock().unwrap_or_else(|e| e.into_inner()).is_none()) {
            *slot = Some(create(env)?);
        }
        let bridge = slot.as_mut().expect("bridge was just created");
        let mut deferred = ptr::null_mut();
        let mut promise = ptr::null_mut();
        // SAFETY: (1) `env` is live, on its JavaScript thread; (2) out-pointers are live locals.
        check(unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) }, "creating a Promise")?;
        if bridge.deferreds.is_empty() {
            // SAFETY: (1) `tsfn` belongs to this env and is not finalized (checked above).
            check(unsafe { sys::napi_ref_threadsafe_function(env.raw(), bridge.tsfn) }, "ref of the completion queue")?;
        }
        let id = bridge.next_id;
        bridge.next_id += 1;
        bridge.deferreds.insert(id, deferred);
        let sender = bridge.sender.clone();
        napi::bindgen_prelude::spawn(async move {
            let outcome = future.await;
            let completion = Box::into_raw(Box::new(Completion { id, outcome, map_error }));
            let guard = sender.tsfn.lock().unwrap_or_else(|e| e.into_inner());
            let queued = match *guard {
                // SAFETY: (1) the lock is held and the function not finalized
                // (`Some`), so it is alive; (2) Node-API allows this call from
                // any thread; (3) non-blocking: the queue is unbounded.
                Some(SendPtr(tsfn)) => unsafe {
                    sys::napi_call_threadsafe_function(
                        tsfn,
                        completion.cast(),
                        sys::ThreadsafeFunctionCallMode::nonblocking,
                    )
                },
                None => sys::Status::napi_closing,
            };
            drop(guard);
            if queued != sys::Status::napi_ok {
                // The environment is gone: nobody is waiting for this outcome.
                // SAFETY: (1) not queued, so this is still the only owner.
                drop(unsafe { Box::from_raw(completion) });
            }
        });
        Ok(promise)
    })
}

/// Runs on the JavaScript thread for each completion (also at teardown, with a null `env`, to free them).
unsafe extern "C" fn call_js(
    env: sys::napi_env,
    _js_callback: sys::napi_value,
    _context: *mut c_void,
    data: *mut c_void,
) {
    // SAFETY: (1) `data` is a `Box<Completion>` leaked by `spawn_call` and
    // handed over by Node-API exactly once.
    let completion = unsafe { Box::from_raw(data.cast::<Completion>()) };
    if env.is_null() {
        return;
    }
    let env = Env::from_raw(env);
    let deferred = BRIDGE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let bridge = slot.as_mut()?;
        let deferred = bridge.deferreds.remove(&completion.id)?;
        if bridge.deferreds.is_empty() {
            // Nothing pending: let the process exit if nothing else holds it.
            // SAFETY: (1) on the JavaScript thread of the env that owns `tsfn`, which is alive (it is calling us).
            unsafe { sys::napi_unref_threadsafe_function(env.raw(), bridge.tsfn) };
        }
        Some(deferred)
    });
    let Some(deferred) = deferred else { return };
    let Completion { outcome, map_error, .. } = *completion;
    let (settled, resolve) = match outcome {
        // SAFETY: (1) `env` is live on its thread, inside the handle scope Node-API opens for `call_js`.
        Ok(reply) => (unsafe { Buffer::to_napi_value(env.raw(), Buffer::from(reply)) }, true),
        Err(err) => (map_error(&env, err), false),
    };
    // SAFETY (both branches): (1) `deferred` came from `napi_create_promise`
    // in this env and is settled exactly once (it was removed from the table);
    // (2) `value` is a live value of this env.
    match settled {
        Ok(value) if resolve => unsafe { sys::napi_resolve_deferred(env.raw(), deferred, value) },
        Ok(value) => unsafe { sys::napi_reject_deferred(env.raw(), deferred, value) },
        Err(e) => unsafe {
            let mut value = ToNapiValue::to_napi_value(env.raw(), e).unwrap_or(ptr::null_mut());
            if value.is_null() {
                sys::napi_get_undefined(env.raw(), &mut value);
            }
            sys::napi_reject_deferred(env.raw(), deferred, value)
        },
    };
}

/// The threadsafe function is being destroyed (environment teardown).
unsafe extern "C" fn finalize(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: (1) `data` is the `Arc<Sender>` leaked in `create`; Node-API calls the finalizer once.
    let sender = unsafe { Arc::from_raw(data as *const Sender) };
    *sender.tsfn.lock().unwrap_or_else(|e| e.into_inner()) = None;
    BRIDGE.with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut() {
            if slot.as_ref().is_some_and(|bridge| Arc::ptr_eq(&bridge.sender, &sender)) {
                *slot = None;
            }
        }
    });
}
