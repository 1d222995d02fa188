//! How ipcall's objects look from JavaScript: the `IpcallError` class every
//! ipcall error is an instance of, and `util.inspect` (`console.log`) output
//! for `Server`, `Client` and `Request`.
//!
//! napi-rs classes cannot extend `Error`, so `IpcallError` is a napi class
//! whose prototype chain is re-pointed at `Error` when the module loads (in
//! every JavaScript thread that loads it), and each error ipcall makes is
//! created as a plain `Error` and then given `IpcallError.prototype`, with
//! its stack captured again so that it starts `IpcallError: …`. Then
//! `err instanceof ipcall.IpcallError` and `err instanceof Error` both hold.

use napi::bindgen_prelude::{Env, Function, JsObjectValue, JsValue, Object, Unknown};
use napi_derive::napi;

/// What ipcall throws and rejects with: an `Error` with a `code` (see
/// `ErrorCode`); `'REMOTE'` errors carry `payload`, `'TOO_LARGE'` errors
/// `size` and `max`. Test with `err instanceof IpcallError`; ipcall creates
/// them, `new IpcallError()` is not for applications.
#[napi]
pub struct IpcallError {}

/// The property of the `IpcallError` constructor that holds the function
/// turning a fresh `Error` into an `IpcallError` (not enumerable).
const ADOPT: &str = "__ipcallAdopt";

/// Runs once per JavaScript thread when the addon loads, after napi-rs has
/// defined the classes on `exports`.
#[napi(module_exports)]
pub fn init(exports: Object<'_>, env: Env) -> napi::Result<()> {
    let setup: Function<'_, Object<'_>, ()> = env.run_script(SETUP)?;
    setup.call(exports)
}

/// `setup(exports)`: the prototype chain, the `name`, the adopt function and
/// the `util.inspect.custom` methods.
const SETUP: &str = r#"(function setup(exports) {
  const { IpcallError, Server, Client, Request } = exports
  Object.setPrototypeOf(IpcallError.prototype, Error.prototype)
  Object.setPrototypeOf(IpcallError, Error)
  Object.defineProperty(IpcallError.prototype, 'name', { value: 'IpcallError', writable: true, configurable: true })
  function adopt(error) {
    Object.setPrototypeOf(error, IpcallError.prototype)
    if (typeof Error.captureStackTrace === 'function') Error.captureStackTrace(error, adopt)
  }
  Object.defineProperty(IpcallError, '__ipcallAdopt', { value: adopt })

  // `for await (const req of server)`: each step is one native call that
  // resolves the iteration result itself (see `Server.__ipcallNext`).
  // Leaving the loop early does not close the server.
  Object.defineProperty(Server.prototype, '__ipcallNext', { enumerable: false })
  Object.defineProperty(Server.prototype, Symbol.asyncIterator, {
    value() {
      const server = this
      return {
        next() { return server.__ipcallNext() },
        return(value) { return Promise.resolve({ value, done: true }) },
        [Symbol.asyncIterator]() { return this },
      }
    },
    writable: true,
    configurable: true,
  })

  const custom = Symbol.for('nodejs.util.inspect.custom')
  // Fields read through getters; one that throws (a request already
  // answered has no data to show) is left out.
  function show(object, className, fields, depth, options, inspect) {
    const shown = {}
    for (const field of fields) {
      try {
        shown[field] = object[field]
      } catch {}
    }
    if (depth < 0) return `${className} { … }`
    const body = inspect(shown, { ...options, depth: options.depth == null ? null : options.depth - 1 })
    return `${className} ${body}`
  }
  Object.defineProperty(Server.prototype, custom, {
    value(depth, options, inspect) { return show(this, 'Server', ['name'], depth, options, inspect) },
  })
  Object.defineProperty(Client.prototype, custom, {
    value(depth, options, inspect) { return show(this, 'Client', ['name'], depth, options, inspect) },
  })
  Object.defineProperty(Request.prototype, custom, {
    value(depth, options, inspect) { return show(this, 'Request', ['data', 'peer', 'answered'], depth, options, inspect) },
  })
})"#;

/// Gives `error` (a fresh `Error` of this thread) the `IpcallError`
/// prototype and a stack that names it. Without the class (the module's
/// setup did not run in this thread) the error stays a plain `Error`.
pub(crate) fn adopt(env: &Env, error: &Object<'_>) -> napi::Result<()> {
    let Some(constructor) = napi::bindgen_prelude::get_class_constructor("IpcallError\0") else {
        return Ok(());
    };
    let mut value = std::ptr::null_mut();
    // SAFETY: (1) `constructor` is a reference napi-rs created in this
    // thread's env for the class, and lives as long as that env; (2) `value`
    // is a valid out-pointer.
    let status = unsafe { napi::sys::napi_get_reference_value(env.raw(), constructor, &mut value) };
    if status != napi::sys::Status::napi_ok || value.is_null() {
        return Ok(());
    }
    // SAFETY: (3) `value` was just produced by napi for this env.
    let constructor = unsafe { Unknown::from_raw_unchecked(env.raw(), value) }.coerce_to_object()?;
    let adopt: Unknown<'_> = constructor.get_named_property(ADOPT)?;
    if adopt.get_type()? != napi::ValueType::Function {
        return Ok(());
    }
    // SAFETY: (4) its type was checked just above.
    let adopt: Function<'_, Unknown<'_>, ()> = unsafe { adopt.cast()? };
    adopt.call(error.to_unknown())
}
