//! Cancellation in JavaScript's terms: `AbortController`s behind a
//! request's `req.signal` (aborted from whatever thread learns the caller
//! gave up, through a thread-safe function), and what `call(data, {signal})`
//! needs of an `AbortSignal` (is it aborted, its reason, an `abort` listener)
//! and rejects with (an `AbortError`).
//!
//! All functions run on the JavaScript thread of `env` unless they say
//! otherwise; `napi_value`s are live values of that environment.

use std::ffi::c_void;
use std::ptr;

use napi::bindgen_prelude::{Env, JsValue, Object};
use napi::sys;

/// A napi status as a `napi::Result`, naming what failed.
fn check(status: sys::napi_status, what: &str) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::new(napi::Status::from(status), format!("{what} failed")))
    }
}

/// `object[name]`.
///
/// # Safety
/// `env` is live on this thread and `object` a live value of it.
pub(crate) unsafe fn property(
    env: sys::napi_env,
    object: sys::napi_value,
    name: &str,
) -> napi::Result<sys::napi_value> {
    let key = std::ffi::CString::new(name).expect("property names have no NUL");
    let mut value = ptr::null_mut();
    // SAFETY: (1) per the contract; (2) `key` is NUL-terminated and outlives the call; (3) `value` is a live local.
    check(unsafe { sys::napi_get_named_property(env, object, key.as_ptr(), &mut value) }, name)?;
    Ok(value)
}

/// `object[name](...args)`.
///
/// # Safety
/// As [`property`]; every `args` value is live in `env`.
pub(crate) unsafe fn call_method(
    env: sys::napi_env,
    object: sys::napi_value,
    name: &str,
    args: &[sys::napi_value],
) -> napi::Result<sys::napi_value> {
    // SAFETY: (1) per the contract.
    let function = unsafe { property(env, object, name) }?;
    let mut result = ptr::null_mut();
    // SAFETY: (1) per the contract; (2) `args` points to `args.len()` live values; (3) `result` is a live local.
    let status = unsafe { sys::napi_call_function(env, object, function, args.len(), args.as_ptr(), &mut result) };
    check(status, name)?;
    Ok(result)
}

/// True if `value` is `undefined` or `null`.
///
/// # Safety
/// As [`property`] (for `value`).
pub(crate) unsafe fn is_nullish(env: sys::napi_env, value: sys::napi_value) -> napi::Result<bool> {
    let mut kind = 0;
    // SAFETY: (1) per the contract; (2) `kind` is a live local.
    check(unsafe { sys::napi_typeof(env, value, &mut kind) }, "typeof")?;
    Ok(kind == sys::ValueType::napi_undefined || kind == sys::ValueType::napi_null)
}

/// True if `value` is a function.
///
/// # Safety
/// As [`property`] (for `value`).
pub(crate) unsafe fn is_function(env: sys::napi_env, value: sys::napi_value) -> napi::Result<bool> {
    let mut kind = 0;
    // SAFETY: (1) per the contract; (2) `kind` is a live local.
    check(unsafe { sys::napi_typeof(env, value, &mut kind) }, "typeof")?;
    Ok(kind == sys::ValueType::napi_function)
}

/// `Boolean(value)` for a boolean value (false for anything else).
///
/// # Safety
/// As [`property`] (for `value`).
pub(crate) unsafe fn is_true(env: sys::napi_env, value: sys::napi_value) -> bool {
    let mut result = false;
    // SAFETY: (1) per the contract; (2) `result` is a live local. A
    // non-boolean is reported as an error, and `result` stays false.
    let _ = unsafe { sys::napi_get_value_bool(env, value, &mut result) };
    result
}

/// `controller.abort()`: its signal's reason is the standard `AbortError`
/// `DOMException`, and its `abort` listeners run now.
///
/// # Safety
/// As [`property`] (for `controller`).
pub(crate) unsafe fn abort(env: sys::napi_env, controller: sys::napi_value) -> napi::Result<()> {
    // SAFETY: (1) per the contract.
    unsafe { call_method(env, controller, "abort", &[]) }.map(drop)
}

/// A strong reference to `value`.
///
/// # Safety
/// As [`property`] (for `value`).
pub(crate) unsafe fn reference(env: sys::napi_env, value: sys::napi_value) -> napi::Result<sys::napi_ref> {
    let mut reference = ptr::null_mut();
    // SAFETY: (1) per the contract; (2) `reference` is a live local.
    check(unsafe { sys::napi_create_reference(env, value, 1, &mut reference) }, "keeping a value")?;
    Ok(reference)
}

/// The value a live reference holds.
///
/// # Safety
/// `env` is live on this thread; `reference` is a live reference created in it.
pub(crate) unsafe fn referenced(env: sys::napi_env, reference: sys::napi_ref) -> napi::Result<sys::napi_value> {
    let mut value = ptr::null_mut();
    // SAFETY: (1) per the contract; (2) `value` is a live local.
    check(unsafe { sys::napi_get_reference_value(env, reference, &mut value) }, "reading a kept value")?;
    Ok(value)
}

/// Aborts one `AbortController` from any thread: a thread-safe function
/// whose context is a strong reference to the controller (deleted by its
/// finalizer, on the JavaScript thread). Unreferenced: it never keeps the
/// process alive. Dropping it (fired or not) releases the function.
pub(crate) struct Aborter {
    /// Invariant: a live thread-safe function this value holds one thread
    /// count of (its only one), released exactly once, in `drop`.
    tsfn: sys::napi_threadsafe_function,
}

// SAFETY: (1) Node-API documents `napi_call_threadsafe_function` and
// `napi_release_threadsafe_function`, the only calls made through `tsfn`
// after construction, as callable from any thread.
unsafe impl Send for Aborter {}

impl Aborter {
    /// An aborter of `controller`.
    ///
    /// # Safety
    /// `env` is live on this thread and `controller` a live value of it.
    pub(crate) unsafe fn new(env: sys::napi_env, controller: sys::napi_value) -> napi::Result<Aborter> {
        // SAFETY: (1) per the contract.
        let context = unsafe { reference(env, controller) }?;
        let mut name = ptr::null_mut();
        let text = "ipcall request cancel";
        // SAFETY: (1) per the contract; (2) `text` is `len` valid UTF-8 bytes; (3) `name` is a live local.
        let status = unsafe { sys::napi_create_string_utf8(env, text.as_ptr().cast(), text.len() as isize, &mut name) };
        let mut tsfn = ptr::null_mut();
        let created = check(status, "naming the cancel function").and_then(|()| {
            // SAFETY: (1) per the contract; (2) no JavaScript function: `call_js`
            // does the work (allowed since Node-API 5); (3) `context` is handed
            // over to the function, whose finalizer deletes it; (4) `tsfn` is a
            // live local.
            let status = unsafe {
                sys::napi_create_threadsafe_function(
                    env,
                    ptr::null_mut(),
                    ptr::null_mut(),
                    name,
                    0,
                    1,
                    context.cast(),
                    Some(finalize),
                    context.cast(),
                    Some(call_js),
                    &mut tsfn,
                )
            };
            check(status, "creating the cancel function")
        });
        if let Err(e) = created {
            // SAFETY: (1) `context` was created above and handed to nobody.
            unsafe { sys::napi_delete_reference(env, context) };
            return Err(e);
        }
        // SAFETY: (1) per the contract; (2) `tsfn` was just created in `env`.
        unsafe { sys::napi_unref_threadsafe_function(env, tsfn) };
        Ok(Aborter { tsfn })
    }

    /// Aborts the controller, on its JavaScript thread, soon. Any thread.
    pub(crate) fn fire(self) {
        // SAFETY: (1) `tsfn` is live (struct invariant); a call after the
        // environment began its teardown is refused (`napi_closing`), which
        // is fine: nobody is left to tell.
        unsafe {
            sys::napi_call_threadsafe_function(self.tsfn, ptr::null_mut(), sys::ThreadsafeFunctionCallMode::nonblocking)
        };
    }
}

impl Drop for Aborter {
    fn drop(&mut self) {
        // SAFETY: (1) our one thread count of a live function (struct
        // invariant), released once: this is `drop`.
        unsafe { sys::napi_release_threadsafe_function(self.tsfn, sys::ThreadsafeFunctionReleaseMode::release) };
    }
}

/// The thread-safe function's work, on the JavaScript thread.
unsafe extern "C" fn call_js(env: sys::napi_env, _js: sys::napi_value, context: *mut c_void, _data: *mut c_void) {
    if env.is_null() {
        // The environment is being torn down: nothing to abort.
        return;
    }
    // SAFETY: (1) Node calls this on the JavaScript thread of a live `env`;
    // (2) `context` is the controller's reference, live until `finalize`,
    // which runs after every call. A failure here has nobody to report to.
    if let Ok(controller) = unsafe { referenced(env, context.cast()) } {
        // SAFETY: (1) as above; `controller` was just read in `env`.
        let _ = unsafe { abort(env, controller) };
    }
}

/// Deletes the controller's reference once the thread-safe function is gone.
unsafe extern "C" fn finalize(env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: (1) Node runs finalizers on the JavaScript thread of a live
    // `env`; (2) `data` is the reference made in `Aborter::new`, deleted
    // exactly once, here.
    unsafe { sys::napi_delete_reference(env, data.cast()) };
}

/// The error `call(data, {signal})` rejects with when the signal aborts:
/// an `Error` named `AbortError` with `code: 'ABORT_ERR'` (as Node's own
/// APIs reject), `cause` the signal's `reason`.
pub(crate) fn abort_error(env: &Env, reason: sys::napi_value) -> napi::Result<sys::napi_value> {
    let mut object: Object<'_> =
        env.create_error(napi::Error::new(napi::Status::GenericFailure, "the call was aborted by its AbortSignal"))?;
    object.set("name", "AbortError")?;
    object.set("code", "ABORT_ERR")?;
    let raw = object.raw();
    let key = c"cause";
    // SAFETY: (1) `env` is live on this thread; `raw` and `reason` are live values of it.
    check(unsafe { sys::napi_set_named_property(env.raw(), raw, key.as_ptr(), reason) }, "setting cause")?;
    Ok(raw)
}
